"""StatsPanel: ``get_stats()`` as a live table, with rates from successive snapshots."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets

from ..bus.base import EventBus
from ._html import escape, snapshot, table
from ._live import LiveView, start_ticker

__all__ = ["StatsPanel"]


class StatsPanel(LiveView):
    """The bus's counters, refreshed every ``interval`` seconds, each with its rate per second.

    The refresher is an asyncio task, started only if an event loop is running (in a notebook
    one is); ``close()`` cancels it. Without one, call ``refresh()`` yourself.

    Args:
        bus: any :class:`~eventsource_lab.bus.EventBus`.
        interval: seconds between refreshes.
        clock: where time comes from (seconds, monotonic); tests pass a fake one.
    """

    def __init__(
        self,
        bus: EventBus,
        interval: float = 0.5,
        *,
        clock: Callable[[], float] = time.monotonic,
        **kwargs: Any,
    ) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self._bus = bus
        self._clock = clock
        self._stats: dict[str, int] = {}
        self._rates: dict[str, float] = {}
        self._taken = 0.0
        self._table = widgets.HTML()
        super().__init__(children=[self._table], **kwargs)
        self.refresh()
        self._task = start_ticker(interval, self.refresh)
        if self._task is not None:
            self._on_close(self._task.cancel)

    @property
    def stats(self) -> dict[str, int]:
        """The counters as last read."""
        return dict(self._stats)

    @property
    def rates(self) -> dict[str, float]:
        """Per counter, its increase per second between the last two reads."""
        return dict(self._rates)

    @property
    def task(self) -> asyncio.Task[None] | None:
        """The refresher task (``None`` when no event loop was running)."""
        return self._task

    def refresh(self) -> None:
        """Read ``get_stats()`` now, update the rates and redraw."""
        now, stats = self._clock(), self._bus.get_stats()
        elapsed = now - self._taken
        if not self._stats:
            self._rates = dict.fromkeys(stats, 0.0)
        elif elapsed > 0:
            self._rates = {k: (v - self._stats.get(k, 0)) / elapsed for k, v in stats.items()}
        self._stats, self._taken = stats, now
        rows = [(escape(k), str(v), f"{self._rates.get(k, 0.0):.1f}/s") for k, v in stats.items()]
        self._table.value = self._title() + table(["counter", "total", "per second"], rows)

    def snapshot_html(self) -> str:
        """The counters now, as a static table; rates are left out, being meaningful only live."""
        rows = [(escape(k), str(v)) for k, v in self._bus.get_stats().items()]
        return snapshot(self._title() + table(["counter", "total"], rows))

    def _title(self) -> str:
        return f"<b>{escape(type(self._bus).__name__)}.get_stats()</b>"

    def __repr__(self) -> str:
        return f"StatsPanel({type(self._bus).__name__})"
