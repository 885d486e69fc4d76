"""PartitionView on a real Kafka-protocol broker: one consumer owning every partition, a second
joining and taking some, the second leaving; the committed offsets shown match what was handled.

Each test uses a fresh topic and group, so an offset counts the events ``partition_for`` put on
its partition. A group join costs a few seconds on tansu: every wait for one has JOIN_TIMEOUT.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import pytest

from eventsource_lab.bus.kafka import KafkaEventBus
from eventsource_lab.bus.kafka_partitioner import partition_for
from eventsource_lab.events import DomainEvent
from eventsource_lab.widgets import PartitionView
from tests.support.events import OrderPlaced
from tests.support.scenarios import bus_factory, orders
from tests.support.waiting import Recorder, eventually

pytestmark = pytest.mark.kafka

JOIN_TIMEOUT = 30.0  # a group join or rebalance on tansu, with room to spare


@pytest.fixture
async def buses(kafka_broker) -> AsyncIterator[Callable[..., KafkaEventBus]]:
    """Buses in a namespace of this test's own, shut down after it."""
    async with bus_factory(kafka_broker) as make:
        yield make


def counts(events: list[DomainEvent], partitions: int = 4) -> dict[int, int]:
    """How many of ``events`` ``publish`` puts on each partition: its offset after them."""
    placed = dict.fromkeys(range(partitions), 0)
    for event in events:
        placed[partition_for(str(event.aggregate_id).encode(), range(partitions))] += 1
    return placed


def owned_once(view: PartitionView, *consumers: KafkaEventBus) -> bool:
    """Whether every partition has one owner among ``consumers``, as the view and they say."""
    held = [bus.assigned_partitions for bus in consumers]
    return (
        sum(map(len, held)) == 4
        and frozenset().union(*held) == frozenset(range(4))
        and all(
            view.owners[p] == bus.config.consumer_name
            for bus in consumers
            for p in bus.assigned_partitions
        )
    )


async def offsets_reach(view: PartitionView, expected: dict[int, int]) -> bool:
    await view.refresh()
    return view.offsets == expected


async def test_owners_and_offsets_follow_a_consumer_joining_and_leaving(buses) -> None:
    a, b = buses(consumer_name="a"), buses(consumer_name="b")
    recorders = {bus: Recorder(bus.config.consumer_name) for bus in (a, b)}
    for bus, recorder in recorders.items():
        bus.subscribe(OrderPlaced, recorder)
    view = PartitionView([a, b], interval=None)
    try:
        assert view.owners == dict.fromkeys(range(4))
        await asyncio.wait_for(a.start_consuming(), JOIN_TIMEOUT)
        assert view.owners == dict.fromkeys(range(4), "a")

        publisher = buses("publisher")
        first = orders(40, "first")
        await publisher.publish(first)
        await recorders[a].wait_for(40)
        await eventually(lambda: offsets_reach(view, counts(first)), what="offsets after 40")
        assert all(view.offsets.values()), counts(first)  # every partition got some

        second = orders(40, "second")
        await publisher.publish(second)
        await recorders[a].wait_for(80)
        await asyncio.wait_for(b.start_consuming(), JOIN_TIMEOUT)
        # a commits what it handled before giving its partitions up, and the rebalance alone
        # has the view read the offsets again: no refresh() here.
        handled = counts([*first, *second])
        await eventually(
            lambda: (
                set(view.owners.values()) == {"a", "b"}
                and owned_once(view, a, b)
                and view.offsets == handled
            ),
            timeout=JOIN_TIMEOUT,
            what="a and b sharing the partitions, the offsets read again",
        )

        third = orders(40, "third")
        await publisher.publish(third)
        await eventually(
            lambda: sum(len(r.events) for r in recorders.values()) >= 120, what="120 events"
        )
        assert recorders[b].events, "b should have handled the events of its partitions"
        handled = counts([*first, *second, *third])
        await eventually(lambda: offsets_reach(view, handled), what="offsets after 120")
        assert [offset for _, _, offset in view.rows] == [handled[p] for p in range(4)]

        await asyncio.wait_for(b.shutdown(10), JOIN_TIMEOUT)
        assert b.assigned_partitions == frozenset()
        await eventually(
            lambda: view.owners == dict.fromkeys(range(4), "a") and owned_once(view, a),
            timeout=JOIN_TIMEOUT,
            what="a owning every partition again",
        )
        await view.refresh()  # through a: b, shut down, is not reopened
        assert view.offsets == handled and view.error is None and not b.is_connected
        html = view.snapshot_html()
        assert "1 of 2 consumers own partitions" in html
        assert f"<td style='padding:2px 8px'>{handled[0]}</td>" in html
    finally:
        view.close()


async def test_a_read_of_the_offsets_cancelled_while_its_reader_starts_leaves_it_stopped(
    buses,
) -> None:
    """PartitionView.close() cancels a read in flight. A reader cancelled while it starts must
    be stopped, or its connections to the broker stay open for the life of the kernel."""
    bus = buses()
    await bus.connect()
    started = []
    starting = asyncio.Event()
    start = bus._start

    async def noting(client) -> None:
        started.append(client)
        starting.set()
        await start(client)

    bus._start = noting
    read = asyncio.ensure_future(bus.committed_offsets())
    await asyncio.wait_for(starting.wait(), 10)
    read.cancel()  # the read is inside the reader's start: it awaits the broker there
    with contextlib.suppress(asyncio.CancelledError):
        await read
    assert read.cancelled()
    assert [client._closed for client in started] == [True]  # aiokafka's "stopped" flag
    bus._start = start
    assert (await bus.committed_offsets()).keys() == {0, 1, 2, 3}  # the bus still reads
