"""AggregateRoot: state is the fold of events; new events wait for the repository to save."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import ClassVar, Generic, TypeVar
from uuid import UUID

from .events import DomainEvent

__all__ = ["AggregateRoot"]

S = TypeVar("S")


class AggregateRoot(ABC, Generic[S]):
    """Base for aggregates whose state is the fold of their events.

    Subclasses implement ``_get_initial_state`` and ``_apply``; command methods build an event
    with ``aggregate_version=self.get_next_version()`` and pass it to ``apply_event``. A new
    aggregate has ``version == 0`` and ``state is None``, so a guard like ``if not self.state``
    refuses commands on something that never happened; the initial state is set just before
    the first event is applied.
    """

    aggregate_type: ClassVar[str] = ""

    def __init__(self, aggregate_id: UUID) -> None:
        self.aggregate_id = aggregate_id
        self._version = 0
        self._uncommitted: list[DomainEvent] = []
        self._state: S | None = None

    @abstractmethod
    def _get_initial_state(self) -> S:
        """The state the first event is applied to (``state`` is ``None`` until then)."""

    @abstractmethod
    def _apply(self, event: DomainEvent) -> None:
        """Change ``self._state`` to reflect ``event``; never fails, never has side effects."""

    @property
    def version(self) -> int:
        """How many events this aggregate has (0 for a new one)."""
        return self._version

    @property
    def state(self) -> S | None:
        """The current state; ``None`` until the first event is applied."""
        return self._state

    @property
    def uncommitted_events(self) -> list[DomainEvent]:
        """Events applied since the last save, oldest first (a copy)."""
        return list(self._uncommitted)

    def get_next_version(self) -> int:
        """The version the next new event must carry."""
        return self._version + 1

    def apply_event(self, event: DomainEvent, is_new: bool = True) -> None:
        """Apply ``event`` to the state; keep it for the next save when ``is_new``."""
        if event.aggregate_id != self.aggregate_id:
            raise ValueError(
                f"event {event.event_type} belongs to aggregate {event.aggregate_id}, "
                f"not {self.aggregate_id}"
            )
        if event.aggregate_version != self._version + 1:
            raise ValueError(
                f"event {event.event_type} has aggregate_version {event.aggregate_version}, "
                f"expected {self._version + 1} (use get_next_version())"
            )
        if self._state is None:
            self._state = self._get_initial_state()
        self._apply(event)
        self._version = event.aggregate_version
        if is_new:
            self._uncommitted.append(event)

    def load_from_history(self, events: Iterable[DomainEvent]) -> None:
        """Rebuild state from stored events (they are not new)."""
        for event in events:
            self.apply_event(event, is_new=False)

    def mark_events_as_committed(self) -> None:
        """Forget the uncommitted events once the store has them."""
        self._uncommitted.clear()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.aggregate_id}, version={self._version})"
