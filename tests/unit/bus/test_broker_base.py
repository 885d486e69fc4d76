"""What broker buses share, without a broker: configs, the retry schedule, URL redaction."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from eventsource_lab.bus import RedisEventBusConfig
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
