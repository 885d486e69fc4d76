"""PartitionView: which consumer of a Kafka group owns each partition of its events topic, and
the group's committed offset there, updated as the group rebalances."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from ..errors import BusError
from ._html import FAILED_COLOR, escape, snapshot, table
from ._live import LiveView, start_ticker

if TYPE_CHECKING:
    from ..bus.kafka import KafkaEventBus

__all__ = ["PartitionView"]

logger = logging.getLogger("eventsource_lab.widgets")

_OFFSETS_TIMEOUT = 10.0  # seconds one read of the committed offsets may take
_NONE = "<span style='color:#868e96'>—</span>"


class PartitionView(LiveView):
    """A row per partition of the events topic: the consumer of the group that owns it and the
    group's committed offset there.

    Owners change as the buses report rebalances (``bus.on_rebalance``), at once. Offsets are
    read by :meth:`refresh`, in a task after every rebalance and every ``interval`` seconds
    when an event loop runs (in a notebook one does), through a connected bus of the group; a
    shut-down bus is never reopened. A partition owned by a consumer in another process shows
    no owner: only the buses given are seen.

    Args:
        buses: consumers of one group in this kernel (:class:`~eventsource_lab.bus.KafkaEventBus`
            with the same ``consumer_group`` and ``topic_prefix``, distinct ``consumer_name``).
        interval: seconds between reads of the offsets; ``None`` reads them only on a
            rebalance and when asked.
    """

    def __init__(
        self, buses: Sequence[KafkaEventBus], *, interval: float | None = 2.0, **kwargs: Any
    ) -> None:
        buses = tuple(buses)
        if not buses:
            raise ValueError("PartitionView needs at least one bus of the group")
        groups = {(bus.config.consumer_group, bus.config.topic) for bus in buses}
        if len(groups) > 1:
            raise ValueError(
                f"the buses must be consumers of one group on one topic; got {sorted(groups)}"
            )
        names = [bus.config.consumer_name for bus in buses]
        if len(set(names)) < len(names):
            raise ValueError(f"each bus needs its own consumer_name; got {names}")
        if interval is not None and interval <= 0:
            raise ValueError("interval must be positive (or None)")
        self._buses = buses
        self._owners: dict[int, str | None] = dict.fromkeys(range(buses[0].config.partitions))
        self._offsets: dict[int, int | None] = {}
        self._error: str | None = None
        self._refreshing: asyncio.Task[None] | None = None
        self._stale = False  # a rebalance came during a read: read again after it
        self._table = widgets.HTML()
        super().__init__(children=[self._table], **kwargs)
        for bus in buses:
            for partition in bus.assigned_partitions:
                self._owners[partition] = bus.config.consumer_name
            self._on_close(bus.on_rebalance(self._rebalanced))
        self._on_close(self._cancel_refresh)
        if interval is not None and (ticker := start_ticker(interval, self._kick)) is not None:
            self._on_close(ticker.cancel)
        self._draw()

    @property
    def owners(self) -> dict[int, str | None]:
        """Each partition's owner (a ``consumer_name``; ``None``: none of the buses owns it)."""
        return dict(sorted(self._owners.items()))

    @property
    def offsets(self) -> dict[int, int | None]:
        """Each partition's committed offset as last read (``None``: none committed or read)."""
        return {p: self._offsets.get(p) for p in self._owners}

    @property
    def rows(self) -> list[tuple[int, str | None, int | None]]:
        """``(partition, owner, committed offset)`` per partition, as shown."""
        offsets = self.offsets
        return [(p, owner, offsets[p]) for p, owner in self.owners.items()]

    @property
    def error(self) -> str | None:
        """Why the last read of the offsets failed, if it did."""
        return self._error

    async def refresh(self) -> None:
        """Read the group's committed offsets now (through the first connected bus) and redraw;
        a failure is shown and kept in :attr:`error`, the last offsets stay."""
        bus = next((b for b in self._buses if b.is_connected), None)
        if bus is None:
            self._error = "no bus of the group is connected: offsets not read"
        else:
            try:
                offsets = await asyncio.wait_for(bus.committed_offsets(), _OFFSETS_TIMEOUT)
            except (BusError, asyncio.TimeoutError) as exc:
                self._error = f"{type(exc).__name__}: {exc}"
            else:
                self._error = None
                self._offsets = offsets
                for partition in offsets:  # the topic may have more partitions than configured
                    self._owners.setdefault(partition, None)
        self._draw()

    def _rebalanced(self, assigned: frozenset[int], revoked: frozenset[int], name: str) -> None:
        for partition in revoked:
            if self._owners.get(partition) == name:
                self._owners[partition] = None
        for partition in assigned:
            self._owners[partition] = name
        self._draw()
        self._kick()

    def _kick(self) -> None:
        """Read the offsets in a task, unless a read runs (then once more after it)."""
        if self.closed:
            return
        if self._refreshing is not None and not self._refreshing.done():
            self._stale = True
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        self._stale = False
        self._refreshing = asyncio.ensure_future(self.refresh())
        self._refreshing.add_done_callback(self._refreshed)

    def _refreshed(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            logger.warning("partition view refresh failed: %r", task.exception())
        if self._stale:
            self._kick()

    def _cancel_refresh(self) -> None:
        if self._refreshing is not None:
            self._refreshing.cancel()

    # -- drawing -----------------------------------------------------------------------------

    def _html(self) -> str:
        cells = [
            (
                str(partition),
                _NONE if owner is None else escape(owner),
                _NONE if offset is None else str(offset),
            )
            for partition, owner, offset in self.rows
        ]
        html = self._title() + table(["partition", "owner", "committed offset"], cells)
        if self._error:
            html += f"<div style='color:{FAILED_COLOR};font-size:12px'>{escape(self._error)}</div>"
        return html

    def _draw(self) -> None:
        self._table.value = self._html()

    def _final_frame(self) -> None:
        self._draw()  # refresh() reads the broker: the last frame shows what is known

    def snapshot_html(self) -> str:
        """The partitions, owners and offsets as last known, as a static table."""
        return snapshot(self._html())

    def _title(self) -> str:
        config = self._buses[0].config
        return (
            f"<b>{escape(config.topic)}</b> · group <b>{escape(config.consumer_group)}</b> · "
            f"{len(set(self._owners.values()) - {None})} of {len(self._buses)} consumers own "
            "partitions"
        )

    def __repr__(self) -> str:
        owned = ", ".join(f"{p}:{owner or '-'}" for p, owner in self.owners.items())
        return f"PartitionView({self._buses[0].config.topic}: {owned})"
