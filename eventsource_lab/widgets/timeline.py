"""EventTimeline: the last events a bus dispatched, who got them and who failed."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import ipywidgets as widgets

from ..bus.base import EventBus
from ..bus.handlers import Delivery
from ._deliveries import RetryDetector
from ._html import FAILED_COLOR, escape, short_id, snapshot, table
from ._live import LiveView, Throttle

__all__ = ["EventTimeline"]


@dataclass
class _Row:
    event_id: UUID
    event_type: str
    aggregate_id: str
    version: int
    handlers: tuple[str, ...]
    failed: tuple[str, ...]
    attempts: int = 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "event_type": self.event_type,
            "aggregate_id": self.aggregate_id,
            "version": self.version,
            "handlers": list(self.handlers),
            "failed": list(self.failed),
        }


class EventTimeline(LiveView):
    """The last ``limit`` events dispatched on ``bus``, oldest first.

    A broker bus's retry of an event updates that event's row (``failed`` is what still fails
    after the latest attempt) instead of adding one; a DLQ replay adds a new row.

    Args:
        bus: any :class:`~eventsource_lab.bus.EventBus`.
        limit: how many events to keep.
        interval: at most one redraw per ``interval`` seconds while events flow.
    """

    def __init__(
        self, bus: EventBus, limit: int = 20, *, interval: float = 0.1, **kwargs: Any
    ) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self._bus = bus
        self._rows: deque[_Row] = deque(maxlen=limit)
        self._retries = RetryDetector()
        self._table = widgets.HTML()
        super().__init__(children=[self._table], **kwargs)
        self._throttle = Throttle(self.refresh, interval)
        self._on_close(self._throttle.cancel)
        self._watch_deliveries(bus, self._on_delivery)
        self.refresh()

    @property
    def rows(self) -> list[dict[str, Any]]:
        """The events, oldest first: ``event_type``, ``aggregate_id`` (short), ``version``,
        ``handlers`` (names reached) and ``failed`` (names that raised)."""
        return [row.as_dict() for row in self._rows]

    def refresh(self) -> None:
        """Redraw now."""
        self._table.value = self.snapshot_html()

    def snapshot_html(self) -> str:
        """The timeline as a static table."""
        rows = [
            (
                escape(r.event_type),
                f"<code>{escape(r.aggregate_id)}</code>",
                str(r.version),
                escape(", ".join(r.handlers)) or "<i>no handler</i>",
                self._failed_cell(r),
            )
            for r in self._rows
        ]
        headers = ["event type", "aggregate", "version", "handlers", "failed"]
        return snapshot(table(headers, rows, empty="no events yet"))

    def __repr__(self) -> str:
        return f"EventTimeline({type(self._bus).__name__}, {len(self._rows)} events)"

    @staticmethod
    def _failed_cell(row: _Row) -> str:
        tries = f" <i>after {row.attempts} attempts</i>" if row.attempts > 1 else ""
        if not row.failed:
            return f"none{tries}"
        names = escape(", ".join(row.failed))
        return f"<span style='color:{FAILED_COLOR};font-weight:bold'>✗ {names}</span>{tries}"

    def _on_delivery(self, delivery: Delivery) -> None:
        """Record one dispatch (runs inside the bus: bookkeeping, then a scheduled redraw)."""
        event = delivery.event
        row = None
        if self._retries.observe(delivery):
            row = next((r for r in reversed(self._rows) if r.event_id == event.event_id), None)
        if row is None:
            self._rows.append(
                _Row(
                    event.event_id,
                    event.event_type,
                    short_id(event.aggregate_id),
                    event.aggregate_version,
                    delivery.handlers,
                    delivery.failed,
                )
            )
        else:
            row.failed = delivery.failed
            row.attempts += 1
        self._throttle.poke()
