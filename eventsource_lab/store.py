"""Event stores: append-only streams per aggregate with optimistic concurrency.

A store may also number every event it appends with a global position (1, 2, 3, ...) and be read
from a position on (:class:`SupportsReadAll`); an outbox relay needs that to publish what was
stored but never published. It is a separate protocol so a store for the repository alone stays
two methods.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable
from uuid import UUID

from .errors import OptimisticConcurrencyError
from .events import DomainEvent

__all__ = ["EventStore", "InMemoryEventStore", "StoredEvent", "SupportsReadAll"]


@dataclass(frozen=True)
class StoredEvent:
    """An event with its global position: the order in which the store accepted it (from 1)."""

    position: int
    event: DomainEvent


@runtime_checkable
class EventStore(Protocol):
    """What a repository needs from a store; ``read_all`` (:class:`SupportsReadAll`) is extra."""

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


@runtime_checkable
class SupportsReadAll(Protocol):
    """A store that can be read as one log in global order (what an outbox relay needs)."""

    async def read_all(self, from_position: int = 0, limit: int | None = None) -> list[StoredEvent]:
        """Up to ``limit`` events with ``position > from_position``, in position order."""
        ...


class InMemoryEventStore:
    """An event store in a dict: for tests, notebooks and single-process demos."""

    def __init__(self) -> None:
        self._streams: dict[UUID, list[DomainEvent]] = {}
        self._all: list[StoredEvent] = []
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
            self._all.extend(
                StoredEvent(position, event)
                for position, event in enumerate(events, len(self._all) + 1)
            )
            return expected_version + len(events)

    async def get_events(self, aggregate_id: UUID, from_version: int = 0) -> list[DomainEvent]:
        """The aggregate's events after ``from_version``, oldest first."""
        return [
            e for e in self._streams.get(aggregate_id, []) if e.aggregate_version > from_version
        ]

    async def get_all_events(self) -> list[DomainEvent]:
        """Every stored event in the order it was appended (for rebuilding projections)."""
        return [stored.event for stored in self._all]

    async def read_all(self, from_position: int = 0, limit: int | None = None) -> list[StoredEvent]:
        """Up to ``limit`` events after ``from_position``, oldest first: a reader's next page."""
        if from_position < 0:
            raise ValueError(f"from_position must be 0 or more, not {from_position}")
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        end = None if limit is None else from_position + limit
        return self._all[from_position:end]
