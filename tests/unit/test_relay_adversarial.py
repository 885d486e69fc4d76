"""OutboxRelay under attack: re-entrant saves from handlers, racing saves and runs, two relays
over one checkpoint, lifecycle races, publishers that hang, cancel or raise BaseException."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from uuid import uuid4

import pytest

from eventsource_lab import AggregateRepository, DomainEvent, InMemoryEventBus, InMemoryEventStore
from eventsource_lab.relay import InMemoryCheckpoint, OutboxRelay
from eventsource_lab.repository import EventsNotPublishedError
from tests.support.events import OrderAggregate, OrderPlaced, OrderShipped
from tests.support.waiting import eventually

WAIT = 5.0


def make_repo(store: InMemoryEventStore, publisher: object) -> AggregateRepository:
    return AggregateRepository(
        event_store=store,
        aggregate_factory=OrderAggregate,
        aggregate_type="Order",
        event_publisher=publisher,
    )


async def place(repo: AggregateRepository, name: str = "Ann") -> OrderAggregate:
    order = repo.create_new(uuid4())
    order.place(name, 1.0)
    await repo.save(order)
    return order


class GatedPublisher:
    """Records batches; each publish waits for ``gate`` (when set up) and says it started."""

    def __init__(self) -> None:
        self.published: list[DomainEvent] = []
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()

    async def publish(self, events: Sequence[DomainEvent]) -> None:
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        self.published.extend(events)


# -- re-entrancy: a handler that saves through the same relay ------------------------------------


async def test_a_handler_saving_through_the_relay_it_is_called_from_does_not_deadlock() -> None:
    store, bus = InMemoryEventStore(), InMemoryEventBus()
    relay = OutboxRelay(store, bus)
    repo = make_repo(store, relay)
    seen: list[str] = []

    async def ship_on_place(event: DomainEvent) -> None:
        order = await repo.load(event.aggregate_id)
        order.ship("T-1")
        await repo.save(order)  # a process manager: reacts by saving, through the relay

    bus.subscribe(OrderPlaced, ship_on_place)
    bus.subscribe_to_all_events(lambda e: seen.append(e.event_type))
    await asyncio.wait_for(place(repo), WAIT)
    assert seen == ["OrderPlaced", "OrderShipped"]
    assert await relay.run_once() == 0
    assert bus.get_stats()["handler_errors"] == 0


async def test_a_sync_handler_saving_in_the_background_through_the_relay_is_published() -> None:
    store, bus = InMemoryEventStore(), InMemoryEventBus()
    relay = OutboxRelay(store, bus)
    repo = make_repo(store, relay)
    shipped = asyncio.Event()
    saves: set[asyncio.Task[None]] = set()

    async def ship(aggregate_id) -> None:
        order = await repo.load(aggregate_id)
        order.ship("T-2")
        await repo.save(order)

    def on_place(event: DomainEvent) -> None:
        task = asyncio.get_running_loop().create_task(ship(event.aggregate_id))
        saves.add(task)

    bus.subscribe(OrderPlaced, on_place)
    bus.subscribe(OrderShipped, lambda e: shipped.set())
    await asyncio.wait_for(place(repo), WAIT)
    await asyncio.wait_for(asyncio.gather(*saves), WAIT)
    await asyncio.wait_for(shipped.wait(), WAIT)
    assert await relay.run_once() == 0


# -- saves racing a run ------------------------------------------------------------------------


async def test_saves_while_a_run_is_in_flight_are_all_published_once_in_store_order() -> None:
    store, broker = InMemoryEventStore(), GatedPublisher()
    relay = OutboxRelay(store, broker, batch_size=1)
    repo = make_repo(store, relay)
    broker.gate = asyncio.Event()
    first = asyncio.ensure_future(place(repo, "first"))
    await asyncio.wait_for(broker.entered.wait(), WAIT)
    others = [asyncio.ensure_future(place(repo, f"o{i}")) for i in range(5)]
    await asyncio.sleep(0)
    broker.gate.set()
    await asyncio.wait_for(asyncio.gather(first, *others), WAIT)
    stored = await store.get_all_events()
    assert [e.event_id for e in broker.published] == [e.event_id for e in stored]
    assert await relay.checkpoint.load() == len(stored) == 6


async def test_a_failing_save_names_only_its_own_events_and_the_relay_keeps_its_place() -> None:
    store = InMemoryEventStore()

    class DownPublisher:
        async def publish(self, events: Sequence[DomainEvent]) -> None:
            raise ConnectionError("down")

    checkpoint = InMemoryCheckpoint()
    relay = OutboxRelay(store, DownPublisher(), checkpoint)
    repo = make_repo(store, relay)
    with pytest.raises(EventsNotPublishedError) as first:
        await place(repo, "a")
    with pytest.raises(EventsNotPublishedError) as second:
        await place(repo, "b")
    assert [e.customer_name for e in second.value.events] == ["b"]
    assert isinstance(first.value.__cause__, ConnectionError)
    assert checkpoint.position == 0


# -- two relays over one store and one checkpoint ----------------------------------------------


async def test_two_relays_sharing_a_checkpoint_end_at_the_end_of_the_store() -> None:
    store = InMemoryEventStore()
    await _place_many(store, 3)
    checkpoint = InMemoryCheckpoint()
    slow, fast = GatedPublisher(), GatedPublisher()
    slow.gate = asyncio.Event()
    slow_relay = OutboxRelay(store, slow, checkpoint, batch_size=1)
    fast_relay = OutboxRelay(store, fast, checkpoint, batch_size=1)
    run = asyncio.ensure_future(slow_relay.run_once())
    await asyncio.wait_for(slow.entered.wait(), WAIT)
    assert await fast_relay.run_once() == 3
    assert checkpoint.position == 3
    slow.gate.set()
    await asyncio.wait_for(run, WAIT)
    # at-least-once: the slow relay repeats what the fast one sent, and ends where it ended
    assert checkpoint.position == 3


async def _place_many(store: InMemoryEventStore, count: int) -> None:
    repo = make_repo(store, None)
    for i in range(count):
        await place(repo, f"c{i}")


# -- read_all edges ----------------------------------------------------------------------------


async def test_read_all_pages_past_the_end_and_at_the_edges() -> None:
    store = InMemoryEventStore()
    await _place_many(store, 3)
    assert [s.position for s in await store.read_all(0, limit=2)] == [1, 2]
    assert [s.position for s in await store.read_all(2, limit=10)] == [3]
    assert await store.read_all(3) == []
    assert await store.read_all(10, limit=1) == []
    with pytest.raises(ValueError):
        await store.read_all(-1)
    with pytest.raises(ValueError):
        await store.read_all(0, limit=0)


async def test_a_checkpoint_ahead_of_the_store_publishes_nothing_and_stays() -> None:
    store, broker = InMemoryEventStore(), GatedPublisher()
    await _place_many(store, 2)
    checkpoint = InMemoryCheckpoint(5)
    assert await OutboxRelay(store, broker, checkpoint).run_once() == 0
    assert checkpoint.position == 5 and broker.published == []


# -- lifecycle ---------------------------------------------------------------------------------


async def test_stop_before_start_and_stop_twice_do_nothing_start_twice_is_one_loop() -> None:
    relay = OutboxRelay(InMemoryEventStore(), GatedPublisher())
    await asyncio.wait_for(relay.stop(), WAIT)
    task = relay.start(interval=60)
    assert relay.start(interval=60) is task
    await asyncio.wait_for(relay.stop(), WAIT)
    await asyncio.wait_for(relay.stop(), WAIT)
    assert task.done() and not relay.is_running


async def test_a_start_while_stop_waits_does_not_keep_the_old_loop_running() -> None:
    store, broker = InMemoryEventStore(), GatedPublisher()
    await _place_many(store, 1)
    broker.gate = asyncio.Event()
    relay = OutboxRelay(store, broker)
    old = relay.start(interval=60)
    await asyncio.wait_for(broker.entered.wait(), WAIT)
    stopping = asyncio.ensure_future(relay.stop(timeout=30))
    await eventually(lambda: not relay.is_running, timeout=WAIT)
    new = relay.start(interval=60)
    broker.gate.set()  # the old loop's batch completes: it must now end, as it was told
    await asyncio.wait_for(asyncio.shield(old), WAIT)
    await asyncio.wait_for(stopping, WAIT)
    assert new is not old and relay.is_running
    await asyncio.wait_for(relay.stop(), WAIT)


async def test_stop_returns_even_when_a_publish_ignores_its_cancel() -> None:
    release, entered = asyncio.Event(), asyncio.Event()

    class Stubborn:
        async def publish(self, events: Sequence[DomainEvent]) -> None:
            entered.set()
            while not release.is_set():
                try:
                    await release.wait()
                except asyncio.CancelledError:
                    continue  # a driver that swallows cancellation

    store = InMemoryEventStore()
    await _place_many(store, 1)
    relay = OutboxRelay(store, Stubborn())
    task = relay.start(interval=60)
    await asyncio.wait_for(entered.wait(), WAIT)
    try:
        await asyncio.wait_for(relay.stop(timeout=0.1), WAIT)
        assert not relay.is_running
    finally:
        release.set()
        await asyncio.wait_for(task, WAIT)


@pytest.mark.skipif(
    sys.version_info < (3, 11), reason="3.10 cannot tell a raised from a real cancel"
)
async def test_a_publisher_raising_cancelled_error_does_not_kill_the_background_loop() -> None:
    store = InMemoryEventStore()
    await _place_many(store, 1)
    calls = 0
    done = asyncio.Event()

    class Cancelling:
        async def publish(self, events: Sequence[DomainEvent]) -> None:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise asyncio.CancelledError("a driver's internal cancel")
            done.set()

    relay = OutboxRelay(store, Cancelling())
    relay.start(interval=0.01)
    await asyncio.wait_for(done.wait(), WAIT)
    assert relay.is_running and await relay.checkpoint.load() == 1
    await asyncio.wait_for(relay.stop(), WAIT)


async def test_a_publisher_raising_a_base_exception_reaches_the_saver_and_keeps_the_place() -> None:
    class Fatal(BaseException):
        pass

    class Raising:
        async def publish(self, events: Sequence[DomainEvent]) -> None:
            raise Fatal("out of here")

    store, checkpoint = InMemoryEventStore(), InMemoryCheckpoint()
    relay = OutboxRelay(store, Raising(), checkpoint)
    repo = make_repo(store, relay)
    with pytest.raises(Fatal):
        await place(repo)
    assert checkpoint.position == 0
    assert len(await store.get_all_events()) == 1
    assert not relay._lock.locked()
