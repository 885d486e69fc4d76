"""AggregateRepository: persist first, then mark committed, then publish."""

from __future__ import annotations

from uuid import uuid4

import pytest

from eventsource_lab import AggregateRepository, DomainEvent, InMemoryEventBus, InMemoryEventStore
from eventsource_lab.errors import AggregateNotFoundError, OptimisticConcurrencyError
from eventsource_lab.repository import EventPublisher, EventsNotPublishedError
from tests.support.events import OrderAggregate


class SpyPublisher:
    """Records what it is given and what the store held at that moment."""

    def __init__(self, store: InMemoryEventStore) -> None:
        self.store = store
        self.calls: list[tuple[list[DomainEvent], bool, int]] = []

    async def publish(self, events, background: bool = False) -> None:
        stored = len(await self.store.get_all_events())
        self.calls.append((list(events), background, stored))


def make_repo(publisher=None, background=False):
    store = InMemoryEventStore()
    if publisher is None:
        publisher = SpyPublisher(store)
    repo = AggregateRepository(
        event_store=store,
        aggregate_factory=OrderAggregate,
        aggregate_type="Order",
        event_publisher=publisher,
        publish_in_background=background,
    )
    return repo, store, publisher


async def test_save_persists_then_publishes_what_was_stored() -> None:
    repo, _, spy = make_repo()
    assert isinstance(spy, EventPublisher)
    order = repo.create_new(uuid4())
    order.place("Alice", 10.0)
    await repo.save(order)
    ((published, background, stored_at_publish),) = spy.calls
    assert [e.event_type for e in published] == ["OrderPlaced"]
    assert background is False
    assert stored_at_publish == 1  # the store had the event before anyone heard of it
    assert order.uncommitted_events == []


async def test_load_rebuilds_the_saved_aggregate() -> None:
    repo, _, _ = make_repo()
    order = repo.create_new(uuid4())
    order.place("Bob", 20.0)
    order.ship("T-9")
    await repo.save(order)
    loaded = await repo.load(order.aggregate_id)
    assert (loaded.version, loaded.state.status) == (2, "shipped")
    assert await repo.exists(order.aggregate_id)


async def test_loading_an_unknown_id_is_a_clear_error() -> None:
    repo, _, _ = make_repo()
    missing = uuid4()
    with pytest.raises(AggregateNotFoundError, match=f"no Order with id {missing}"):
        await repo.load(missing)
    assert not await repo.exists(missing)


async def test_a_concurrent_save_stores_and_publishes_nothing() -> None:
    repo, store, spy = make_repo()
    order = repo.create_new(uuid4())
    order.place("Carol", 30.0)
    await repo.save(order)
    first, second = await repo.load(order.aggregate_id), await repo.load(order.aggregate_id)
    first.ship("T-1")
    second.ship("T-2")
    await repo.save(first)
    with pytest.raises(OptimisticConcurrencyError):
        await repo.save(second)
    assert len(spy.calls) == 2  # the place and the first ship, not the losing ship
    assert len(await store.get_all_events()) == 2
    assert len(second.uncommitted_events) == 1  # kept, so the caller can reload and retry


async def test_save_without_new_events_does_nothing() -> None:
    repo, store, spy = make_repo()
    await repo.save(repo.create_new(uuid4()))
    assert spy.calls == [] and await store.get_all_events() == []


async def test_publish_in_background_is_passed_to_the_publisher() -> None:
    repo, _, spy = make_repo(background=True)
    order = repo.create_new(uuid4())
    order.place("Dan", 1.0)
    await repo.save(order)
    assert spy.calls[0][1] is True


class PlainPublisher:
    """The documented protocol and nothing more: ``publish(events)``, no ``background``."""

    def __init__(self) -> None:
        self.published: list[DomainEvent] = []

    async def publish(self, events) -> None:
        self.published.extend(events)


async def test_a_publisher_without_background_is_called_without_it() -> None:
    plain = PlainPublisher()
    repo, store, _ = make_repo(publisher=plain)
    assert isinstance(plain, EventPublisher)
    order = repo.create_new(uuid4())
    order.place("Fay", 2.0)
    await repo.save(order)
    assert plain.published == await store.get_all_events()
    assert len(plain.published) == 1


class BrokenPublisher:
    """A publisher whose broker is down."""

    async def publish(self, events) -> None:
        raise ConnectionError("broker down")


async def test_a_failed_publish_is_a_clear_error_and_the_events_stay_stored() -> None:
    repo, store, _ = make_repo(publisher=BrokenPublisher())
    order = repo.create_new(uuid4())
    order.place("Gus", 3.0)
    with pytest.raises(EventsNotPublishedError, match="stored but could not be published") as err:
        await repo.save(order)
    assert isinstance(err.value.__cause__, ConnectionError)
    assert err.value.events == await store.get_all_events()
    assert (err.value.aggregate_id, err.value.aggregate_type) == (order.aggregate_id, "Order")
    assert order.uncommitted_events == [] and order.version == 1  # committed: do not save again


async def test_with_a_real_bus_handlers_see_saved_events() -> None:
    bus = InMemoryEventBus()
    repo, store, _ = make_repo(publisher=bus)
    seen: list[int] = []

    async def handler(event: DomainEvent) -> None:
        seen.append(len(await store.get_events(event.aggregate_id)))

    bus.subscribe_to_all_events(handler)
    order = repo.create_new(uuid4())
    order.place("Eve", 5.0)
    await repo.save(order)
    assert seen == [1]
