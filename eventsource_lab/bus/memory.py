"""InMemoryEventBus: events go straight to this process's handlers."""

from __future__ import annotations

from ..events import DomainEvent
from .base import EventBus

__all__ = ["InMemoryEventBus"]


class InMemoryEventBus(EventBus):
    """Delivers each event to its handlers in the publisher's event loop; for one process,
    development and tests. Handlers of one event run concurrently, events one after another."""

    async def _publish(self, events: list[DomainEvent]) -> None:
        for event in events:
            self._stats["events_published"] += 1
            await self._dispatch(event)
