"""The consumer supervisor under attack, without a broker: concurrent starts, stops during a
backoff, a stop racing a start, shutdown while backing off, publish_timeout against a slow
connect and background publishes."""

from __future__ import annotations

import asyncio
import logging
from uuid import uuid4

import pytest

from eventsource_lab.bus import broker as broker_module
from eventsource_lab.bus.broker import BrokerBusConfig, BrokerEventBus, DeadLetter
from eventsource_lab.bus.retry import RetryPolicy
from eventsource_lab.errors import BusConnectionError
from eventsource_lab.events import DomainEvent
from tests.support.events import OrderPlaced
from tests.support.waiting import eventually

WAIT = 5.0


class ScriptedBus(BrokerEventBus):
    """A broker bus whose loop is ready, then fails ``fail_after_ready`` times with a broker
    error, then consumes until stopped; its connect waits for ``connect_gate`` when set."""

    def __init__(self, fail_after_ready: int = 0, **config: object) -> None:
        super().__init__(BrokerBusConfig(**config))
        self.fail_after_ready = fail_after_ready
        self.starts = 0
        self.connects = 0
        self.failed = asyncio.Event()
        self.receiving = asyncio.Event()
        self.connect_gate: asyncio.Event | None = None
        self.sent: list[DomainEvent] = []

    async def _connect(self) -> None:
        self.connects += 1
        if self.connect_gate is not None:
            await self.connect_gate.wait()

    async def _consume(self) -> None:
        self.starts += 1
        self._consuming_ready()
        await asyncio.sleep(0)
        if self.starts <= self.fail_after_ready:
            self.failed.set()
            raise ConnectionError(f"broker gone (start {self.starts})")
        self.receiving.set()
        await asyncio.Event().wait()

    async def _send(self, events: list[DomainEvent]) -> None:
        self.sent.extend(events)

    async def get_dlq_messages(self, limit: int = 100) -> list[DeadLetter]:
        return []

    async def replay_dlq_message(self, message_id: str) -> bool:
        return False


def placed() -> OrderPlaced:
    return OrderPlaced(aggregate_id=uuid4(), customer_name="A", total_amount=1.0)


@pytest.fixture
def slow_reconnect(monkeypatch: pytest.MonkeyPatch) -> None:
    """A backoff far longer than any test: a stop must not wait it out."""
    monkeypatch.setattr(broker_module, "RECONNECT", RetryPolicy(initial=60, maximum=60))


async def test_two_concurrent_start_consuming_calls_run_one_loop() -> None:
    bus = ScriptedBus()
    await asyncio.wait_for(asyncio.gather(bus.start_consuming(), bus.start_consuming()), WAIT)
    assert bus.starts == 1 and bus.is_consuming
    await asyncio.wait_for(bus.shutdown(1), WAIT)
    assert not bus.is_consuming and bus.consumer_error is None


async def test_stop_consuming_during_a_backoff_returns_at_once_without_error(
    slow_reconnect,
) -> None:
    bus = ScriptedBus(fail_after_ready=1)
    await asyncio.wait_for(bus.start_consuming(), WAIT)
    await asyncio.wait_for(bus.failed.wait(), WAIT)
    await asyncio.wait_for(bus.stop_consuming(timeout=1), WAIT)
    assert not bus.is_consuming and bus.consumer_error is None and bus.starts == 1
    await asyncio.wait_for(bus.shutdown(1), WAIT)


@pytest.mark.parametrize("close", ["disconnect", "shutdown"])
async def test_closing_the_bus_during_a_backoff_stops_the_loop(slow_reconnect, close) -> None:
    bus = ScriptedBus(fail_after_ready=1)
    await asyncio.wait_for(bus.start_consuming(), WAIT)
    await asyncio.wait_for(bus.failed.wait(), WAIT)
    await asyncio.wait_for(getattr(bus, close)(), WAIT)
    assert not bus.is_consuming and not bus.is_connected and bus.consumer_error is None


async def test_a_start_right_after_a_stop_leaves_no_error_behind(caplog) -> None:
    bus = ScriptedBus()
    await asyncio.wait_for(bus.start_consuming(), WAIT)
    old = bus.start_consuming_in_background()
    with caplog.at_level(logging.ERROR, logger="eventsource_lab.bus"):
        # a restart button: stop and start at once, as two tasks
        await asyncio.wait_for(
            asyncio.gather(bus.stop_consuming(timeout=1), bus.start_consuming()), WAIT
        )
    assert old.done() and bus.is_consuming
    assert bus.consumer_error is None, repr(bus.consumer_error)
    assert "stopped consuming" not in caplog.text
    await asyncio.wait_for(bus.shutdown(1), WAIT)


async def test_a_stop_then_a_start_awaited_in_turn_consume_again() -> None:
    bus = ScriptedBus()
    for _ in range(3):
        await asyncio.wait_for(bus.start_consuming(), WAIT)
        await asyncio.wait_for(bus.stop_consuming(timeout=1), WAIT)
    assert bus.starts == 3 and bus.consumer_error is None and not bus.is_consuming
    await asyncio.wait_for(bus.shutdown(1), WAIT)


async def test_a_publish_timeout_shorter_than_connect_fails_and_leaves_the_bus_usable() -> None:
    bus = ScriptedBus(publish_timeout=0.05)
    bus.connect_gate = asyncio.Event()
    with pytest.raises(BusConnectionError, match="publish_timeout"):
        await asyncio.wait_for(bus.publish([placed()]), WAIT)
    assert not bus.is_connected and bus.get_stats()["events_published"] == 0
    bus.connect_gate.set()
    await asyncio.wait_for(bus.publish([placed()]), WAIT)
    assert bus.is_connected and len(bus.sent) == 1
    await asyncio.wait_for(bus.shutdown(1), WAIT)


async def test_a_consumer_start_survives_a_publish_timing_out_on_the_same_connect() -> None:
    bus = ScriptedBus(publish_timeout=0.05)
    bus.connect_gate = asyncio.Event()
    consumer = bus.start_consuming_in_background()
    with pytest.raises(BusConnectionError):
        await asyncio.wait_for(bus.publish([placed()]), WAIT)
    bus.connect_gate.set()
    await asyncio.wait_for(bus.receiving.wait(), WAIT)
    assert not consumer.done() and bus.consumer_error is None
    await asyncio.wait_for(bus.shutdown(1), WAIT)


async def test_a_background_publish_past_publish_timeout_is_logged_and_counted(caplog) -> None:
    bus = ScriptedBus(publish_timeout=0.05)
    bus.connect_gate = asyncio.Event()
    with caplog.at_level(logging.ERROR, logger="eventsource_lab.bus"):
        await asyncio.wait_for(bus.publish([placed()], background=True), WAIT)
        await eventually(lambda: bus.get_stats()["background_tasks_completed"] == 1, timeout=WAIT)
    assert "background publish failed" in caplog.text
    assert "publish_timeout" in caplog.text
    assert bus.get_stats()["events_published"] == 0
    bus.connect_gate.set()
    await asyncio.wait_for(bus.shutdown(1), WAIT)
