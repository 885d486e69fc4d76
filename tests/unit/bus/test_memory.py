"""InMemoryEventBus: background publishing, its bound, and shutdown."""

from __future__ import annotations

import asyncio
from uuid import uuid4

import pytest

from eventsource_lab import InMemoryEventBus
from eventsource_lab.bus import EventBus
from tests.support.events import OrderPlaced
from tests.support.waiting import Recorder


def placed() -> OrderPlaced:
    return OrderPlaced(aggregate_id=uuid4(), customer_name="A", total_amount=1.0)


class Gate:
    """A handler that blocks until the test opens the gate."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.entered = 0
        self.finished = 0

    async def handle(self, event) -> None:
        self.entered += 1
        await self.open.wait()
        self.finished += 1


def test_importable_from_both_places() -> None:
    import eventsource_lab
    import eventsource_lab.bus

    assert eventsource_lab.InMemoryEventBus is eventsource_lab.bus.InMemoryEventBus
    assert issubclass(InMemoryEventBus, EventBus)


async def test_background_publish_returns_before_handlers_finish() -> None:
    bus, gate = InMemoryEventBus(), Gate()
    bus.subscribe(OrderPlaced, gate)
    await asyncio.wait_for(bus.publish([placed()], background=True), timeout=1)
    assert gate.finished == 0
    assert bus.get_stats()["background_tasks_created"] == 1
    gate.open.set()
    await bus.shutdown(timeout=5)
    assert gate.finished == 1
    stats = bus.get_stats()
    assert (stats["background_tasks_completed"], stats["background_tasks_cancelled"]) == (1, 0)


async def test_past_the_bound_background_publishes_run_inline() -> None:
    bus, recorder = InMemoryEventBus(max_background_tasks=1), Recorder()
    bus.subscribe(OrderPlaced, recorder)
    first, second = placed(), placed()
    await bus.publish([first], background=True)  # a task, not started yet
    await bus.publish([second], background=True)  # over the bound: handled before returning
    assert second.event_id in recorder.ids
    await bus.shutdown(timeout=5)
    assert recorder.ids == [second.event_id, first.event_id]
    stats = bus.get_stats()
    assert (stats["background_tasks_created"], stats["events_published"]) == (1, 2)


async def test_shutdown_drains_background_work() -> None:
    bus, recorder = InMemoryEventBus(), Recorder()
    bus.subscribe(OrderPlaced, recorder)

    async def slow(event):
        await asyncio.sleep(0.01)

    bus.subscribe(OrderPlaced, slow)
    for _ in range(50):
        await bus.publish([placed()], background=True)
    await bus.shutdown(timeout=10)
    assert len(recorder.events) == 50
    stats = bus.get_stats()
    assert stats["background_tasks_created"] == stats["background_tasks_completed"] == 50


async def test_shutdown_cancels_what_outlives_the_timeout(caplog: pytest.LogCaptureFixture) -> None:
    bus, gate = InMemoryEventBus(), Gate()
    bus.subscribe(OrderPlaced, gate)
    await bus.publish([placed()], background=True)
    await asyncio.wait_for(bus.shutdown(timeout=0.05), timeout=5)
    assert gate.entered == 1 and gate.finished == 0
    stats = bus.get_stats()
    assert (stats["background_tasks_completed"], stats["background_tasks_cancelled"]) == (0, 1)
    assert "cancelling 1 unfinished background publishes" in caplog.text


class HeldSendBus(EventBus):
    """A bus whose send of a "held" event waits for the test, as a broker bus's publish waits
    for its broker; ``sent`` is what reached the broker."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.sent: list[OrderPlaced] = []

    async def _publish(self, events: list) -> None:
        if any(event.customer_name == "held" for event in events):
            await self.release.wait()
        self.sent.extend(events)


async def test_a_send_cancelled_by_shutdown_never_happens_and_counts_as_cancelled() -> None:
    bus = HeldSendBus()
    free = placed()
    held = OrderPlaced(aggregate_id=uuid4(), customer_name="held", total_amount=1.0)
    await bus.publish([free], background=True)
    await bus.publish([held], background=True)
    await asyncio.wait_for(bus.shutdown(timeout=0.05), timeout=5)
    assert bus.sent == [free]  # the held event never reached the broker
    stats = bus.get_stats()
    created, completed, cancelled = (
        stats[f"background_tasks_{k}"] for k in ("created", "completed", "cancelled")
    )
    assert (created, completed, cancelled) == (2, 1, 1)


async def test_a_background_publish_that_raises_counts_as_completed_and_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Unreachable(EventBus):
        async def _publish(self, events: list) -> None:
            raise ConnectionError("broker unreachable")

    bus = Unreachable()
    await bus.publish([placed()], background=True)
    await asyncio.wait_for(bus.shutdown(timeout=5), timeout=10)
    stats = bus.get_stats()
    assert (stats["background_tasks_completed"], stats["background_tasks_cancelled"]) == (1, 0)
    assert "background publish failed" in caplog.text


async def test_shutdown_twice_and_use_after_is_fine() -> None:
    bus, recorder = InMemoryEventBus(), Recorder()
    bus.subscribe(OrderPlaced, recorder)
    await bus.shutdown()
    await bus.shutdown()
    await bus.publish([placed()])
    assert len(recorder.events) == 1


async def test_connect_is_idempotent_and_context_manager_connects() -> None:
    bus = InMemoryEventBus()
    assert not bus.is_connected
    async with bus as entered:
        assert entered is bus and bus.is_connected
        await bus.connect()
    assert not bus.is_connected


def test_background_bound_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        InMemoryEventBus(max_background_tasks=0)
