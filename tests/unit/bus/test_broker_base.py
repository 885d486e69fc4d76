"""What broker buses share, without a broker: configs, the retry schedule, URL redaction."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from eventsource_lab.bus import RabbitMQEventBusConfig, RedisEventBusConfig
from eventsource_lab.bus.retry import RECONNECT, RetryPolicy
from eventsource_lab.redact import redact_url


def test_redis_url_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVENTSOURCE_LAB_REDIS_URL", "redis://10.9.9.9:7000/2")
    assert RedisEventBusConfig().redis_url == "redis://10.9.9.9:7000/2"
    monkeypatch.delenv("EVENTSOURCE_LAB_REDIS_URL")
    assert RedisEventBusConfig().redis_url == "redis://localhost:6379"


def test_spec_fields_and_derived_keys() -> None:
    config = RedisEventBusConfig(
        redis_url="redis://localhost:6379",
        stream_prefix="myapp",
        consumer_group="projections",
        batch_size=100,
        enable_dlq=True,
        max_retries=3,
    )
    assert config.stream == "myapp:events"
    assert config.dlq_stream == "myapp:projections:dlq"
    assert config.replay_stream == "myapp:projections:replay"
    assert config.max_stream_length is None


def test_consumer_names_are_unique_per_bus() -> None:
    assert RedisEventBusConfig().consumer_name != RedisEventBusConfig().consumer_name


@pytest.mark.parametrize(
    "bad", [{"batch_size": 0}, {"max_retries": -1}, {"redis_ur": "typo"}, {"stream_prefix": ""}]
)
def test_bad_settings_are_refused_by_name(bad: dict) -> None:
    with pytest.raises(ValidationError, match=next(iter(bad))):
        RedisEventBusConfig(**bad)


def test_backoff_grows_to_its_cap_with_bounded_jitter() -> None:
    policy = RetryPolicy(initial=0.1, maximum=1.0, multiplier=2.0, jitter=0.2)
    for attempt, base in [(0, 0.1), (1, 0.2), (3, 0.8), (10, 1.0)]:
        for _ in range(50):
            assert base * 0.8 <= policy.delay(attempt) <= base * 1.2
    assert RECONNECT.delay(100) <= RECONNECT.maximum * (1 + RECONNECT.jitter)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("amqp://user:secret@host:5672/", "amqp://***@host:5672/"),
        ("redis://:pw@127.0.0.1:6379/0", "redis://***@127.0.0.1:6379/0"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ],
)
def test_passwords_never_reach_messages(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_backoff_survives_an_outage_of_any_length() -> None:
    """Attempt counters of a days-long outage (or a billion) give the maximum, not an
    OverflowError that would end the reconnect loop."""
    for attempt in (85, 1_100, 10_000, 10**9):
        assert RECONNECT.maximum * 0.8 <= RECONNECT.delay(attempt) <= RECONNECT.maximum * 1.2
    steep = RetryPolicy(initial=0.001, maximum=60.0, multiplier=1000.0)
    assert steep.delay(10**6) <= 60.0 * 1.2


def test_a_retry_delay_longer_than_the_reconnect_cap_is_kept() -> None:
    policy = RetryPolicy(initial=30.0, maximum=30.0)
    assert policy.delay(0) >= 30.0 * 0.8 and policy.max_exponent == 0


@pytest.mark.parametrize(
    "bad", [{"initial": 0}, {"multiplier": 0.5}, {"maximum": -1}, {"jitter": 1.0}]
)
def test_a_retry_policy_that_could_not_back_off_is_refused(bad: dict) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**bad)


@pytest.mark.parametrize(
    ("config_class", "field", "url"),
    [
        (RedisEventBusConfig, "redis_url", "redis://:s3cret-pw@127.0.0.1:6379/0"),
        (RabbitMQEventBusConfig, "rabbitmq_url", "amqp://user:s3cret-pw@127.0.0.1:5672/"),
    ],
)
def test_config_reprs_never_show_the_password(config_class, field: str, url: str) -> None:
    config = config_class(**{field: url})
    for shown in (repr(config), str(config), f"{config!r}"):
        assert "s3cret-pw" not in shown
        assert "127.0.0.1" in shown
    assert getattr(config, field) == url  # the bus still gets the real URL
