"""A handler that times out or cancels itself fails alone: the consumer loop goes on, the event
is retried or dead-lettered like any other failure, and the next event is handled once."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable

import pytest

from eventsource_lab import InMemoryEventBus
from eventsource_lab.bus import BrokerEventBus, wire
from tests.faults.conftest import Kit
from tests.support.events import OrderPlaced
from tests.support.scenarios import eventually_async, orders
from tests.support.waiting import Recorder, eventually


async def times_out() -> None:
    """Give up on a long wait after 50 ms, the way a handler bounds its own work."""
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(0.05):
            await asyncio.sleep(10)
    else:
        await asyncio.wait_for(asyncio.sleep(10), 0.05)


async def cancels_itself() -> None:
    """Raise ``CancelledError`` from inside the handler before it ever suspends."""
    raise asyncio.CancelledError


FAILURES: dict[str, Callable[[], Awaitable[None]]] = {
    "TimeoutError": times_out,
    "CancelledError": cancels_itself,
}


def failing_on(customer: str, fail: Callable[[], Awaitable[None]], recorder: Recorder, calls: list):
    """A handler that runs ``fail()`` for ``customer``'s orders and records the others."""

    async def handler(event: OrderPlaced) -> None:
        calls.append(event.customer_name)
        if event.customer_name == customer:
            await fail()
        await recorder.handle(event)

    return handler


def consumed_both(bus: BrokerEventBus) -> bool:
    """Whether the bus has finished with both events: one handled, one given up on."""
    stats = bus.get_stats()
    return stats["events_processed"] == 1 and stats["events_failed"] == 1


@pytest.mark.parametrize("error_type", FAILURES)
async def test_a_handler_that_times_out_or_cancels_itself_is_dead_lettered(
    kit: Kit, error_type: str
) -> None:
    bus = kit.make(max_retries=0)
    recorder, calls = Recorder(), []
    bus.subscribe(OrderPlaced, failing_on("bad0", FAILURES[error_type], recorder, calls))
    await bus.start_consuming()
    (bad,), (good,) = orders(1, "bad"), orders(1, "good")
    await bus.publish([bad])
    await bus.publish([good])
    assert [e.event_id for e in await recorder.wait_for(1, timeout=30)] == [good.event_id]
    await eventually_async(bus.get_dlq_messages, lambda letters: len(letters) == 1, timeout=30)
    (letter,) = await bus.get_dlq_messages()
    assert letter.error_type == error_type
    assert wire.decode(letter.body, bus.event_registry, letter.event_type).event_id == bad.event_id
    await eventually(lambda: consumed_both(bus), timeout=30, what="both events consumed")
    assert bus.is_consuming and bus.consumer_error is None
    assert sorted(calls) == ["bad0", "good0"]  # once each: Kafka's partitions need not keep order
    assert recorder.ids == [good.event_id]


@pytest.mark.parametrize("error_type", FAILURES)
async def test_a_handler_that_timed_out_or_cancelled_itself_is_retried(
    kit: Kit, error_type: str
) -> None:
    bus = kit.make(max_retries=2)
    recorder, calls = Recorder(), []
    fail = FAILURES[error_type]
    attempts: list[int] = []

    async def fails_once() -> None:
        attempts.append(1)
        if len(attempts) == 1:
            await fail()

    bus.subscribe(OrderPlaced, failing_on("flaky0", fails_once, recorder, calls))
    await bus.start_consuming()
    (flaky,), (good,) = orders(1, "flaky"), orders(1, "good")
    await bus.publish([flaky])
    await bus.publish([good])
    await recorder.wait_for(2, timeout=30)
    await eventually(
        lambda: bus.get_stats()["events_processed"] == 2, timeout=30, what="both processed"
    )
    assert sorted(recorder.ids) == sorted([flaky.event_id, good.event_id])
    assert bus.get_stats()["handler_errors"] == 1
    assert await bus.get_dlq_messages() == []
    assert bus.is_consuming and bus.consumer_error is None


@pytest.mark.parametrize("error_type", FAILURES)
async def test_in_memory_a_handler_that_times_out_or_cancels_itself_fails_alone(
    error_type: str,
) -> None:
    bus, recorder, calls = InMemoryEventBus(), Recorder(), []
    bus.subscribe(OrderPlaced, failing_on("bad0", FAILURES[error_type], recorder, calls))
    (bad,), (good,) = orders(1, "bad"), orders(1, "good")
    await asyncio.wait_for(bus.publish([bad]), timeout=5)
    await asyncio.wait_for(bus.publish([good]), timeout=5)
    assert bus.get_stats()["handler_errors"] == 1
    assert calls == ["bad0", "good0"]
    assert recorder.ids == [good.event_id]
