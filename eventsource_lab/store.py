"""Event stores: append-only streams per aggregate with optimistic concurrency."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol, runtime_checkable
from uuid import UUID

from .errors import OptimisticConcurrencyError
from .events import DomainEvent

__all__ = ["EventStore", "InMemoryEventStore"]


@runtime_checkable
class EventStore(Protocol):
    """What a repository needs from a store."""

    async def append_events(
        self,
        aggregate_id: UUID,
        aggregate_type: str,
        events: Sequence[DomainEvent],
        expected_version: int,
    ) -> int:
        """Append ``events`` if the stream is at ``expected_version``; return the new version."""
        ...

    async def get_events(self, aggregate_id: UUID, from_version: int = 0) -> list[DomainEvent]:
        """The aggregate's events with ``aggregate_version > from_version``, in order."""
        ...


class InMemoryEventStore:
    """An event store in a dict: for tests, notebooks and single-process demos."""

    def __init__(self) -> None:
        self._streams: dict[UUID, list[DomainEvent]] = {}
        self._all: list[DomainEvent] = []
        self._lock = asyncio.Lock()

    async def append_events(
        self,
        aggregate_id: UUID,
        aggregate_type: str,
        events: Sequence[DomainEvent],
        expected_version: int,
    ) -> int:
        """Append all of ``events`` or none: a stale ``expected_version`` raises and writes none."""
        async with self._lock:
            stream = self._streams.get(aggregate_id, [])
            if len(stream) != expected_version:
                raise OptimisticConcurrencyError(aggregate_id, expected_version, len(stream))
            for offset, event in enumerate(events, start=1):
                if event.aggregate_id != aggregate_id:
                    raise ValueError(f"event {event.event_id} is for another aggregate")
                if event.aggregate_version != expected_version + offset:
                    raise ValueError(
                        f"event {event.event_type} has version {event.aggregate_version}, "
                        f"expected {expected_version + offset}"
                    )
            self._streams[aggregate_id] = [*stream, *events]
            self._all.extend(events)
            return expected_version + len(events)

    async def get_events(self, aggregate_id: UUID, from_version: int = 0) -> list[DomainEvent]:
        """The aggregate's events after ``from_version``, oldest first."""
        return [
            e for e in self._streams.get(aggregate_id, []) if e.aggregate_version > from_version
        ]

    async def get_all_events(self) -> list[DomainEvent]:
        """Every stored event in the order it was appended (for rebuilding projections)."""
        return list(self._all)
