"""A long outage: the consumer keeps trying to reconnect through hundreds of failed attempts,
then resumes once the broker is back and handles what is published afterwards.

The reconnect backoff is made tiny (``RECONNECT`` patched where the buses read it; RabbitMQ
reconnects through aio-pika's robust connection, whose interval the bus sets once, patched too),
so a few seconds of outage are hundreds of attempts: past any exponent that could overflow, any
counter that could give up. The broker is stopped (its port refuses at once) for that long, then
started again. Local tansu loses its topics when stopped (memory only), so on Kafka this is also
a restart that empties the broker: there the test publishes once the consumer has made its
topics again (see test_broker_restart.py for why tansu cannot keep what comes before).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from eventsource_lab.brokers import Broker
from eventsource_lab.bus.retry import RetryPolicy
from tests.faults._support import (
    assert_alive,
    assert_counted,
    assert_each_once,
    bring_up,
    take_down,
)
from tests.support.events import OrderPlaced
from tests.support.scenarios import bus_factory, orders
from tests.support.waiting import Recorder, eventually

OUTAGE_ATTEMPTS = 200  # failed reconnect attempts to sit through
N = 10
WAIT = 30.0


@dataclass(frozen=True)
class CountingPolicy(RetryPolicy):
    """A tiny backoff that counts the attempts it was asked about."""

    def delay(self, attempt: int) -> float:
        ATTEMPTS.append(attempt)
        return super().delay(attempt)


ATTEMPTS: list[int] = []
TINY = CountingPolicy(initial=0.001, maximum=0.005)


@pytest.fixture
async def buses(
    broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Callable[..., Any]]:
    """Buses whose reconnects back off by milliseconds; the broker runs again afterwards."""
    ATTEMPTS.clear()
    for module in ("broker", "redis", "kafka", "rabbitmq"):
        monkeypatch.setattr(f"eventsource_lab.bus.{module}.RECONNECT", TINY, raising=False)
    monkeypatch.setattr("eventsource_lab.bus.rabbitmq._RECONNECT_INTERVAL", 0.005)
    try:
        async with bus_factory(broker) as make:
            yield make
    finally:
        if not broker.is_running():
            await bring_up(broker)


class _FailedAttempts(logging.Handler):
    """Counts the drivers' own failed connection attempts: RabbitMQ reconnects in aio-pika's
    robust connection, and aiokafka retries inside its client (on its own ~50 ms backoff)."""

    LOGGERS = ("aio_pika.robust_connection", "aiokafka")

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "failed" in message or "Unable connect" in message:
            self.count += 1


async def test_the_consumer_resumes_after_hundreds_of_failed_reconnects(
    broker: Broker, buses: Callable[..., Any]
) -> None:
    consumer = buses(consumer_group="projection")
    recorder = Recorder()
    consumer.subscribe(OrderPlaced, recorder)
    await consumer.start_consuming()
    first = orders(1, "before")
    await buses(consumer_group="publisher").publish(first)
    await recorder.wait_for(1, timeout=WAIT)

    failed = _FailedAttempts()
    for name in failed.LOGGERS:
        logging.getLogger(name).addHandler(failed)
    try:
        await take_down(broker)
        await eventually(
            lambda: len(ATTEMPTS) + failed.count >= OUTAGE_ATTEMPTS or not consumer.is_consuming,
            timeout=20,
            what=f"{OUTAGE_ATTEMPTS} failed reconnect attempts",
        )
        assert_alive(consumer)  # still trying, not given up
        reconnections = consumer.get_stats()["reconnections"]
        await bring_up(broker)
        if not broker.durable:  # tansu lost its log: publish once the consumer made it again
            await eventually(
                lambda: consumer.get_stats()["reconnections"] > reconnections, timeout=WAIT
            )
    finally:
        for name in failed.LOGGERS:
            logging.getLogger(name).removeHandler(failed)

    after = orders(N, "after")
    await asyncio.wait_for(buses(consumer_group="publisher").publish(after), WAIT)
    await eventually(
        lambda: {e.event_id for e in after} <= set(recorder.ids) or not consumer.is_consuming,
        timeout=WAIT,
        what="the events published after the outage",
    )
    assert_alive(consumer)
    assert_each_once(recorder.ids, [e.event_id for e in [*first, *after]])
    await assert_counted(
        consumer,
        {
            "events_consumed": N + 1,
            "events_processed": N + 1,
            "events_failed": 0,
            "messages_dead_lettered": 0,
            "handler_errors": 0,
        },
    )
