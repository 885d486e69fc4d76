"""The error family: every error the library raises on purpose derives from EventSourceLabError."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING
from uuid import UUID

if TYPE_CHECKING:
    from .events import DomainEvent

__all__ = [
    "AggregateNotFoundError",
    "BrokerError",
    "BrokerUnavailableError",
    "BusConnectionError",
    "BusError",
    "DuplicateEventTypeError",
    "EventSourceLabError",
    "EventsNotPublishedError",
    "OptimisticConcurrencyError",
    "UnknownEventTypeError",
]


class EventSourceLabError(Exception):
    """Root of the library's errors, so callers can catch them all in one place."""


class DuplicateEventTypeError(EventSourceLabError, ValueError):
    """Two different classes claimed the same ``event_type`` in one registry."""


class UnknownEventTypeError(EventSourceLabError, KeyError):
    """An ``event_type`` string has no class registered for it."""

    def __init__(self, event_type: str, known: list[str]) -> None:
        self.event_type = event_type
        shown = ", ".join(sorted(known)[:10]) or "none"
        super().__init__(
            f"no event class registered for event_type {event_type!r} "
            f"(registered: {shown}); decorate the class with @register_event"
        )

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0])


class OptimisticConcurrencyError(EventSourceLabError):
    """A save was based on a stale aggregate version; nothing was written."""

    def __init__(self, aggregate_id: UUID, expected_version: int, actual_version: int) -> None:
        self.aggregate_id = aggregate_id
        self.expected_version = expected_version
        self.actual_version = actual_version
        super().__init__(
            f"aggregate {aggregate_id} is at version {actual_version}, but the save expected "
            f"version {expected_version}: someone else saved first. Reload and retry."
        )


class AggregateNotFoundError(EventSourceLabError, LookupError):
    """``load`` was asked for an aggregate that has no events."""

    def __init__(self, aggregate_id: UUID, aggregate_type: str) -> None:
        self.aggregate_id = aggregate_id
        self.aggregate_type = aggregate_type
        super().__init__(f"no {aggregate_type or 'aggregate'} with id {aggregate_id} in the store")


class BusError(EventSourceLabError):
    """A bus could not do what was asked of it."""


class BusConnectionError(BusError, ConnectionError):
    """A broker bus cannot reach its broker (wrong URL, broker down, connection lost)."""


class BrokerError(EventSourceLabError):
    """The broker launcher could not do what was asked (start, restart) of a broker."""


class BrokerUnavailableError(BrokerError):
    """No broker of the asked kind could be had; the message says why and how to get one."""

    def __init__(self, kind: str, reasons: Sequence[str], remedy: str = "") -> None:
        self.kind = kind
        self.reasons = list(reasons)
        lines = [f"no {kind} broker could be had:", *(f"  - {r}" for r in self.reasons)]
        super().__init__("\n".join([*lines, remedy] if remedy else lines))


class EventsNotPublishedError(EventSourceLabError):
    """``save`` stored the events but publishing them failed: the dual-write gap, made visible.

    The events are committed (the aggregate no longer holds them) and no consumer has seen them
    from this save; an :class:`~eventsource_lab.relay.OutboxRelay` over the store publishes them.
    """

    def __init__(
        self, aggregate_id: UUID, aggregate_type: str, events: Sequence[DomainEvent]
    ) -> None:
        self.aggregate_id = aggregate_id
        self.aggregate_type = aggregate_type
        self.events = list(events)
        super().__init__(
            f"{len(self.events)} event(s) of {aggregate_type} {aggregate_id} were stored but "
            f"could not be published (see the cause); they are safe in the store, and an "
            f"OutboxRelay over the store publishes them: eventsource_lab.relay"
        )
