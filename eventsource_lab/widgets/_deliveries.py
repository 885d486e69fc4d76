"""Telling a broker bus's retry of an event from a new delivery, from ``Delivery`` alone."""

from __future__ import annotations

from collections import OrderedDict
from uuid import UUID

from ..bus.handlers import Delivery

__all__ = ["RetryDetector"]


class RetryDetector:
    """Remembers which handlers last failed on each recent event.

    A broker bus retries only the handlers that failed, so a delivery of an event already seen,
    to a subset of the handlers that just failed on it, is a retry; anything else (a first
    delivery, a DLQ replay to every handler) is new.
    """

    def __init__(self, memory: int = 1000) -> None:
        self._memory = memory
        self._failed: OrderedDict[UUID, frozenset[str]] = OrderedDict()

    def observe(self, delivery: Delivery) -> bool:
        """Record ``delivery``; whether it was a retry."""
        event_id = delivery.event.event_id
        previous = self._failed.pop(event_id, None)
        retry = bool(previous and delivery.handlers) and set(delivery.handlers) <= previous
        if delivery.failed:
            self._failed[event_id] = frozenset(delivery.failed)
            while len(self._failed) > self._memory:
                self._failed.popitem(last=False)
        return retry
