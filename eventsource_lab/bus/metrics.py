"""Bus metrics through OpenTelemetry: real instruments when the API is installed, no-ops if not.

A bus makes one :class:`BusMetrics` and calls :meth:`~BusMetrics.add` and
:meth:`~BusMetrics.record` on its hot paths; with metrics off (or ``opentelemetry-api``
missing) those calls return at once. Exporting is the application's business: configure an
OpenTelemetry SDK ``MeterProvider`` globally, or pass one in.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

__all__ = ["COUNTERS", "DURATIONS", "BusMetrics"]

logger = logging.getLogger("eventsource_lab.bus.metrics")

COUNTERS = {
    "published": "events handed to the broker",
    "consumed": "messages received from the broker",
    "processed": "events every handler succeeded on",
    "failed": "events that failed (handlers kept failing, or the message was unreadable)",
    "dead_lettered": "messages moved to the dead-letter queue",
}
DURATIONS = {
    "handler": "time spent handling one event, retries included",
    "publish": "time to hand one batch of events to the broker",
}


class BusMetrics:
    """Counters ``eventsource_lab.bus.<name>`` and histograms
    ``eventsource_lab.bus.<name>.duration`` (seconds), all with the bus's attributes."""

    def __init__(
        self,
        attributes: Mapping[str, str],
        *,
        enabled: bool = True,
        meter_provider: Any = None,
    ) -> None:
        self.attributes = dict(attributes)
        self._counters: dict[str, Any] = {}
        self._histograms: dict[str, Any] = {}
        meter = _meter(meter_provider) if enabled else None
        if meter is None:
            return
        for name, description in COUNTERS.items():
            self._counters[name] = meter.create_counter(
                f"eventsource_lab.bus.{name}", unit="{event}", description=description
            )
        for name, description in DURATIONS.items():
            self._histograms[name] = meter.create_histogram(
                f"eventsource_lab.bus.{name}.duration", unit="s", description=description
            )

    @property
    def enabled(self) -> bool:
        """Whether measurements go anywhere."""
        return bool(self._counters)

    def add(self, name: str, amount: int = 1) -> None:
        """Add ``amount`` to the counter ``name`` (one of :data:`COUNTERS`)."""
        if self._counters:
            self._counters[name].add(amount, self.attributes)

    def record(self, name: str, seconds: float) -> None:
        """Record one duration for ``name`` (one of :data:`DURATIONS`)."""
        if self._histograms:
            self._histograms[name].record(seconds, self.attributes)


def _meter(meter_provider: Any) -> Any:
    """A meter from ``meter_provider`` (default: the global one), or None without the API."""
    try:
        from opentelemetry import metrics
    except ImportError:
        logger.warning("metrics are on but opentelemetry-api is not installed: recording nothing")
        return None
    return metrics.get_meter("eventsource_lab", meter_provider=meter_provider)
