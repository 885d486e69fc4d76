"""Every async handler runs as a task of its own: its timeouts, task groups and cancellations
are its own failures, never the publisher's."""

from __future__ import annotations

import asyncio
import contextvars
import sys
from uuid import uuid4

import pytest

from eventsource_lab import InMemoryEventBus
from eventsource_lab.bus.handlers import Delivery
from tests.support.events import OrderPlaced
from tests.support.waiting import Recorder


def placed() -> OrderPlaced:
    return OrderPlaced(aggregate_id=uuid4(), customer_name="A", total_amount=1.0)


async def times_out(seconds: float = 0.05) -> None:
    """Give up on a long wait after ``seconds``, the way a handler bounds its own work."""
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(seconds):
            await asyncio.sleep(10)
    else:
        await asyncio.wait_for(asyncio.sleep(10), seconds)


async def publish(bus: InMemoryEventBus, event: OrderPlaced) -> None:
    await asyncio.wait_for(bus.publish([event]), timeout=5)


async def test_a_handlers_own_timeout_is_its_failure_not_the_publishers() -> None:
    bus, recorder, deliveries = InMemoryEventBus(), Recorder(), []

    async def bounded(event):
        await times_out()

    bus.subscribe(OrderPlaced, bounded)
    bus.subscribe(OrderPlaced, recorder)
    bus.on_delivery(deliveries.append)
    await publish(bus, placed())
    assert bus.get_stats()["handler_errors"] == 1
    assert len(recorder.events) == 1
    (delivery,) = deliveries
    assert isinstance(delivery, Delivery)
    assert delivery.failed == (delivery.handlers[0],)


async def test_dispatch_reports_a_handlers_timeout_as_a_timeout_error() -> None:
    bus = InMemoryEventBus()

    async def bounded(event):
        await times_out()

    bus.subscribe(OrderPlaced, bounded)
    (failure,) = await asyncio.wait_for(bus._dispatch(placed()), timeout=5)
    assert isinstance(failure.error, asyncio.TimeoutError)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="TaskGroup is new in 3.11")
async def test_a_task_group_failing_inside_a_handler_is_that_handlers_failure() -> None:
    bus, recorder = InMemoryEventBus(), Recorder()

    async def fails_soon():
        await asyncio.sleep(0)
        raise ValueError("child failed")

    async def grouped(event):
        async with asyncio.TaskGroup() as group:  # type: ignore[attr-defined]
            group.create_task(fails_soon())
            group.create_task(asyncio.sleep(10))

    bus.subscribe(OrderPlaced, grouped)
    bus.subscribe(OrderPlaced, recorder)
    (failure,) = await asyncio.wait_for(bus._dispatch(placed()), timeout=5)
    assert type(failure.error).__name__ == "ExceptionGroup"
    assert len(recorder.events) == 1


@pytest.mark.parametrize("where", ["before-await", "after-await"])
async def test_a_handler_raising_cancelled_error_itself_is_its_failure(where: str) -> None:
    bus, recorder = InMemoryEventBus(), Recorder()

    async def gives_up(event):
        if where == "after-await":
            await asyncio.sleep(0)
        raise asyncio.CancelledError

    bus.subscribe(OrderPlaced, gives_up)
    bus.subscribe(OrderPlaced, recorder)
    await publish(bus, placed())
    assert bus.get_stats()["handler_errors"] == 1
    assert len(recorder.events) == 1


async def test_a_sync_handler_raising_cancelled_error_is_its_failure() -> None:
    bus, recorder = InMemoryEventBus(), Recorder()

    def gives_up(event):
        raise asyncio.CancelledError

    bus.subscribe(OrderPlaced, gives_up)
    bus.subscribe(OrderPlaced, recorder)
    await publish(bus, placed())
    assert bus.get_stats()["handler_errors"] == 1
    assert len(recorder.events) == 1


async def test_each_async_handler_is_a_task_of_its_own() -> None:
    bus, tasks = InMemoryEventBus(), {}

    async def a(event):
        tasks["a"] = asyncio.current_task()

    async def b(event):
        tasks["b"] = asyncio.current_task()
        await asyncio.sleep(0)
        assert asyncio.current_task() is tasks["b"]

    bus.subscribe(OrderPlaced, a)
    bus.subscribe(OrderPlaced, b)
    await publish(bus, placed())
    publisher = asyncio.current_task()
    assert len({id(tasks["a"]), id(tasks["b"]), id(publisher)}) == 3
    assert bus.get_stats()["handler_errors"] == 0


async def test_cancelling_the_publisher_cancels_the_handlers_and_raises_in_the_publisher() -> None:
    bus, started, cancelled = InMemoryEventBus(), [], []
    both_started = asyncio.Event()

    def hangs(name: str):
        async def handler(event):
            started.append(name)
            if len(started) == 2:
                both_started.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.append(name)
                raise

        return handler

    bus.subscribe(OrderPlaced, hangs("a"))
    bus.subscribe(OrderPlaced, hangs("b"))
    publishing = asyncio.create_task(bus.publish([placed()]))
    await asyncio.wait_for(both_started.wait(), timeout=5)
    publishing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(publishing, timeout=5)
    assert sorted(cancelled) == ["a", "b"]
    assert bus.get_stats()["handler_errors"] == 0


async def test_context_variables_set_by_one_handler_stay_in_it() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="publisher")
    bus, seen = InMemoryEventBus(), {}
    a_set = asyncio.Event()

    async def a(event):
        var.set("a")
        a_set.set()
        await asyncio.sleep(0)
        seen["a"] = var.get()

    async def b(event):
        await a_set.wait()
        seen["b"] = var.get()

    def c(event):
        seen["c"] = var.get()
        var.set("c")

    bus.subscribe(OrderPlaced, a)
    bus.subscribe(OrderPlaced, b)
    bus.subscribe(OrderPlaced, c)
    await publish(bus, placed())
    assert seen == {"a": "a", "b": "publisher", "c": "publisher"}
    assert var.get() == "publisher"


@pytest.mark.skipif(sys.version_info < (3, 12), reason="eager tasks are new in 3.12")
async def test_handlers_that_never_suspend_finish_without_a_trip_through_the_loop() -> None:
    """On 3.12+ handler tasks start eagerly: publish() completes in its first step."""
    bus, recorder = InMemoryEventBus(), Recorder()
    bus.subscribe(OrderPlaced, recorder)
    bus.subscribe_to_all_events(Recorder())
    publishing = bus.publish([placed()])
    with pytest.raises(StopIteration):
        publishing.send(None)
    assert len(recorder.events) == 1
