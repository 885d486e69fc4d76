"""OutboxRelay: what was stored but not published goes out once, in order, from a checkpoint."""

from __future__ import annotations

import asyncio
from uuid import uuid4

import pytest

from eventsource_lab import AggregateRepository, DomainEvent, InMemoryEventBus, InMemoryEventStore
from eventsource_lab.relay import Checkpoint, InMemoryCheckpoint, OutboxRelay
from eventsource_lab.repository import EventPublisher, EventsNotPublishedError
from tests.support.events import OrderAggregate
from tests.support.waiting import DEFAULT_TIMEOUT, Recorder, eventually


class FlakyPublisher:
    """Records what it publishes; while ``down`` it fails, or from its ``fail_on``-th call."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.published: list[DomainEvent] = []
        self.calls = 0
        self.down = False
        self.fail_on = fail_on

    async def publish(self, events) -> None:
        self.calls += 1
        if self.down or self.calls == self.fail_on:
            raise ConnectionError("broker down")
        self.published.extend(events)


def make_repo(store: InMemoryEventStore, publisher, background: bool = False):
    return AggregateRepository(
        event_store=store,
        aggregate_factory=OrderAggregate,
        aggregate_type="Order",
        event_publisher=publisher,
        publish_in_background=background,
    )


async def place_orders(store: InMemoryEventStore, count: int) -> None:
    repo = make_repo(store, None)
    for i in range(count):
        order = repo.create_new(uuid4())
        order.place(f"Customer {i}", float(i))
        await repo.save(order)


async def test_a_failed_publish_during_save_is_caught_up_by_the_relay_once_in_order() -> None:
    store, broker = InMemoryEventStore(), FlakyPublisher()
    relay = OutboxRelay(store, broker)
    repo = make_repo(store, relay)
    assert isinstance(relay, EventPublisher)

    first = repo.create_new(uuid4())
    first.place("Ann", 1.0)
    await repo.save(first)
    broker.down = True
    second = repo.create_new(uuid4())
    second.place("Ben", 2.0)
    second.ship("T-1")
    with pytest.raises(EventsNotPublishedError, match="stored but could not be published"):
        await repo.save(second)
    stored = await store.get_all_events()
    assert len(stored) == 3 and len(broker.published) == 1
    assert second.uncommitted_events == []

    broker.down = False
    assert await relay.run_once() == 2
    assert [e.event_id for e in broker.published] == [e.event_id for e in stored]
    assert await relay.run_once() == 0
    assert len(broker.published) == 3


async def test_a_relay_publishes_what_a_direct_publisher_lost() -> None:
    store = InMemoryEventStore()
    repo = make_repo(store, FlakyPublisher(fail_on=2))
    for name in ("Ann", "Ben", "Cy"):
        order = repo.create_new(uuid4())
        order.place(name, 1.0)
        try:
            await repo.save(order)
        except EventsNotPublishedError:
            assert name == "Ben"
    recorder = FlakyPublisher()
    assert await OutboxRelay(store, recorder).run_once() == 3
    assert recorder.published == await store.get_all_events()


async def test_a_relay_failing_midway_resumes_from_its_checkpoint() -> None:
    store, broker = InMemoryEventStore(), FlakyPublisher(fail_on=2)
    await place_orders(store, 5)
    checkpoint = InMemoryCheckpoint()
    relay = OutboxRelay(store, broker, checkpoint, batch_size=2)
    with pytest.raises(ConnectionError):
        await relay.run_once()
    assert checkpoint.position == 2 and len(broker.published) == 2
    assert await relay.run_once() == 3
    assert checkpoint.position == 5
    assert broker.published == await store.get_all_events()


class HalfwayPublisher:
    """Delivers the first event of a batch, then fails once: a broker lost mid-batch."""

    def __init__(self) -> None:
        self.published: list[DomainEvent] = []
        self.failed = False

    async def publish(self, events) -> None:
        self.published.append(events[0])
        if not self.failed:
            self.failed = True
            raise ConnectionError("lost mid-batch")
        self.published.extend(events[1:])


async def test_a_retried_batch_repeats_events_with_the_same_event_id() -> None:
    """At-least-once: a repeat is recognisable, so handlers can deduplicate on ``event_id``."""
    store, broker = InMemoryEventStore(), HalfwayPublisher()
    await place_orders(store, 2)
    relay = OutboxRelay(store, broker)
    with pytest.raises(ConnectionError):
        await relay.run_once()
    assert await relay.run_once() == 2
    stored = await store.get_all_events()
    assert [e.event_id for e in broker.published] == [stored[0].event_id] + [
        e.event_id for e in stored
    ]


class GatedPublisher:
    """Holds the first publish until the test opens the gate."""

    def __init__(self) -> None:
        self.published: list[DomainEvent] = []
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()

    async def publish(self, events) -> None:
        self.entered.set()
        await self.gate.wait()
        self.published.extend(events)


async def test_concurrent_runs_do_not_publish_twice() -> None:
    store, broker = InMemoryEventStore(), GatedPublisher()
    await place_orders(store, 4)
    relay = OutboxRelay(store, broker)
    runs = [asyncio.ensure_future(relay.run_once()) for _ in range(3)]
    await asyncio.wait_for(broker.entered.wait(), DEFAULT_TIMEOUT)
    broker.gate.set()
    counts = await asyncio.wait_for(asyncio.gather(*runs), DEFAULT_TIMEOUT)
    assert sorted(counts) == [0, 0, 4]
    assert broker.published == await store.get_all_events()


class DictCheckpoint:
    """A stand-in for a durable checkpoint: a row in a table, here a dict entry."""

    def __init__(self, table: dict[str, int]) -> None:
        self.table = table

    async def load(self) -> int:
        return self.table.get("relay", 0)

    async def save(self, position: int) -> None:
        self.table["relay"] = position


async def test_a_checkpoint_kept_elsewhere_survives_a_new_relay() -> None:
    store, table = InMemoryEventStore(), {}
    await place_orders(store, 3)
    assert isinstance(DictCheckpoint(table), Checkpoint)
    assert await OutboxRelay(store, FlakyPublisher(), DictCheckpoint(table)).run_once() == 3
    await place_orders(store, 1)
    restarted = FlakyPublisher()
    assert await OutboxRelay(store, restarted, DictCheckpoint(table)).run_once() == 1
    assert restarted.published == (await store.get_all_events())[3:]


async def test_the_background_loop_publishes_saves_and_retries_failures() -> None:
    store, bus = InMemoryEventStore(), InMemoryEventBus()
    recorder = Recorder()
    bus.subscribe_to_all_events(recorder)
    await place_orders(store, 1)
    relay = OutboxRelay(store, bus)
    repo = make_repo(store, relay, background=True)
    task = relay.start(interval=60)  # long: only a wake-up can explain a prompt publish
    assert relay.start(interval=60) is task and relay.is_running
    try:
        await recorder.wait_for(1)
        order = repo.create_new(uuid4())
        order.place("Dee", 4.0)
        await repo.save(order)  # returns at once; the loop is woken
        events = await recorder.wait_for(2)
        assert events == await store.get_all_events()
    finally:
        await asyncio.wait_for(relay.stop(timeout=1.0), DEFAULT_TIMEOUT)
    assert not relay.is_running and task.done()


async def test_the_background_loop_keeps_going_after_a_failed_round() -> None:
    store, broker = InMemoryEventStore(), FlakyPublisher()
    broker.down = True
    await place_orders(store, 2)
    relay = OutboxRelay(store, broker)
    relay.start(interval=0.01)
    try:
        await eventually(lambda: broker.calls >= 2, what="a retried round")
        broker.down = False
        await eventually(lambda: len(broker.published) == 2, what="the retry to succeed")
    finally:
        await asyncio.wait_for(relay.stop(timeout=1.0), DEFAULT_TIMEOUT)
    assert broker.published == await store.get_all_events()


async def test_a_store_without_global_order_is_refused() -> None:
    class StreamsOnly:
        async def append_events(self, *args) -> int:
            return 0

        async def get_events(self, aggregate_id, from_version: int = 0) -> list:
            return []

    with pytest.raises(TypeError, match="read_all"):
        OutboxRelay(StreamsOnly(), FlakyPublisher())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch_size"):
        OutboxRelay(InMemoryEventStore(), FlakyPublisher(), batch_size=0)
