"""What every bus must do, as plain async checks: the test suite and the matrix run the same ones.

Each behaviour takes a bus that is connected and delivering (consuming, for a broker bus) and
raises ``AssertionError`` saying how the bus differs. Delivery may be asynchronous, so checks
wait for what they expect, and use a wildcard :class:`Recorder` as proof that an event was
dispatched before asserting that something did not happen.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from uuid import uuid4

from .bus import EventBus
from .events import DomainEvent, register_event
from .testing import Recorder, eventually

__all__ = ["BEHAVIOURS", "Behaviour", "ProbeCancelled", "ProbePlaced", "ProbeShipped"]


@register_event
class ProbePlaced(DomainEvent):
    """The conformance checks' own events, named apart from any a learner defines."""

    event_type: str = "Probe.OrderPlaced"
    aggregate_type: str = "ProbeOrder"
    customer_name: str
    total_amount: float


@register_event
class ProbeShipped(DomainEvent):
    event_type: str = "Probe.OrderShipped"
    aggregate_type: str = "ProbeOrder"
    tracking_number: str


@register_event
class ProbeCancelled(DomainEvent):
    event_type: str = "Probe.OrderCancelled"
    aggregate_type: str = "ProbeOrder"
    reason: str


@dataclass(frozen=True)
class Behaviour:
    """One claim about a bus, and the check that proves it."""

    name: str
    claim: str
    check: Callable[[EventBus], Awaitable[None]]


BEHAVIOURS: list[Behaviour] = []


def _behaviour(claim: str) -> Callable[[Callable[[EventBus], Awaitable[None]]], Behaviour]:
    def register(check: Callable[[EventBus], Awaitable[None]]) -> Behaviour:
        behaviour = Behaviour(check.__name__, claim, check)
        BEHAVIOURS.append(behaviour)
        return behaviour

    return register


def placed(customer: str = "Alice", amount: float = 99.99, **fields: object) -> ProbePlaced:
    return ProbePlaced(aggregate_id=uuid4(), customer_name=customer, total_amount=amount, **fields)


def shipped(tracking: str = "TRACK-1") -> ProbeShipped:
    return ProbeShipped(aggregate_id=uuid4(), tracking_number=tracking)


def cancelled(reason: str = "changed mind") -> ProbeCancelled:
    return ProbeCancelled(aggregate_id=uuid4(), reason=reason)


class _Projection:
    """A tutorial-style projection: declares its types, notes what it saw."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def subscribed_to(self) -> list[type[DomainEvent]]:
        return [ProbePlaced, ProbeShipped]

    async def handle(self, event: DomainEvent) -> None:
        self.seen.append(event.event_type)


@_behaviour("a subscribed handler receives the published event")
async def delivers_to_subscriber(bus: EventBus) -> None:
    recorder = Recorder()
    bus.subscribe(ProbePlaced, recorder)
    event = placed()
    await bus.publish([event])
    (received,) = await recorder.wait_for(1)
    assert received.event_id == event.event_id, "a different event arrived"


@_behaviour("the event arrives as its own class with every field equal")
async def round_trips_every_field(bus: EventBus) -> None:
    recorder = Recorder()
    bus.subscribe(ProbePlaced, recorder)
    event = placed(customer="Zoë “quoted” ✓", amount=12.5, aggregate_version=3)
    await bus.publish([event])
    (received,) = await recorder.wait_for(1)
    assert type(received) is ProbePlaced, f"arrived as {type(received).__name__}"
    assert received == event, f"fields changed on the way: {received!r}"


@_behaviour("sync and async functions and handle() objects are all called")
async def calls_every_handler_kind(bus: EventBus) -> None:
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
        bus.subscribe(ProbePlaced, handler)
    await bus.publish([placed()])
    await recorder.wait_for(1)
    assert sorted(calls) == ["async", "sync", "sync-handle"], f"called: {calls}"


@_behaviour("one event reaches every subscriber of its type (fan-out)")
async def fans_out(bus: EventBus) -> None:
    recorders = [Recorder(f"r{i}") for i in range(4)]
    for recorder in recorders:
        bus.subscribe(ProbePlaced, recorder)
    event = placed()
    await bus.publish([event])
    for recorder in recorders:
        assert (await recorder.wait_for(1))[0].event_id == event.event_id


@_behaviour("handlers get only the event types they subscribed to")
async def routes_by_type(bus: EventBus) -> None:
    placed_only, everything = Recorder("placed"), Recorder("wildcard")
    bus.subscribe(ProbePlaced, placed_only)
    bus.subscribe_to_all_events(everything)
    await bus.publish([shipped(), placed()])
    await everything.wait_for(2)
    await placed_only.wait_for(1)
    types = [e.event_type for e in placed_only.events]
    assert types == ["Probe.OrderPlaced"], f"typed handler got {types}"


@_behaviour("a wildcard handler receives every event type")
async def wildcard_gets_all(bus: EventBus) -> None:
    everything = Recorder()
    bus.subscribe_to_all_events(everything)
    await bus.publish([placed(), shipped(), cancelled()])
    received = sorted(e.event_type for e in await everything.wait_for(3))
    assert received == ["Probe.OrderCancelled", "Probe.OrderPlaced", "Probe.OrderShipped"]


@_behaviour("subscribe_all routes each type a projection declares, and no other")
async def subscribe_all_routes_declared(bus: EventBus) -> None:
    projection, everything = _Projection(), Recorder()
    bus.subscribe_all(projection)
    bus.subscribe_to_all_events(everything)
    await bus.publish([placed(), shipped(), cancelled()])
    await everything.wait_for(3)
    await eventually(lambda: len(projection.seen) >= 2, what="the projection to see 2 events")
    assert sorted(projection.seen) == ["Probe.OrderPlaced", "Probe.OrderShipped"]


@_behaviour("a failing handler neither stops the others nor reaches the publisher")
async def isolates_failures(bus: EventBus) -> None:
    async def broken(event: DomainEvent) -> None:
        raise RuntimeError("boom")

    def broken_sync(event: DomainEvent) -> None:
        raise ValueError("bang")

    before, after = Recorder("before"), Recorder("after")
    for handler in (before, broken, broken_sync, after):
        bus.subscribe(ProbePlaced, handler)
    await bus.publish([placed()])  # must not raise
    await before.wait_for(1)
    await after.wait_for(1)
    await eventually(lambda: bus.get_stats()["handler_errors"] >= 2, what="2 handler errors")


@_behaviour("one aggregate's events arrive in the order they were published")
async def keeps_aggregate_order(bus: EventBus) -> None:
    recorder = Recorder()
    bus.subscribe_to_all_events(recorder)
    aggregate_id = uuid4()
    events = [
        ProbePlaced(
            aggregate_id=aggregate_id, customer_name=f"c{v}", total_amount=v, aggregate_version=v
        )
        for v in range(1, 21)
    ]
    await bus.publish(events[:10])
    await bus.publish(events[10:])
    versions = [e.aggregate_version for e in await recorder.wait_for(20)]
    assert versions == list(range(1, 21)), f"arrived as {versions}"


@_behaviour("an unsubscribed handler is not called; unsubscribe says whether it was there")
async def unsubscribe_stops_delivery(bus: EventBus) -> None:
    gone, witness = Recorder("gone"), Recorder("witness")
    bus.subscribe(ProbePlaced, gone)
    bus.subscribe_to_all_events(witness)
    assert bus.unsubscribe(ProbePlaced, gone) is True
    assert bus.unsubscribe(ProbePlaced, gone) is False
    await bus.publish([placed()])
    await witness.wait_for(1)
    assert gone.events == [], "the unsubscribed handler was called"


@_behaviour("a removed wildcard handler is not called")
async def unsubscribe_wildcard(bus: EventBus) -> None:
    gone, witness = Recorder("gone"), Recorder("witness")
    bus.subscribe_to_all_events(gone)
    bus.subscribe(ProbePlaced, witness)
    assert bus.unsubscribe_from_all_events(gone) is True
    assert bus.unsubscribe_from_all_events(gone) is False
    await bus.publish([placed()])
    await witness.wait_for(1)
    assert gone.events == [], "the removed wildcard handler was called"


@_behaviour("subscriber counts exclude wildcards; clear_subscribers empties both")
async def counts_subscribers(bus: EventBus) -> None:
    bus.subscribe(ProbePlaced, Recorder())
    bus.subscribe(ProbePlaced, Recorder())
    bus.subscribe(ProbeShipped, Recorder())
    bus.subscribe_to_all_events(Recorder())
    counts = (
        bus.get_subscriber_count(ProbePlaced),
        bus.get_subscriber_count(ProbeCancelled),
        bus.get_subscriber_count(),
        bus.get_wildcard_subscriber_count(),
    )
    assert counts == (2, 0, 3, 1), f"counts were {counts}"
    bus.clear_subscribers()
    assert (bus.get_subscriber_count(), bus.get_wildcard_subscriber_count()) == (0, 0)


@_behaviour("stats count events, handler calls and handler errors; get_stats is a copy")
async def counts_stats(bus: EventBus) -> None:
    def broken(event: DomainEvent) -> None:
        raise RuntimeError("boom")

    recorder = Recorder()
    bus.subscribe(ProbePlaced, recorder)
    bus.subscribe(ProbePlaced, broken)
    bus.subscribe_to_all_events(Recorder())
    await bus.publish([placed(), placed(), shipped()])
    await recorder.wait_for(2)
    await eventually(lambda: bus.get_stats()["handlers_invoked"] >= 7, what="7 handler calls")
    stats = bus.get_stats()
    seen = (stats["events_published"], stats["handlers_invoked"], stats["handler_errors"])
    assert seen == (3, 7, 2), f"published, invoked, errors = {seen}"
    stats["events_published"] = -1
    assert bus.get_stats()["events_published"] == 3, "get_stats() returned the live dict"


@_behaviour("publish(background=True) delivers every event and tracks its task")
async def publishes_in_background(bus: EventBus) -> None:
    recorder = Recorder()
    bus.subscribe(ProbePlaced, recorder)
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


@_behaviour("publishing what is not a list of events is a TypeError saying what was given")
async def rejects_bad_publish(bus: EventBus) -> None:
    for bad in (None, "Probe.OrderPlaced", {"a": 1}, [object()], [placed(), "x"]):
        try:
            await bus.publish(bad)  # type: ignore[arg-type]
        except TypeError as exc:
            assert "publish() takes a list" in str(exc), f"unclear error: {exc}"
        else:
            raise AssertionError(f"publish({bad!r:.40}) was accepted")
    try:
        await bus.publish(placed())  # type: ignore[arg-type]
    except TypeError as exc:
        assert "wrap it: publish([event])" in str(exc), f"no hint for a single event: {exc}"
    else:
        raise AssertionError("publishing a bare event was accepted")
    assert bus.get_stats()["events_published"] == 0, "a rejected publish was counted"


@_behaviour("subscribing what is not a handler is a TypeError, and nothing is subscribed")
async def rejects_bad_handler(bus: EventBus) -> None:
    for bad in (42, "handler", None):
        try:
            bus.subscribe(ProbePlaced, bad)
        except TypeError as exc:
            assert "a handler must be" in str(exc), f"unclear error: {exc}"
        else:
            raise AssertionError(f"subscribe(..., {bad!r}) was accepted")
    assert bus.get_subscriber_count(ProbePlaced) == 0
