"""Behaviour every bus must show, written once against a bus factory.

A bus module's test file subclasses :class:`BusConformance` and provides the ``bus`` fixture: a
bus that is connected and delivering (consuming, for broker buses). Delivery may be
asynchronous, so tests wait for what they expect, with timeouts, and use a wildcard
:class:`Recorder` as proof that an event has been dispatched before asserting what did not happen.
"""

from __future__ import annotations

from uuid import uuid4

import pytest

from eventsource_lab import DomainEvent, EventBus
from tests.support.events import OrderCancelled, OrderPlaced, OrderShipped
from tests.support.waiting import Recorder, eventually


def placed(customer: str = "Alice", amount: float = 99.99, **fields: object) -> OrderPlaced:
    return OrderPlaced(aggregate_id=uuid4(), customer_name=customer, total_amount=amount, **fields)


def shipped(tracking: str = "TRACK-1") -> OrderShipped:
    return OrderShipped(aggregate_id=uuid4(), tracking_number=tracking)


class Projection:
    """A tutorial-style projection: declares its types, counts what it saw."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def subscribed_to(self) -> list[type[DomainEvent]]:
        return [OrderPlaced, OrderShipped]

    async def handle(self, event: DomainEvent) -> None:
        self.seen.append(event.event_type)


class BusConformance:
    """Subclass in a ``test_*.py`` module and define an async ``bus`` fixture."""

    async def test_subscribed_handler_receives_the_event(self, bus: EventBus) -> None:
        recorder = Recorder()
        bus.subscribe(OrderPlaced, recorder)
        event = placed()
        await bus.publish([event])
        (received,) = await recorder.wait_for(1)
        assert received.event_id == event.event_id

    async def test_event_arrives_with_every_field_and_its_class(self, bus: EventBus) -> None:
        recorder = Recorder()
        bus.subscribe(OrderPlaced, recorder)
        event = placed(customer="Zoë “quoted” ✓", amount=12.5, aggregate_version=3)
        await bus.publish([event])
        (received,) = await recorder.wait_for(1)
        assert type(received) is OrderPlaced
        assert received == event

    async def test_function_sync_and_class_handlers_are_all_called(self, bus: EventBus) -> None:
        calls: list[str] = []

        async def async_fn(event: DomainEvent) -> None:
            calls.append("async")

        def sync_fn(event: DomainEvent) -> None:
            calls.append("sync")

        class SyncHandle:
            def handle(self, event: DomainEvent) -> None:
                calls.append("sync-handle")

        recorder = Recorder()
        for handler in (async_fn, sync_fn, SyncHandle(), recorder):
            bus.subscribe(OrderPlaced, handler)
        await bus.publish([placed()])
        await recorder.wait_for(1)
        assert sorted(calls) == ["async", "sync", "sync-handle"]

    async def test_one_event_fans_out_to_every_subscriber(self, bus: EventBus) -> None:
        recorders = [Recorder(f"r{i}") for i in range(4)]
        for recorder in recorders:
            bus.subscribe(OrderPlaced, recorder)
        event = placed()
        await bus.publish([event])
        for recorder in recorders:
            assert (await recorder.wait_for(1))[0].event_id == event.event_id

    async def test_handlers_get_only_their_event_type(self, bus: EventBus) -> None:
        placed_only, everything = Recorder("placed"), Recorder("wildcard")
        bus.subscribe(OrderPlaced, placed_only)
        bus.subscribe_to_all_events(everything)
        await bus.publish([shipped(), placed()])
        await everything.wait_for(2)
        await placed_only.wait_for(1)
        assert [e.event_type for e in placed_only.events] == ["OrderPlaced"]

    async def test_wildcard_receives_every_type(self, bus: EventBus) -> None:
        everything = Recorder()
        bus.subscribe_to_all_events(everything)
        cancelled = OrderCancelled(aggregate_id=uuid4(), reason="changed mind")
        await bus.publish([placed(), shipped(), cancelled])
        received = await everything.wait_for(3)
        assert sorted(e.event_type for e in received) == [
            "OrderCancelled",
            "OrderPlaced",
            "OrderShipped",
        ]

    async def test_subscribe_all_routes_each_declared_type(self, bus: EventBus) -> None:
        projection, everything = Projection(), Recorder()
        bus.subscribe_all(projection)
        bus.subscribe_to_all_events(everything)
        cancelled = OrderCancelled(aggregate_id=uuid4(), reason="r")
        await bus.publish([placed(), shipped(), cancelled])
        await everything.wait_for(3)
        await eventually(lambda: len(projection.seen) == 2, what="projection to see 2 events")
        assert sorted(projection.seen) == ["OrderPlaced", "OrderShipped"]

    async def test_failing_handler_does_not_stop_the_others(self, bus: EventBus) -> None:
        async def broken(event: DomainEvent) -> None:
            raise RuntimeError("boom")

        def broken_sync(event: DomainEvent) -> None:
            raise ValueError("bang")

        before, after = Recorder("before"), Recorder("after")
        bus.subscribe(OrderPlaced, before)
        bus.subscribe(OrderPlaced, broken)
        bus.subscribe(OrderPlaced, broken_sync)
        bus.subscribe(OrderPlaced, after)
        await bus.publish([placed()])  # must not raise
        await before.wait_for(1)
        await after.wait_for(1)
        await eventually(lambda: bus.get_stats()["handler_errors"] >= 2, what="2 handler errors")

    async def test_events_of_one_aggregate_arrive_in_order(self, bus: EventBus) -> None:
        recorder = Recorder()
        bus.subscribe_to_all_events(recorder)
        aggregate_id = uuid4()
        events = [
            OrderPlaced(
                aggregate_id=aggregate_id,
                customer_name=f"c{v}",
                total_amount=v,
                aggregate_version=v,
            )
            for v in range(1, 21)
        ]
        await bus.publish(events[:10])
        await bus.publish(events[10:])
        received = await recorder.wait_for(20)
        assert [e.aggregate_version for e in received] == list(range(1, 21))

    async def test_unsubscribed_handler_is_not_called(self, bus: EventBus) -> None:
        gone, witness = Recorder("gone"), Recorder("witness")
        bus.subscribe(OrderPlaced, gone)
        bus.subscribe_to_all_events(witness)
        assert bus.unsubscribe(OrderPlaced, gone) is True
        assert bus.unsubscribe(OrderPlaced, gone) is False
        await bus.publish([placed()])
        await witness.wait_for(1)
        assert gone.events == []

    async def test_unsubscribe_from_all_events(self, bus: EventBus) -> None:
        gone, witness = Recorder("gone"), Recorder("witness")
        bus.subscribe_to_all_events(gone)
        bus.subscribe(OrderPlaced, witness)
        assert bus.unsubscribe_from_all_events(gone) is True
        assert bus.unsubscribe_from_all_events(gone) is False
        await bus.publish([placed()])
        await witness.wait_for(1)
        assert gone.events == []

    async def test_subscriber_counts_exclude_wildcards(self, bus: EventBus) -> None:
        bus.subscribe(OrderPlaced, Recorder())
        bus.subscribe(OrderPlaced, Recorder())
        bus.subscribe(OrderShipped, Recorder())
        bus.subscribe_to_all_events(Recorder())
        assert bus.get_subscriber_count(OrderPlaced) == 2
        assert bus.get_subscriber_count(OrderCancelled) == 0
        assert bus.get_subscriber_count() == 3
        assert bus.get_wildcard_subscriber_count() == 1
        bus.clear_subscribers()
        assert bus.get_subscriber_count() == 0
        assert bus.get_wildcard_subscriber_count() == 0

    async def test_stats_count_events_invocations_and_errors(self, bus: EventBus) -> None:
        def broken(event: DomainEvent) -> None:
            raise RuntimeError("boom")

        recorder = Recorder()
        bus.subscribe(OrderPlaced, recorder)
        bus.subscribe(OrderPlaced, broken)
        bus.subscribe_to_all_events(Recorder())
        await bus.publish([placed(), placed(), shipped()])
        await recorder.wait_for(2)
        await eventually(lambda: bus.get_stats()["handlers_invoked"] == 7, what="7 invocations")
        stats = bus.get_stats()
        assert stats["events_published"] == 3
        assert stats["handler_errors"] == 2
        stats["events_published"] = -1  # a copy: changing it changes nothing
        assert bus.get_stats()["events_published"] == 3

    async def test_background_publish_is_delivered(self, bus: EventBus) -> None:
        recorder = Recorder()
        bus.subscribe(OrderPlaced, recorder)
        events = [placed(customer=f"c{i}") for i in range(5)]
        await bus.publish(events, background=True)
        received = await recorder.wait_for(5)
        assert {e.event_id for e in received} == {e.event_id for e in events}
        await eventually(
            lambda: (
                bus.get_stats()["background_tasks_completed"]
                == bus.get_stats()["background_tasks_created"]
                >= 1
            ),
            what="the background task to complete",
        )

    @pytest.mark.parametrize(
        "bad", [None, "OrderPlaced", {"a": 1}, [object()], [placed(), "x"]], ids=repr
    )
    async def test_publish_rejects_what_is_not_a_list_of_events(
        self, bus: EventBus, bad: object
    ) -> None:
        with pytest.raises(TypeError, match="publish\\(\\) takes a list"):
            await bus.publish(bad)  # type: ignore[arg-type]
        assert bus.get_stats()["events_published"] == 0

    async def test_publish_of_a_single_event_says_how_to_fix_it(self, bus: EventBus) -> None:
        with pytest.raises(TypeError, match=r"wrap it: publish\(\[event\]\)"):
            await bus.publish(placed())  # type: ignore[arg-type]

    @pytest.mark.parametrize("bad", [42, "handler", None])
    async def test_subscribe_rejects_what_is_not_a_handler(
        self, bus: EventBus, bad: object
    ) -> None:
        with pytest.raises(TypeError, match="a handler must be"):
            bus.subscribe(OrderPlaced, bad)
        assert bus.get_subscriber_count(OrderPlaced) == 0
