"""InMemoryEventStore: append, read, optimistic concurrency."""

from uuid import uuid4

import pytest

from eventsource_lab import InMemoryEventStore
from eventsource_lab.errors import OptimisticConcurrencyError
from eventsource_lab.store import EventStore, SupportsReadAll
from tests.support.events import OrderPlaced, OrderShipped


def _events(aggregate_id, start=1):
    return [
        OrderPlaced(
            aggregate_id=aggregate_id, customer_name="A", total_amount=1, aggregate_version=start
        ),
        OrderShipped(aggregate_id=aggregate_id, tracking_number="T", aggregate_version=start + 1),
    ]


async def test_appended_events_are_read_back_in_order() -> None:
    store, aggregate_id = InMemoryEventStore(), uuid4()
    assert isinstance(store, EventStore)
    assert await store.append_events(aggregate_id, "Order", _events(aggregate_id), 0) == 2
    events = await store.get_events(aggregate_id)
    assert [e.aggregate_version for e in events] == [1, 2]
    assert [e.aggregate_version for e in await store.get_events(aggregate_id, 1)] == [2]
    assert await store.get_events(uuid4()) == []


async def test_stale_expected_version_raises_and_writes_nothing() -> None:
    store, aggregate_id = InMemoryEventStore(), uuid4()
    await store.append_events(aggregate_id, "Order", _events(aggregate_id), 0)
    late = [OrderShipped(aggregate_id=aggregate_id, tracking_number="X", aggregate_version=2)]
    with pytest.raises(
        OptimisticConcurrencyError, match=r"at version 2.*expected version 1"
    ) as err:
        await store.append_events(aggregate_id, "Order", late, 1)
    assert (err.value.expected_version, err.value.actual_version) == (1, 2)
    assert len(await store.get_events(aggregate_id)) == 2
    assert len(await store.get_all_events()) == 2


async def test_a_batch_with_a_gap_in_versions_is_refused_whole() -> None:
    store, aggregate_id = InMemoryEventStore(), uuid4()
    bad = _events(aggregate_id)
    bad[1] = OrderShipped(aggregate_id=aggregate_id, tracking_number="T", aggregate_version=3)
    with pytest.raises(ValueError, match="expected 2"):
        await store.append_events(aggregate_id, "Order", bad, 0)
    assert await store.get_events(aggregate_id) == []


async def test_all_events_keep_global_append_order() -> None:
    store, a, b = InMemoryEventStore(), uuid4(), uuid4()
    await store.append_events(a, "Order", _events(a)[:1], 0)
    await store.append_events(b, "Order", _events(b)[:1], 0)
    await store.append_events(a, "Order", _events(a)[1:], 1)
    assert [e.aggregate_id for e in await store.get_all_events()] == [a, b, a]


async def test_every_event_gets_the_next_global_position() -> None:
    store, a, b = InMemoryEventStore(), uuid4(), uuid4()
    assert isinstance(store, SupportsReadAll)
    await store.append_events(a, "Order", _events(a), 0)
    await store.append_events(b, "Order", _events(b)[:1], 0)
    stored = await store.read_all()
    assert [s.position for s in stored] == [1, 2, 3]
    assert [s.event for s in stored] == await store.get_all_events()
    assert [s.event.aggregate_id for s in stored] == [a, a, b]


async def test_read_all_pages_from_a_position() -> None:
    store, a = InMemoryEventStore(), uuid4()
    await store.append_events(a, "Order", _events(a), 0)
    await store.append_events(a, "Order", _events(a, start=3), 2)
    assert [s.position for s in await store.read_all(1, limit=2)] == [2, 3]
    assert [s.position for s in await store.read_all(3)] == [4]
    assert await store.read_all(4) == []
    assert await store.read_all(99) == []


async def test_a_refused_append_takes_no_position() -> None:
    store, a = InMemoryEventStore(), uuid4()
    await store.append_events(a, "Order", _events(a)[:1], 0)
    with pytest.raises(OptimisticConcurrencyError):
        await store.append_events(a, "Order", _events(a)[1:], 0)
    await store.append_events(a, "Order", _events(a)[1:], 1)
    assert [s.position for s in await store.read_all()] == [1, 2]


@pytest.mark.parametrize("kwargs", [{"from_position": -1}, {"limit": 0}])
async def test_read_all_refuses_nonsense_arguments(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        await InMemoryEventStore().read_all(**kwargs)
