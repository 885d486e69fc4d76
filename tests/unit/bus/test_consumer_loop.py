"""The broker consumer loop's supervision, without a broker: what ends it, what it outlives,
and how a user learns that consuming stopped."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest

from eventsource_lab.bus import broker as broker_module
from eventsource_lab.bus.broker import BrokerBusConfig, BrokerEventBus, DeadLetter
from eventsource_lab.bus.retry import RetryPolicy
from eventsource_lab.errors import BusConnectionError
from eventsource_lab.events import DomainEvent
from tests.support.waiting import eventually


class ScriptedBus(BrokerEventBus):
    """A broker bus whose consumer loop runs ``script(attempt)`` each time it starts."""

    def __init__(self, script: Callable[[int], None], **config: object) -> None:
        super().__init__(BrokerBusConfig(**config))
        self.script = script
        self.starts = 0
        self.sent: list[DomainEvent] = []
        self.send_gate: asyncio.Event | None = None

    async def _consume(self) -> None:
        attempt, self.starts = self.starts, self.starts + 1
        self._consuming_ready()
        await asyncio.sleep(0)
        self.script(attempt)
        await asyncio.Event().wait()  # consume until stopped

    async def _send(self, events: list[DomainEvent]) -> None:
        if self.send_gate is not None:
            await self.send_gate.wait()
        self.sent.extend(events)

    async def get_dlq_messages(self, limit: int = 100) -> list[DeadLetter]:
        return []

    async def replay_dlq_message(self, message_id: str) -> bool:
        return False


@pytest.fixture
def fast_reconnect(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(broker_module, "RECONNECT", RetryPolicy(initial=1e-6, maximum=1e-5))


def fail_first(n: int, error: type[Exception] = ConnectionError) -> Callable[[int], None]:
    def script(attempt: int) -> None:
        if attempt < n:
            raise error(f"broker gone (attempt {attempt})")

    return script


async def test_transient_errors_restart_the_loop_after_an_outage_of_thousands_of_attempts(
    fast_reconnect,
) -> None:
    bus = ScriptedBus(fail_first(3_000))
    await bus.start_consuming()
    await eventually(lambda: bus.starts == 3_001, timeout=30)
    assert bus.is_consuming and bus.consumer_error is None
    await bus.shutdown(5)
    assert not bus.is_consuming and bus.consumer_error is None


async def test_an_unexpected_error_ends_the_loop_loudly(fast_reconnect, caplog) -> None:
    bus = ScriptedBus(fail_first(1, ValueError))
    with caplog.at_level(logging.ERROR, logger="eventsource_lab.bus"):
        await bus.start_consuming()
        await eventually(lambda: not bus.is_consuming, timeout=5)
    assert isinstance(bus.consumer_error, ValueError)
    assert any(
        r.levelno == logging.ERROR and "stopped consuming" in r.getMessage() for r in caplog.records
    )
    assert bus.starts == 1  # not restarted: it is no broker error
    await bus.shutdown(5)


async def test_a_consumer_cancelled_from_outside_says_so(caplog) -> None:
    bus = ScriptedBus(lambda attempt: None)
    await bus.start_consuming()
    with caplog.at_level(logging.ERROR, logger="eventsource_lab.bus"):
        bus.start_consuming_in_background().cancel()
        await eventually(lambda: not bus.is_consuming, timeout=5)
    assert isinstance(bus.consumer_error, asyncio.CancelledError)
    assert "stopped consuming" in caplog.text
    await bus.shutdown(5)


async def test_stop_consuming_is_no_error_and_a_restart_clears_the_last_one(
    fast_reconnect,
) -> None:
    bus = ScriptedBus(fail_first(1, ValueError))
    await bus.start_consuming()
    await eventually(lambda: bus.consumer_error is not None, timeout=5)
    await bus.start_consuming()  # the script now lets it run
    assert bus.is_consuming and bus.consumer_error is None
    await bus.stop_consuming()
    assert not bus.is_consuming and bus.consumer_error is None
    await bus.shutdown(5)


async def test_a_publish_the_broker_never_takes_fails_after_publish_timeout() -> None:
    bus = ScriptedBus(lambda attempt: None, publish_timeout=0.05)
    bus.send_gate = asyncio.Event()
    loop = asyncio.get_running_loop()
    began = loop.time()
    with pytest.raises(BusConnectionError, match=r"publish_timeout=0\.05s"):
        await asyncio.wait_for(bus.publish([_event()]), 5)
    assert loop.time() - began < 2
    assert bus.get_stats()["events_published"] == 0
    bus.send_gate.set()  # the broker is back: publishing works again
    await asyncio.wait_for(bus.publish([_event()]), 5)
    assert len(bus.sent) == 1 and bus.get_stats()["events_published"] == 1
    await bus.shutdown(5)


def test_the_registry_given_is_kept_even_when_empty() -> None:
    from eventsource_lab import EventRegistry

    registry = EventRegistry()
    assert ScriptedBus(lambda attempt: None).event_registry is not registry
    bus = BrokerEventBus.__new__(ScriptedBus)
    BrokerEventBus.__init__(bus, BrokerBusConfig(), registry)
    assert bus.event_registry is registry


def _event() -> DomainEvent:
    from uuid import uuid4

    from tests.support.events import OrderPlaced

    return OrderPlaced(aggregate_id=uuid4(), customer_name="x", total_amount=1.0)


async def test_stop_consuming_never_hangs_on_a_loop_that_ignores_cancellation(caplog) -> None:
    release = asyncio.Event()

    class Stubborn(ScriptedBus):
        async def _consume(self) -> None:
            self._consuming_ready()
            while not release.is_set():  # a driver call that swallows every cancel
                try:
                    await release.wait()
                except asyncio.CancelledError:
                    continue

    bus = Stubborn(lambda attempt: None)
    await bus.start_consuming()
    task = bus.start_consuming_in_background()
    with caplog.at_level(logging.ERROR, logger="eventsource_lab.bus"):
        await asyncio.wait_for(bus.stop_consuming(timeout=0.1), 5)
    assert "did not stop" in caplog.text
    assert not task.done()  # left behind, as logged
    release.set()
    await asyncio.wait_for(task, 5)
