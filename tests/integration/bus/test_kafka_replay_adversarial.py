"""Kafka replay and log reading under abuse, on a real Kafka-protocol broker: positions of the
wrong types (a JSON dict of strings, floats, bools), aggregate ids in other spellings or no UUID
at all, and a replay whose handler raises or is cancelled or timed out midway, which must leave
no reader connected to the broker; the group's committed offsets read as its bus shuts down;
rebalance listeners that raise or remove themselves midway.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlsplit
from uuid import uuid4

import psutil
import pytest

from eventsource_lab.bus.kafka import KafkaEventBus
from eventsource_lab.events import DomainEvent
from eventsource_lab.widgets.partitions import PartitionView
from tests.support.scenarios import bus_factory, orders
from tests.support.waiting import eventually

pytestmark = pytest.mark.kafka


@pytest.fixture
async def buses(kafka_broker) -> AsyncIterator[Callable[..., KafkaEventBus]]:
    """Buses in a namespace of this test's own, shut down after it."""
    async with bus_factory(kafka_broker) as make:
        yield make


def connections_to(bus: KafkaEventBus) -> int:
    """This process's open TCP connections to the bus's broker."""
    port = urlsplit(f"//{bus.config.bootstrap_servers}").port
    return sum(
        1
        for c in psutil.Process().net_connections("tcp")
        if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
    )


@pytest.mark.parametrize(
    "positions",
    [{"0": 0}, {0: "0"}, {0: 1.0}, {0: True}, {True: 0}, {0: None}],
    ids=["json-partition", "json-offset", "float", "bool-offset", "bool-partition", "none"],
)
async def test_positions_that_are_not_ints_are_a_clear_type_error(buses, positions) -> None:
    bus = buses()
    await bus.publish(orders(8))
    key, value = next(iter(positions.items()))
    with pytest.raises(TypeError, match=rf"both ints; got {key!r}: {value!r}"):
        await bus.replay_to(print, positions=positions)
    assert len([e async for e in bus.read(positions={0: 0, 1: 0, 2: 0, 3: 0})]) == 8


class IntLike:
    """An integer that is no int, as NumPy's are: it has ``__index__``."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __index__(self) -> int:
        return self.value


async def test_positions_of_integers_that_are_not_ints_are_taken(buses) -> None:
    bus = buses()
    events = orders(8)
    await bus.publish(events)
    everything = {IntLike(p): IntLike(0) for p in range(4)}
    assert len([e async for e in bus.read(positions=everything)]) == 8


async def test_an_aggregate_id_in_another_spelling_reads_the_same_history(buses) -> None:
    bus = buses()
    events = orders(12)
    await bus.publish(events)
    aggregate = events[0].aggregate_id
    history = [e async for e in bus.read(aggregate_id=aggregate)]
    assert history == [e for e in events if e.aggregate_id == aggregate]
    for spelling in (str(aggregate).upper(), aggregate.hex, f"{{{aggregate}}}"):
        assert [e async for e in bus.read(aggregate_id=spelling)] == history, spelling


@pytest.mark.parametrize("aggregate_id", ["not-a-uuid", "", 12])
async def test_an_aggregate_id_that_is_no_uuid_is_a_value_error(buses, aggregate_id) -> None:
    bus = buses()
    with pytest.raises(ValueError, match=rf"aggregate_id {aggregate_id!r} is not a UUID"):
        await bus.replay_to(print, aggregate_id=aggregate_id)


async def test_a_handler_that_raises_midway_ends_the_replay_and_its_reader(buses) -> None:
    bus = buses()
    events = orders(10)
    await bus.publish(events)
    await bus.connect()
    before = connections_to(bus)
    seen: list[DomainEvent] = []

    def third_fails(event: DomainEvent) -> None:
        seen.append(event)
        if len(seen) == 3:
            raise RuntimeError("cannot project")

    with pytest.raises(RuntimeError, match="cannot project"):
        await bus.replay_to(third_fails, positions={p: 0 for p in range(4)})
    assert len(seen) == 3  # nothing after the failure was handed to it
    await eventually(lambda: connections_to(bus) == before, 5, "the reader's connections close")


@pytest.mark.parametrize("how", ["cancel", "timeout"])
async def test_a_replay_cancelled_midway_leaves_no_reader_connected(buses, how) -> None:
    bus = buses()
    await bus.publish(orders(10))
    await bus.connect()
    before = connections_to(bus)
    started = asyncio.Event()

    async def slow(event: DomainEvent) -> None:
        started.set()
        await asyncio.sleep(60)

    replay = asyncio.ensure_future(bus.replay_to(slow, positions={p: 0 for p in range(4)}))
    await asyncio.wait_for(started.wait(), 10)
    if how == "cancel":
        replay.cancel()
        with pytest.raises(asyncio.CancelledError):
            await replay
    else:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(replay, 0.1)
    await eventually(lambda: connections_to(bus) == before, 5, "the reader's connections close")


async def test_reading_while_the_group_consumes_moves_none_of_its_commits(buses) -> None:
    live = buses("live", auto_offset_reset="earliest")
    handled: list[DomainEvent] = []
    live.subscribe_to_all_events(handled.append)
    await live.start_consuming()
    events = orders(12)
    await live.publish(events)
    await eventually(lambda: len(handled) == 12, 20, "the live group handles all")

    async def committed_all() -> bool:
        return sum(n or 0 for n in (await live.committed_offsets()).values()) == 12

    await eventually(committed_all, 20, "the live group commits all")
    read = [e async for e in live.read(positions={p: 0 for p in range(4)})]
    assert sorted(e.event_id for e in read) == sorted(e.event_id for e in events)
    assert sum(n or 0 for n in (await live.committed_offsets()).values()) == 12
    assert len(handled) == 12  # the read handed nothing to the group's handlers


async def test_reading_an_aggregate_with_no_events_on_an_empty_topic_gives_none(buses) -> None:
    bus = buses()
    assert [e async for e in bus.read(aggregate_id=uuid4())] == []
    assert [e async for e in bus.read(positions={0: 0})] == []


async def test_a_view_reading_the_offsets_as_its_bus_shuts_down_does_not_reopen_it(
    buses,
) -> None:
    bus = buses()
    await bus.connect()
    view = PartitionView([bus], interval=None)
    try:
        reading = asyncio.ensure_future(view.refresh())
        await bus.shutdown(5)
        await asyncio.wait_for(reading, 10)
        assert not bus.is_connected, "the read reopened the bus: its producer stays connected"
        assert await bus.committed_offsets() == dict.fromkeys(range(4))
        assert not bus.is_connected
    finally:
        view.close()


async def test_the_offsets_of_a_bus_never_connected_are_read_once_its_topics_exist(
    buses,
) -> None:
    bus = buses()
    assert await bus.committed_offsets() == dict.fromkeys(range(4))


async def test_rebalance_listeners_that_raise_or_leave_midway_spoil_no_other(buses) -> None:
    bus = buses()
    bus.subscribe_to_all_events(lambda event: None)
    calls: dict[str, list[tuple[frozenset[int], frozenset[int]]]] = {}

    def listener(name: str, *, fails: bool = False, leaves: bool = False) -> Any:
        def heard(assigned: frozenset[int], revoked: frozenset[int], consumer: str) -> None:
            calls.setdefault(name, []).append((assigned, revoked))
            if leaves:
                removers[name]()
            if fails:
                raise RuntimeError(f"{name} broke")

        return heard

    removers = {
        "leaves": bus.on_rebalance(listener("leaves", leaves=True)),
        "fails": bus.on_rebalance(listener("fails", fails=True)),
        "calm": bus.on_rebalance(listener("calm")),
    }
    everything, nothing = frozenset(range(4)), frozenset()
    await bus.start_consuming()
    assert bus.assigned_partitions == everything
    await bus.stop_consuming()
    assert bus.assigned_partitions == nothing
    assert calls["leaves"] == [(everything, nothing)]  # removed itself: not called again
    assert calls["fails"] == calls["calm"] == [(everything, nothing), (nothing, everything)]
