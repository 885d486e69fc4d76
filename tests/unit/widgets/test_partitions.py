"""PartitionView on fake Kafka buses: owners from rebalances, offsets from reads, the snapshot."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from eventsource_lab.bus.kafka import KafkaEventBusConfig
from eventsource_lab.errors import BusError
from eventsource_lab.testing import eventually
from eventsource_lab.widgets import PartitionView

Listener = Callable[[frozenset[int], frozenset[int], str], None]


class FakeGroup:
    """The group's committed offsets, shared by its fake buses."""

    def __init__(self, partitions: int = 4) -> None:
        self.offsets: dict[int, int | None] = dict.fromkeys(range(partitions))
        self.reads = 0
        self.error: BusError | None = None
        self.gate: asyncio.Event | None = None  # a read waits for it when set


class FakeBus:
    """What PartitionView uses of a KafkaEventBus, driven by hand."""

    def __init__(self, group: FakeGroup, name: str, **config: object) -> None:
        defaults = {"consumer_group": "g", "consumer_name": name, "topic_prefix": "t"}
        self.config = KafkaEventBusConfig(**{**defaults, **config})
        self.group = group
        self.is_connected = True
        self.assigned_partitions: frozenset[int] = frozenset()
        self.listeners: list[Listener] = []

    def on_rebalance(self, listener: Listener) -> Callable[[], None]:
        self.listeners.append(listener)
        return lambda: self.listeners.remove(listener)

    def rebalance(self, assigned: set[int] = frozenset(), revoked: set[int] = frozenset()) -> None:
        self.assigned_partitions = (self.assigned_partitions - revoked) | assigned
        for listener in list(self.listeners):
            listener(frozenset(assigned), frozenset(revoked), self.config.consumer_name)

    async def committed_offsets(self) -> dict[int, int | None]:
        assert self.is_connected, "a shut-down bus must not be asked"
        if self.group.gate is not None:
            await self.group.gate.wait()
        self.group.reads += 1
        if self.group.error is not None:
            raise self.group.error
        return dict(self.group.offsets)


def buses(*names: str) -> tuple[FakeGroup, list[FakeBus]]:
    group = FakeGroup()
    return group, [FakeBus(group, name) for name in names]


def test_owners_follow_rebalances_without_an_event_loop() -> None:
    _, (a, b) = buses("a", "b")
    a.rebalance({0, 1, 2, 3})
    view = PartitionView([a, b], interval=None)
    assert view.owners == {0: "a", 1: "a", 2: "a", 3: "a"}  # taken from the buses at once

    a.rebalance(revoked={0, 1, 2, 3})  # eager: a gives up all, then both get their share
    assert view.owners == dict.fromkeys(range(4))
    b.rebalance({2, 3})
    a.rebalance({0, 1})
    assert view.rows == [(0, "a", None), (1, "a", None), (2, "b", None), (3, "b", None)]

    b.rebalance(revoked={2, 3})  # b leaves; a's revocation of 2 comes late and is ignored
    a.rebalance(revoked={0, 1})
    a.rebalance({0, 1, 2, 3})
    b.rebalance(revoked={2})
    assert set(view.owners.values()) == {"a"}
    view.close()


def test_a_late_revocation_does_not_unown_the_new_owner() -> None:
    _, (a, b) = buses("a", "b")
    view = PartitionView([a, b], interval=None)
    a.rebalance({0})
    b.rebalance({0})  # b took 0 before a reported giving it up
    a.rebalance(revoked={0})
    assert view.owners[0] == "b"
    view.close()


async def test_refresh_reads_the_offsets_and_draws_them() -> None:
    group, (a, b) = buses("a", "b")
    view = PartitionView([a, b], interval=None)
    a.rebalance({0, 1})
    b.rebalance({2, 3})
    await eventually(lambda: group.reads >= 1, timeout=5, what="a read after the rebalances")
    group.offsets = {0: 7, 1: None, 2: 12, 3: 0}
    await view.refresh()
    assert view.rows == [(0, "a", 7), (1, "a", None), (2, "b", 12), (3, "b", 0)]
    html = view.snapshot_html()
    assert "<td style='padding:2px 8px'>12</td>" in html
    assert "2 of 2 consumers own partitions" in html
    assert view._repr_mimebundle_()["text/html"] == html
    view.close()


async def test_a_rebalance_reads_the_offsets_again_once_more_if_one_read_runs() -> None:
    group, (a,) = buses("a")
    group.gate = asyncio.Event()
    view = PartitionView([a], interval=None)
    a.rebalance({0, 1, 2, 3})  # starts a read that waits at the gate
    group.offsets = {0: 1, 1: 2, 2: 3, 3: 4}
    a.rebalance(revoked={0, 1, 2, 3})
    a.rebalance({0, 1, 2, 3})  # both merge into one read after the running one
    group.gate.set()
    await eventually(lambda: group.reads == 2, timeout=5, what="two reads")
    await eventually(lambda: view.offsets == group.offsets, timeout=5, what="offsets shown")
    for _ in range(5):  # give a third read, which must not come, its chance
        await asyncio.sleep(0)
    assert group.reads == 2
    view.close()


async def test_offsets_are_reread_every_interval_until_close() -> None:
    group, (a,) = buses("a")
    view = PartitionView([a], interval=0.01)
    await eventually(lambda: group.reads >= 2, timeout=5, what="periodic reads")
    group.offsets[3] = 99
    await eventually(lambda: view.offsets[3] == 99, timeout=5, what="the new offset")
    view.close()
    reads = group.reads
    a.rebalance({0})  # closed: no listener left, nothing read
    assert a.listeners == [] and view.owners[0] is None
    for _ in range(5):
        await asyncio.sleep(0.01)
    assert group.reads == reads
    assert view.closed and "99" in view.children[0].value  # the last frame stays


async def test_a_failed_read_is_shown_and_keeps_the_last_offsets() -> None:
    group, (a,) = buses("a")
    view = PartitionView([a], interval=None)
    group.offsets[0] = 5
    await view.refresh()
    group.error = BusError("reading the committed offsets failed: <boom>")
    await view.refresh()
    assert view.offsets[0] == 5
    assert view.error == "BusError: reading the committed offsets failed: <boom>"
    assert "&lt;boom&gt;" in view.snapshot_html() and "<boom>" not in view.snapshot_html()
    group.error = None
    await view.refresh()
    assert view.error is None
    view.close()


async def test_offsets_are_read_through_a_connected_bus_only() -> None:
    group, (a, b) = buses("a", "b")
    view = PartitionView([a, b], interval=None)
    a.is_connected = False
    group.offsets[1] = 3
    await view.refresh()  # through b
    assert view.offsets[1] == 3
    b.is_connected = False
    group.offsets[1] = 4
    await view.refresh()  # FakeBus asserts it is not asked while shut down
    assert view.offsets[1] == 3 and "no bus of the group is connected" in view.error
    view.close()


async def test_partitions_the_topic_has_beyond_the_config_get_rows() -> None:
    group, (a,) = buses("a")
    view = PartitionView([a], interval=None)
    group.offsets[4] = 10
    a.rebalance({4})
    await view.refresh()
    assert view.rows[-1] == (4, "a", 10)
    view.close()


def test_owner_names_are_escaped() -> None:
    _, (a,) = buses("<script>x</script>")
    a.rebalance({0})
    view = PartitionView([a], interval=None)
    html = view.snapshot_html()
    assert "<script>" not in html and "&lt;script&gt;x&lt;/script&gt;" in html
    assert "PartitionView(t.events: 0:<script>x</script>, 1:-" in repr(view)
    view.close()


def test_the_buses_must_be_one_group_with_distinct_names() -> None:
    group = FakeGroup()
    with pytest.raises(ValueError, match="at least one"):
        PartitionView([])
    with pytest.raises(ValueError, match="one group"):
        PartitionView([FakeBus(group, "a"), FakeBus(group, "b", consumer_group="h")])
    with pytest.raises(ValueError, match="one group"):
        PartitionView([FakeBus(group, "a"), FakeBus(group, "b", topic_prefix="u")])
    with pytest.raises(ValueError, match="consumer_name"):
        PartitionView([FakeBus(group, "a"), FakeBus(group, "a")])
    with pytest.raises(ValueError, match="interval"):
        PartitionView([FakeBus(group, "a")], interval=0)
