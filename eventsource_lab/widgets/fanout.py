"""FanoutView: the bus's subscription table drawn as SVG, with live delivery counts."""

from __future__ import annotations

from collections import Counter
from typing import Any

import ipywidgets as widgets

from ..bus.base import EventBus
from ..bus.handlers import Delivery
from ._deliveries import RetryDetector
from ._html import snapshot
from ._live import LiveView, Throttle
from ._svg import FanoutGraph, draw_fanout

__all__ = ["FanoutView"]


class FanoutView(LiveView):
    """Shows who gets which events: publisher -> event types -> handlers, wildcard handlers
    in their own group, with how many events each node and edge has carried.

    Counts come from ``bus.on_delivery`` (retries of a failed handler count on its edge, not
    again on the event type); the subscription table is read on every redraw.

    Args:
        bus: any :class:`~eventsource_lab.bus.EventBus`.
        interval: at most one redraw per ``interval`` seconds while events flow.
    """

    def __init__(self, bus: EventBus, *, interval: float = 0.1, **kwargs: Any) -> None:
        self._bus = bus
        self._types: Counter[str] = Counter()
        self._edges: Counter[str] = Counter()
        self._failures: Counter[str] = Counter()
        self._retries = RetryDetector()
        self._svg = ""
        self._picture = widgets.HTML()
        super().__init__(children=[self._picture], **kwargs)
        self._throttle = Throttle(self.refresh, interval)
        self._on_close(self._throttle.cancel)
        self._watch_deliveries(bus, self._on_delivery)
        self.refresh()

    @property
    def svg(self) -> str:
        """The SVG as last drawn."""
        return self._svg

    @property
    def counts(self) -> dict[str, int]:
        """Events per type (``"OrderPlaced"``) and handler calls per edge
        (``"OrderPlaced->NotificationHandler"``, wildcards as ``"*->AuditLogger"``)."""
        return {**self._types, **self._edges}

    @property
    def failures(self) -> dict[str, int]:
        """Failed handler calls per edge, keyed like the edges in ``counts``."""
        return dict(self._failures)

    def refresh(self) -> None:
        """Read the subscription table and redraw now."""
        table = self._bus.get_subscriptions()
        wildcard = table.pop("*", [])
        graph = FanoutGraph(type(self._bus).__name__, table, wildcard, self.counts, self.failures)
        self._svg = draw_fanout(graph)
        self._picture.value = self._svg

    def snapshot_html(self) -> str:
        """The current picture as static HTML (the SVG inline)."""
        self.refresh()
        return snapshot(self._svg)

    def __repr__(self) -> str:
        return f"FanoutView({type(self._bus).__name__}, {sum(self._types.values())} events seen)"

    def _on_delivery(self, delivery: Delivery) -> None:
        """Count one dispatch (runs inside the bus: counters only, then a scheduled redraw)."""
        event_type = delivery.event.event_type
        if not self._retries.observe(delivery):
            self._types[event_type] += 1
        table = self._bus.get_subscriptions()
        wildcard = set(table.get("*", ()))
        for names, counter in ((delivery.handlers, self._edges), (delivery.failed, self._failures)):
            typed = Counter(table.get(event_type, ()))
            for name in names:
                if typed[name] > 0 or name not in wildcard:
                    typed[name] -= 1
                    counter[f"{event_type}->{name}"] += 1
                else:
                    counter[f"*->{name}"] += 1
        self._throttle.poke()
