"""Handlers under attack: BaseException subclasses, sync handlers returning awaitables, odd
callables as subscriptions, changes to the table and publishes from inside a handler,
background publishes cancelled at shutdown, context isolation, and the counts of all of them."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import gc
import logging
import subprocess
import sys
from pathlib import Path
from uuid import uuid4

import pytest

from eventsource_lab import InMemoryEventBus
from eventsource_lab.bus.handlers import Delivery
from tests.support.events import OrderPlaced, OrderShipped

WAIT = 5.0


def placed() -> OrderPlaced:
    return OrderPlaced(aggregate_id=uuid4(), customer_name="A", total_amount=1.0)


def shipped() -> OrderShipped:
    return OrderShipped(aggregate_id=uuid4(), tracking_number="T")


async def publish(bus: InMemoryEventBus, *events: object) -> None:
    await asyncio.wait_for(bus.publish(list(events)), WAIT)


class Fatal(BaseException):
    """A BaseException that is neither KeyboardInterrupt nor SystemExit nor a cancel."""


# -- BaseException subclasses ------------------------------------------------------------------


_BASE_EXCEPTION_PROBE = """
import ast, asyncio, sys
from uuid import uuid4
from eventsource_lab import InMemoryEventBus
from eventsource_lab.demo import OrderPlaced

class Fatal(BaseException):
    pass

async def main():
    bus, deliveries = InMemoryEventBus(), []
    bus.on_delivery(deliveries.append)

    async def fails(event):
        await asyncio.sleep(0)
        raise {error}("handler gave up")

    bus.subscribe(OrderPlaced, fails)
    try:
        await asyncio.wait_for(bus.publish([OrderPlaced(
            aggregate_id=uuid4(), customer_name="A", total_amount=1.0)]), 5)
    except {error}:
        return "raised"
    counted = bus.get_stats()["handler_errors"] == 1 and len(deliveries[-1].failed) == 1
    return "counted" if counted else "lost"

outcome = asyncio.run(main())
try:
    ast.parse("x = " + "[" * 60 + "]" * 60)
except SystemError as exc:
    outcome += f", then compile fails: {{exc}}"
print(outcome)
"""


@pytest.mark.parametrize("error", ["Fatal", "GeneratorExit"])
def test_an_async_handlers_base_exception_is_not_lost(error: str) -> None:
    # In a child interpreter: on 3.11 the lost exception breaks compile() for the whole process.
    probe = subprocess.run(
        [sys.executable, "-c", _BASE_EXCEPTION_PROBE.format(error=error)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parents[3],
    )
    assert probe.returncode == 0, probe.stderr[-2000:]
    assert probe.stdout.strip() in ("raised", "counted"), probe.stdout


async def test_a_sync_handlers_base_exception_is_its_failure_as_an_async_ones_is() -> None:
    bus = InMemoryEventBus()

    def fails(event) -> None:
        raise Fatal("out")

    bus.subscribe(OrderPlaced, fails)
    await publish(bus, placed())
    assert bus.get_stats()["handler_errors"] == 1


async def test_sync_and_async_cancelled_errors_count_as_that_handlers_failure() -> None:
    bus, deliveries, ran = InMemoryEventBus(), [], []
    bus.on_delivery(deliveries.append)

    def sync_cancel(event) -> None:
        raise asyncio.CancelledError("sync")

    async def async_cancel(event) -> None:
        raise asyncio.CancelledError("async")

    bus.subscribe(OrderPlaced, sync_cancel)
    bus.subscribe(OrderPlaced, async_cancel)
    bus.subscribe(OrderPlaced, ran.append)
    await publish(bus, placed())
    assert len(ran) == 1
    assert bus.get_stats()["handler_errors"] == 2
    assert set(deliveries[0].failed) == {
        "test_sync_and_async_cancelled_errors_count_as_that_handlers_failure.<locals>.sync_cancel",
        "test_sync_and_async_cancelled_errors_count_as_that_handlers_failure.<locals>.async_cancel",
    }


# -- sync handlers returning awaitables --------------------------------------------------------


async def test_a_sync_handler_returning_a_future_is_awaited_and_its_error_counted() -> None:
    bus, deliveries = InMemoryEventBus(), []
    bus.on_delivery(deliveries.append)
    loop = asyncio.get_running_loop()
    futures: list[asyncio.Future[None]] = []

    def returns_future(event) -> asyncio.Future[None]:
        future = loop.create_future()
        futures.append(future)
        loop.call_soon(future.set_exception, ValueError("later"))
        return future

    bus.subscribe(OrderPlaced, returns_future)
    await publish(bus, placed())
    assert futures[0].done()
    assert bus.get_stats()["handler_errors"] == 1 and len(deliveries[0].failed) == 1


async def test_a_sync_handler_returning_a_non_awaitable_value_succeeds() -> None:
    bus = InMemoryEventBus()
    bus.subscribe(OrderPlaced, lambda e: 42)
    await publish(bus, placed())
    assert bus.get_stats()["handler_errors"] == 0


# -- what counts as the same subscription ------------------------------------------------------


class Equal:
    """Every instance equals every other and hashes alike: equal, yet distinct subscribers."""

    def __init__(self) -> None:
        self.seen: list[object] = []

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Equal)

    def __hash__(self) -> int:
        return 1

    def handle(self, event) -> None:
        self.seen.append(event)


class Static:
    calls: list[object] = []

    @staticmethod
    def handle(event) -> None:
        Static.calls.append(event)

    @classmethod
    def on(cls, event) -> None:
        cls.calls.append(event)


async def test_bound_methods_of_equal_but_distinct_objects_are_two_subscriptions() -> None:
    bus, a, b = InMemoryEventBus(), Equal(), Equal()
    bus.subscribe(OrderPlaced, a.handle)
    bus.subscribe(OrderPlaced, b.handle)
    bus.subscribe(OrderPlaced, a.handle)
    assert bus.get_subscriber_count(OrderPlaced) == 2
    assert bus.unsubscribe(OrderPlaced, b.handle)
    await publish(bus, placed())
    assert len(a.seen) == 1 and b.seen == []
    assert not bus.unsubscribe(OrderPlaced, Equal().handle)


async def test_staticmethod_classmethod_and_partial_handlers() -> None:
    Static.calls.clear()
    bus = InMemoryEventBus()
    bus.subscribe(OrderPlaced, Static())  # handle is a staticmethod
    bus.subscribe(OrderPlaced, Static.on)
    bus.subscribe(OrderPlaced, Static.on)  # a new bound classmethod each access: still one
    partial = functools.partial(Static.calls.append)
    bus.subscribe(OrderPlaced, partial)
    bus.subscribe(OrderPlaced, functools.partial(Static.calls.append))  # another object
    assert bus.get_subscriber_count(OrderPlaced) == 4
    await publish(bus, placed())
    assert len(Static.calls) == 4
    assert bus.unsubscribe(OrderPlaced, Static.on)
    assert bus.unsubscribe(OrderPlaced, partial)
    assert bus.get_subscriber_count(OrderPlaced) == 2


# -- changing subscriptions and publishing from inside a handler ------------------------------


async def test_subscriptions_changed_inside_a_handler_apply_from_the_next_event() -> None:
    bus, late = InMemoryEventBus(), []

    def once(event) -> None:
        bus.unsubscribe(OrderPlaced, once)
        bus.subscribe(OrderPlaced, late.append)

    bus.subscribe(OrderPlaced, once)
    first, second = placed(), placed()
    await publish(bus, first, second)
    assert late == [second]
    assert bus.get_stats()["handlers_invoked"] == 2


async def test_a_handler_publishing_is_delivered_before_it_continues() -> None:
    bus, order = InMemoryEventBus(), []

    async def on_place(event) -> None:
        order.append("placed-start")
        await bus.publish([shipped()])
        order.append("placed-end")

    bus.subscribe(OrderPlaced, on_place)
    bus.subscribe(OrderShipped, lambda e: order.append("shipped"))
    await publish(bus, placed())
    assert order == ["placed-start", "shipped", "placed-end"]
    stats = bus.get_stats()
    assert stats["events_published"] == 2 and stats["handlers_invoked"] == 2


async def test_a_handler_publishing_the_same_event_type_recursively_terminates() -> None:
    bus, depth = InMemoryEventBus(), []

    async def again(event) -> None:
        depth.append(event)
        if len(depth) < 50:
            await bus.publish([placed()])

    bus.subscribe(OrderPlaced, again)
    await publish(bus, placed())
    assert len(depth) == 50 and bus.get_stats()["handler_errors"] == 0


# -- background publishes at shutdown ----------------------------------------------------------


async def test_background_publishes_cancelled_at_shutdown_count_as_cancelled_not_failed() -> None:
    bus, started = InMemoryEventBus(), asyncio.Event()

    async def slow(event) -> None:
        started.set()
        await asyncio.sleep(60)

    bus.subscribe(OrderPlaced, slow)
    await bus.publish([placed()], background=True)
    await asyncio.wait_for(started.wait(), WAIT)
    await asyncio.wait_for(bus.shutdown(timeout=0.05), WAIT)
    stats = bus.get_stats()
    counts = [stats[f"background_tasks_{n}"] for n in ("created", "completed", "cancelled")]
    assert counts == [1, 0, 1]
    assert stats["handler_errors"] == 0


async def test_shutdown_with_no_grace_cancels_without_calling_the_tasks_stuck(caplog) -> None:
    """timeout=0 means "do not wait for the publishes", not "do not let a cancel land": a task
    that honours its cancel is cancelled, counted and not reported as left behind."""
    bus, started = InMemoryEventBus(), asyncio.Event()

    async def slow(event) -> None:
        started.set()
        await asyncio.sleep(60)

    bus.subscribe(OrderPlaced, slow)
    await bus.publish([placed()], background=True)
    await asyncio.wait_for(started.wait(), WAIT)
    with caplog.at_level(logging.ERROR, logger="eventsource_lab"):
        await asyncio.wait_for(bus.shutdown(timeout=0), WAIT)
    assert "ignored their cancel" not in caplog.text
    assert bus.get_stats()["background_tasks_cancelled"] == 1


async def test_shutdown_is_bounded_when_a_handler_ignores_its_cancel() -> None:
    bus, started, release = InMemoryEventBus(), asyncio.Event(), asyncio.Event()

    async def stubborn(event) -> None:
        started.set()
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                continue

    bus.subscribe(OrderPlaced, stubborn)
    await bus.publish([placed()], background=True)
    await asyncio.wait_for(started.wait(), WAIT)
    shutting = asyncio.ensure_future(bus.shutdown(timeout=0.1))
    try:
        done, _ = await asyncio.wait({shutting}, timeout=3)
        assert shutting in done
    finally:
        release.set()
        await asyncio.wait_for(shutting, WAIT)


# -- context isolation -------------------------------------------------------------------------


async def test_handlers_context_changes_stay_their_own() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="publisher")
    seen: dict[str, str] = {}
    bus = InMemoryEventBus()

    def sync_sets(event) -> None:
        seen["sync-before"] = var.get()
        var.set("sync")

    async def async_sets(event) -> None:
        seen["async-before"] = var.get()
        var.set("async")
        await asyncio.sleep(0)
        seen["async-after"] = var.get()

    def reads(event) -> None:
        seen["third"] = var.get()

    for handler in (sync_sets, async_sets, reads):
        bus.subscribe(OrderPlaced, handler)
    await publish(bus, placed())
    assert seen == {
        "sync-before": "publisher",
        "async-before": "publisher",
        "async-after": "async",
        "third": "publisher",
    }
    assert var.get() == "publisher"


# -- cancelling the publisher from a handler ---------------------------------------------------


async def test_a_handler_cancelling_the_publisher_cancels_the_other_handlers_too() -> None:
    bus, started, cancelled = InMemoryEventBus(), asyncio.Event(), asyncio.Event()
    deliveries: list[Delivery] = []
    bus.on_delivery(deliveries.append)
    publisher: asyncio.Task[None] | None = None

    async def slow(event) -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def cancels(event) -> None:
        await started.wait()
        assert publisher is not None
        publisher.cancel()

    bus.subscribe(OrderPlaced, slow)
    bus.subscribe(OrderPlaced, cancels)
    publisher = asyncio.ensure_future(bus.publish([placed()]))
    done, _ = await asyncio.wait({publisher}, timeout=WAIT)
    assert publisher in done and publisher.cancelled()
    assert cancelled.is_set()
    assert bus.get_stats()["handler_errors"] == 0 and deliveries == []
    gc.collect()
