"""The shared machinery: handler adaptation, the subscription table, dispatch semantics."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from dataclasses import dataclass
from uuid import uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventsource_lab import DomainEvent, InMemoryEventBus
from eventsource_lab.bus.handlers import SubscriptionTable, as_subscriber
from tests.support.events import OrderPlaced, OrderShipped
from tests.support.waiting import Recorder


def placed() -> OrderPlaced:
    return OrderPlaced(aggregate_id=uuid4(), customer_name="A", total_amount=1.0)


# -- handler adaptation ------------------------------------------------------------------------


def test_functions_and_handle_objects_are_adapted() -> None:
    def fn(event): ...

    recorder = Recorder()
    assert as_subscriber(fn).call is fn
    assert as_subscriber(recorder).call == recorder.handle
    assert as_subscriber(recorder).name == "Recorder"


def test_a_class_instead_of_an_instance_is_refused_with_a_hint() -> None:
    with pytest.raises(TypeError, match=r"subscribe an instance of it: Recorder\(\)"):
        as_subscriber(Recorder)


def test_subscribing_the_base_event_class_points_to_wildcards() -> None:
    with pytest.raises(TypeError, match="subscribe_to_all_events"):
        InMemoryEventBus().subscribe(DomainEvent, Recorder())


def test_subscribing_a_non_event_type_is_refused() -> None:
    with pytest.raises(TypeError, match="DomainEvent subclass"):
        InMemoryEventBus().subscribe(str, Recorder())  # type: ignore[arg-type]


def test_subscribe_all_needs_subscribed_to() -> None:
    with pytest.raises(TypeError, match="subscribed_to"):
        InMemoryEventBus().subscribe_all(Recorder())


def test_subscribing_twice_delivers_once() -> None:
    bus, recorder = InMemoryEventBus(), Recorder()
    bus.subscribe(OrderPlaced, recorder)
    bus.subscribe(OrderPlaced, recorder)
    assert bus.get_subscriber_count(OrderPlaced) == 1


def test_get_subscriptions_names_handlers_by_type() -> None:
    bus = InMemoryEventBus()

    def audit(event): ...

    bus.subscribe(OrderPlaced, Recorder())
    bus.subscribe_to_all_events(audit)
    table = bus.get_subscriptions()
    assert table["OrderPlaced"] == ["Recorder"]
    assert table["*"] == ["test_get_subscriptions_names_handlers_by_type.<locals>.audit"]


# -- subscription table ------------------------------------------------------------------------

operations = st.lists(
    st.tuples(
        st.sampled_from(["add", "remove"]),
        st.sampled_from(["A", "B", None]),
        st.integers(min_value=0, max_value=3),
    ),
    max_size=40,
)


@given(operations)
def test_subscription_table_matches_a_set_model(ops) -> None:
    table = SubscriptionTable()
    handlers = [Recorder(f"h{i}") for i in range(4)]
    model: dict[str | None, set[int]] = {"A": set(), "B": set(), None: set()}
    for op, key, index in ops:
        if op == "add":
            table.add(key, as_subscriber(handlers[index]))
            model[key].add(index)
        else:
            assert table.remove(key, handlers[index]) == (index in model[key])
            model[key].discard(index)
    for key in ("A", "B"):
        routed = table.route(key)
        expected = model[key] | model[None]
        assert len(routed) == len(model[key]) + len(model[None])
        assert {handlers.index(s.target) for s in routed} == expected


@dataclass
class Projection:
    """A projection whose equality is its state, as a dataclass's is."""

    count: int = 0

    def handle(self, event: DomainEvent) -> None:
        self.count += 1


async def test_equal_projections_are_separate_subscribers() -> None:
    bus, first, second = InMemoryEventBus(), Projection(), Projection()
    assert first == second
    bus.subscribe(OrderPlaced, first)
    bus.subscribe(OrderPlaced, second)
    await bus.publish([placed()])
    assert (first.count, second.count) == (1, 1)


async def test_unsubscribing_one_of_two_equal_projections_keeps_the_other() -> None:
    bus, first, second = InMemoryEventBus(), Projection(), Projection()
    bus.subscribe(OrderPlaced, first)
    bus.subscribe_to_all_events(first)
    bus.subscribe(OrderPlaced, second)
    bus.subscribe_to_all_events(second)
    assert bus.unsubscribe(OrderPlaced, first)
    assert bus.unsubscribe_from_all_events(first)
    assert not bus.unsubscribe(OrderPlaced, first)
    await bus.publish([placed()])
    assert (first.count, second.count) == (0, 2)


async def test_a_bound_method_subscribed_twice_is_one_subscription() -> None:
    bus, projection, seen = InMemoryEventBus(), Projection(), []
    assert projection.handle is not projection.handle
    bus.subscribe(OrderPlaced, projection.handle)
    bus.subscribe(OrderPlaced, projection.handle)
    bus.subscribe(OrderPlaced, Projection().handle)  # an equal object's method: another one
    bus.subscribe(OrderPlaced, seen.append)
    bus.subscribe(OrderPlaced, seen.append)
    assert bus.get_subscriber_count(OrderPlaced) == 3
    await bus.publish([placed()])
    assert (projection.count, len(seen)) == (1, 1)
    assert bus.unsubscribe(OrderPlaced, projection.handle)
    assert bus.unsubscribe(OrderPlaced, seen.append)
    assert bus.get_subscriber_count(OrderPlaced) == 1


def test_subscriptions_change_safely_from_many_threads() -> None:
    bus = InMemoryEventBus()
    handlers = [[Recorder() for _ in range(200)] for _ in range(8)]

    def work(batch: list[Recorder]) -> None:
        for h in batch:
            bus.subscribe(OrderPlaced, h)
            bus.subscribe_to_all_events(h)
        for h in batch[::2]:
            assert bus.unsubscribe(OrderPlaced, h)

    threads = [threading.Thread(target=work, args=(batch,)) for batch in handlers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert bus.get_subscriber_count(OrderPlaced) == 8 * 100
    assert bus.get_wildcard_subscriber_count() == 8 * 200


# -- dispatch ----------------------------------------------------------------------------------


async def test_handlers_of_one_event_run_concurrently() -> None:
    """Each handler waits for the other: only concurrent execution can finish."""
    bus = InMemoryEventBus()
    a_ready, b_ready = asyncio.Event(), asyncio.Event()

    async def a(event):
        a_ready.set()
        await b_ready.wait()

    async def b(event):
        b_ready.set()
        await a_ready.wait()

    bus.subscribe(OrderPlaced, a)
    bus.subscribe(OrderPlaced, b)
    await asyncio.wait_for(bus.publish([placed()]), timeout=5)
    assert bus.get_stats()["handler_errors"] == 0


async def test_events_of_one_publish_are_handled_one_after_another() -> None:
    bus, log = InMemoryEventBus(), []

    async def slow(event):
        log.append(("start", event.event_type))
        for _ in range(3):
            await asyncio.sleep(0)
        log.append(("end", event.event_type))

    bus.subscribe(OrderPlaced, slow)
    bus.subscribe(OrderShipped, slow)
    await bus.publish([placed(), OrderShipped(aggregate_id=uuid4(), tracking_number="T")])
    assert log == [
        ("start", "OrderPlaced"),
        ("end", "OrderPlaced"),
        ("start", "OrderShipped"),
        ("end", "OrderShipped"),
    ]


async def test_publish_waits_for_handlers_that_suspend() -> None:
    bus, done = InMemoryEventBus(), []

    async def slow(event):
        await asyncio.sleep(0.01)
        done.append(event.event_id)

    bus.subscribe(OrderPlaced, slow)
    event = placed()
    await bus.publish([event])
    assert done == [event.event_id]


@pytest.mark.parametrize("where", ["before-await", "after-await"])
async def test_errors_are_isolated_wherever_the_handler_raises(where: str) -> None:
    bus, recorder = InMemoryEventBus(), Recorder()

    async def broken(event):
        if where == "after-await":
            await asyncio.sleep(0)
        raise RuntimeError("boom")

    bus.subscribe(OrderPlaced, broken)
    bus.subscribe(OrderPlaced, recorder)
    await bus.publish([placed()])
    assert len(recorder.events) == 1
    assert bus.get_stats()["handler_errors"] == 1


async def test_failures_are_reported_to_broker_buses(caplog: pytest.LogCaptureFixture) -> None:
    bus = InMemoryEventBus()

    def broken(event):
        raise KeyError("missing")

    bus.subscribe(OrderPlaced, broken)
    event = placed()
    failures = await bus._dispatch(event)
    assert [(f.handler, type(f.error)) for f in failures] == [
        ("test_failures_are_reported_to_broker_buses.<locals>.broken", KeyError)
    ]
    assert f"failed on OrderPlaced {event.event_id}" in caplog.text


async def test_a_handlers_context_changes_do_not_leak_to_the_publisher() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="publisher")
    bus = InMemoryEventBus()

    def sets(event):
        var.set("handler")

    async def sets_after_await(event):
        await asyncio.sleep(0)
        var.set("handler")

    bus.subscribe(OrderPlaced, sets)
    bus.subscribe(OrderPlaced, sets_after_await)
    await bus.publish([placed()])
    assert var.get() == "publisher"


async def test_awaitables_other_than_coroutines_are_awaited() -> None:
    bus = InMemoryEventBus()
    loop = asyncio.get_running_loop()
    futures: list[asyncio.Future] = []

    def returns_future(event):
        future = loop.create_future()
        loop.call_soon(future.set_result, None)
        futures.append(future)
        return future

    bus.subscribe(OrderPlaced, returns_future)
    await bus.publish([placed()])
    assert futures[0].done()


async def test_cancelling_a_publish_cancels_its_waiting_handlers() -> None:
    bus, cancelled = InMemoryEventBus(), asyncio.Event()
    started = asyncio.Event()

    async def hangs(event):
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    bus.subscribe(OrderPlaced, hangs)
    publishing = asyncio.create_task(bus.publish([placed()]))
    await asyncio.wait_for(started.wait(), timeout=5)
    publishing.cancel()
    await asyncio.wait_for(cancelled.wait(), timeout=5)
    with pytest.raises(asyncio.CancelledError):
        await publishing


# -- watching deliveries -----------------------------------------------------------------------


async def test_delivery_listeners_see_each_dispatch_and_can_be_removed() -> None:
    bus, seen = InMemoryEventBus(), []

    def broken(event):
        raise RuntimeError("boom")

    bus.subscribe(OrderPlaced, Recorder())
    bus.subscribe(OrderPlaced, broken)
    remove = bus.on_delivery(seen.append)
    bus.on_delivery(lambda d: 1 / 0)  # a failing listener is logged, not raised
    event = placed()
    await bus.publish([event])
    ((delivery),) = seen
    assert delivery.event is event
    assert delivery.handlers == (
        "Recorder",
        "test_delivery_listeners_see_each_dispatch_and_can_be_removed.<locals>.broken",
    )
    assert delivery.failed == (delivery.handlers[1],)
    remove()
    await bus.publish([placed()])
    assert len(seen) == 1
