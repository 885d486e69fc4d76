"""Replay from any offset on a real Kafka-protocol broker: explicit positions into a fresh group,
reading from positions or one aggregate's partition without any group, and the clear errors
for an unknown partition or an offset beyond a partition's end.

Each test publishes to a fresh topic, so an event's offset is its place among the events that
``partition_for`` puts on its partition, in publish order.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from uuid import uuid4

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from eventsource_lab.bus.kafka import KafkaEventBus
from eventsource_lab.bus.kafka_partitioner import partition_for
from eventsource_lab.events import DomainEvent
from tests.support.events import OrderPlaced
from tests.support.scenarios import bus_factory, orders
from tests.support.waiting import Recorder, eventually

pytestmark = pytest.mark.kafka


@pytest.fixture
async def buses(kafka_broker) -> AsyncIterator[Callable[..., KafkaEventBus]]:
    """Buses in a namespace of this test's own, shut down after it."""
    async with bus_factory(kafka_broker) as make:
        yield make


def by_partition(events: list[DomainEvent], partitions: int) -> dict[int, list[DomainEvent]]:
    """The events of each partition in offset order, placed as ``publish`` places them."""
    placed: dict[int, list[DomainEvent]] = {p: [] for p in range(partitions)}
    for event in events:
        placed[partition_for(str(event.aggregate_id).encode(), range(partitions))].append(event)
    return placed


async def committed(bus: KafkaEventBus) -> dict[int, int | None]:
    """The group's committed offsets, read by a consumer that does not join the group."""
    config = bus.config
    reader = AIOKafkaConsumer(
        bootstrap_servers=config.bootstrap_servers,
        group_id=config.consumer_group,
        enable_auto_commit=False,
    )
    await reader.start()
    try:
        return {
            p: await reader.committed(TopicPartition(config.topic, p))
            for p in range(config.partitions)
        }
    finally:
        await reader.stop()


async def test_reading_from_positions_gives_exactly_those_events_and_leaves_the_group_alone(
    buses,
) -> None:
    bus = buses(consumer_group="live")
    recorder = Recorder("live")
    bus.subscribe(OrderPlaced, recorder)
    await bus.start_consuming()
    events = orders(60)
    await bus.publish(events)  # one record batch per partition: tansu's end offset is short
    await recorder.wait_for(60)
    placed = by_partition(events, bus.config.partitions)
    ends = {p: len(placed[p]) for p in placed}
    assert all(n >= 3 for n in ends.values())

    async def settled() -> bool:
        return await committed(bus) == ends

    await eventually(settled, what="the live group's commits at the ends")

    positions = {0: 2, 2: 0, 3: ends[3]}  # partition 3 from its end: nothing to read
    read = [event async for event in bus.read(positions=positions)]
    expected = placed[0][2:] + placed[2]
    assert sorted(e.event_id for e in read) == sorted(e.event_id for e in expected)
    for p in (0, 2):  # each partition in offset order
        assert [e.event_id for e in read if e in placed[p]] == [
            e.event_id for e in placed[p][positions[p] :]
        ]

    handled: list[DomainEvent] = []
    assert await bus.replay_to(handled.append, positions={1: ends[1] - 1}) == 1
    assert handled == [placed[1][-1]]
    assert await committed(bus) == ends  # no commit moved
    assert len(recorder.events) == 60  # and the live group was not made to replay


async def test_replaying_positions_delivers_exactly_the_events_from_there_to_that_group(
    buses,
) -> None:
    """The group starts before the events come: on tansu a new group that starts "latest"
    after them would start a few events short of the end (its end offsets are short)."""
    fresh, other = buses(consumer_group="rebuild"), buses(consumer_group="other")
    recorder, witness_of_other = Recorder("rebuild"), Recorder("other")
    fresh.subscribe(OrderPlaced, recorder)
    other.subscribe(OrderPlaced, witness_of_other)
    await asyncio.gather(fresh.start_consuming(), other.start_consuming())
    events = orders(40)
    await fresh.publish(events)
    await recorder.wait_for(40)
    placed = by_partition(events, fresh.config.partitions)
    assert await fresh.replay(positions={1: 1, 3: 0}) == {1: 1, 3: 0}
    expected = placed[1][1:] + placed[3]
    received = (await recorder.wait_for(40 + len(expected)))[40:]
    assert sorted(e.event_id for e in received) == sorted(e.event_id for e in expected)
    witness = orders(1)
    await fresh.publish(witness)
    await recorder.wait_for(41 + len(expected))
    assert recorder.ids[-1] == witness[0].event_id  # nothing else: 0 and 2 untouched
    await witness_of_other.wait_for(41)
    assert len(witness_of_other.events) == 41  # the other group replayed nothing

    end = len(by_partition(events + witness, fresh.config.partitions)[1])
    with pytest.raises(
        ValueError,
        match=rf"offset {end + 1} is beyond the end of partition 1 .*"
        rf"which ends at {end}",
    ):
        await fresh.replay(positions={1: end + 1})
    with pytest.raises(ValueError, match="has no partition 7"):
        await fresh.replay(positions={7: 0})
    with pytest.raises(
        ValueError, match="either from_beginning=True or since=<datetime> or positions"
    ):
        await fresh.replay(from_beginning=True, positions={1: 0})


async def test_reading_one_aggregate_gives_its_events_in_version_order(buses) -> None:
    bus = buses()
    aggregate = uuid4()
    others = orders(30)
    mine = [
        OrderPlaced(aggregate_id=aggregate, aggregate_version=v, customer_name="me", total_amount=v)
        for v in range(1, 9)
    ]
    for start in range(0, 8, 2):  # interleaved with the others, over several publishes
        await bus.publish(others[start * 3 : start * 3 + 6] + mine[start : start + 2])
    await bus.publish(others[24:])
    partitions = bus.config.partitions
    home = partition_for(str(aggregate).encode(), range(partitions))
    assert by_partition(others, partitions)[home], "others share its partition: filtering shows"

    read = [event async for event in bus.read(aggregate_id=aggregate)]
    assert [(e.event_id, e.aggregate_version) for e in read] == [
        (e.event_id, e.aggregate_version) for e in mine
    ]
    handled: list[DomainEvent] = []

    async def handle(event: DomainEvent) -> None:
        handled.append(event)

    assert await bus.replay_to(handle, aggregate_id=str(aggregate)) == 8
    assert [e.aggregate_version for e in handled] == list(range(1, 9))
    assert [e async for e in bus.read(aggregate_id=uuid4())] == []  # none of its events there


async def test_unknown_partitions_and_offsets_outside_the_log_are_clear_errors(buses) -> None:
    bus = buses()
    events = orders(20)
    await bus.publish(events)
    placed = by_partition(events, bus.config.partitions)
    end = len(placed[2])
    assert end > 1, "a batch of several records: tansu's own end offset would say 1"
    assert [e async for e in bus.read(positions={2: end})] == []  # the end itself: nothing
    with pytest.raises(
        ValueError, match=rf"offset {end + 5} is beyond the end of partition 2 .* ends at {end}$"
    ):
        await bus.replay_to(print, positions={2: end + 5})
    with pytest.raises(ValueError, match=r"has no partition 4: it has \[0, 1, 2, 3\]"):
        await bus.replay_to(print, positions={4: 0})
    with pytest.raises(ValueError, match="before the start of partition 0"):
        await bus.replay_to(print, positions={0: -1})
    with pytest.raises(ValueError, match="either positions"):
        await bus.replay_to(print)
    with pytest.raises(ValueError, match="either positions"):
        await bus.replay_to(print, positions={0: 0}, aggregate_id=uuid4())
    read = [e async for e in bus.read(positions={2: end - 1})]
    assert read == [placed[2][-1]]  # the bus still reads after the errors
