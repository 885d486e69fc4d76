"""Where a broker password could still show: URLs that carry it in the query string (redis-py
takes ``?password=``), passwords with an ``@`` in free text, driver errors on a wrong password,
a mistyped config field, and the doctor's report. Real brokers, real URLs."""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urlsplit

import pydantic
import pytest

from eventsource_lab.brokers import diagnose, format_report
from eventsource_lab.brokers.base import Broker
from eventsource_lab.bus.rabbitmq import RabbitMQEventBus, RabbitMQEventBusConfig
from eventsource_lab.bus.redis import RedisEventBus, RedisEventBusConfig
from eventsource_lab.errors import BusConnectionError
from eventsource_lab.redact import redact_text, redact_url

WAIT = 30.0
WRONG = "WrongPass0123456789"


def _address(broker: Broker) -> tuple[str, str, str]:
    """The broker's user, password and ``host:port/path``."""
    parts = urlsplit(broker.url)
    return parts.username or "", parts.password or "", broker.url.rsplit("@", 1)[1]


def _query_url(broker: Broker) -> tuple[str, str]:
    user, password, address = _address(broker)
    return f"redis://{address}?username={user or 'default'}&password={password}", password


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("redis://127.0.0.1:6400/0?password=s3cret", "s3cret"),
        ("redis://127.0.0.1:6400/0?username=default&password=s3cret&db=0", "s3cret"),
        ("rediss://h:1/0?ssl_cert_reqs=none&password=s3cret", "s3cret"),
    ],
)
def test_a_password_in_the_query_string_is_redacted(url: str, secret: str) -> None:
    assert secret not in redact_url(url)
    assert secret not in redact_text(f"cannot reach {url}: refused")
    assert "127.0.0.1:6400" in redact_url(url) or "h:1" in redact_url(url)


def test_a_password_with_an_at_sign_leaves_no_piece_in_free_text() -> None:
    text = "tried redis://default:p@ss@h:1/0, then amqp://u:a@b@c@mq:5672/ and gave up"
    shown = redact_text(text)
    assert shown == "tried redis://***@h:1/0, then amqp://***@mq:5672/ and gave up"


@pytest.mark.redis
async def test_a_redis_bus_on_a_query_string_password_never_shows_it(redis_broker) -> None:
    url, password = _query_url(redis_broker)
    bus = RedisEventBus(RedisEventBusConfig(redis_url=url))
    await asyncio.wait_for(bus.connect(), WAIT)  # redis-py takes the password from the query
    try:
        for shown in (repr(bus.config), str(bus.config), f"{bus.config!r}"):
            assert password not in shown, shown
    finally:
        await asyncio.wait_for(bus.shutdown(5), WAIT)


@pytest.mark.redis
async def test_a_wrong_redis_password_fails_without_showing_it(redis_broker, caplog) -> None:
    _, _, address = _address(redis_broker)
    for url in (f"redis://default:{WRONG}@{address}", f"redis://{address}?password={WRONG}"):
        bus = RedisEventBus(RedisEventBusConfig(redis_url=url, publish_timeout=10))
        with caplog.at_level(logging.DEBUG), pytest.raises(BusConnectionError) as failed:
            await asyncio.wait_for(bus.publish([]), WAIT)
        assert WRONG not in f"{failed.value} {failed.value!r} {failed.value.__cause__!r}"
        assert WRONG not in caplog.text
        await asyncio.wait_for(bus.shutdown(5), WAIT)


@pytest.mark.rabbitmq
async def test_a_wrong_rabbitmq_password_fails_without_showing_it(rabbitmq_broker, caplog) -> None:
    user, _, address = _address(rabbitmq_broker)
    for url in (f"amqp://{user}:{WRONG}@{address}", f"amqp://{user}:{WRONG}%40x@{address}"):
        bus = RabbitMQEventBus(RabbitMQEventBusConfig(rabbitmq_url=url))
        with caplog.at_level(logging.DEBUG), pytest.raises(BusConnectionError) as failed:
            await asyncio.wait_for(bus.connect(), WAIT)
        text = f"{failed.value} {failed.value!r} {bus.config!r}"
        assert WRONG not in text, text
        assert WRONG not in caplog.text
        await asyncio.wait_for(bus.shutdown(5), WAIT)


@pytest.mark.redis
def test_the_doctor_report_hides_a_query_string_password(redis_broker, monkeypatch) -> None:
    url, password = _query_url(redis_broker)
    monkeypatch.setenv("EVENTSOURCE_LAB_REDIS_URL", url)
    report = format_report(diagnose())
    assert "EVENTSOURCE_LAB_REDIS_URL=" in report and password not in report


def test_a_mistyped_url_field_does_not_put_the_password_in_the_error() -> None:
    with pytest.raises(pydantic.ValidationError) as failed:
        RedisEventBusConfig(redis_uri="redis://default:s3cretpw@127.0.0.1:6400/0")
    assert "s3cretpw" not in str(failed.value)
