"""AggregateRepository: load aggregates from a store, save their new events, then publish them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Generic, Protocol, TypeVar, runtime_checkable
from uuid import UUID

from .aggregate import AggregateRoot
from .errors import AggregateNotFoundError, EventsNotPublishedError
from .events import DomainEvent
from .store import EventStore

__all__ = ["AggregateRepository", "EventPublisher", "EventsNotPublishedError"]

A = TypeVar("A", bound=AggregateRoot)


@runtime_checkable
class EventPublisher(Protocol):
    """Anything events can be handed to after they are stored; every event bus is one.

    ``publish(events)`` is all a publisher needs. One that also takes ``background=True`` (every
    bus, and :class:`~eventsource_lab.relay.OutboxRelay`) can serve ``publish_in_background``.
    """

    async def publish(self, events: Sequence[DomainEvent]) -> None: ...


class AggregateRepository(Generic[A]):
    """Loads and saves one type of aggregate.

    Args:
        event_store: where events are persisted.
        aggregate_factory: builds an empty aggregate from an id (usually the aggregate class).
        aggregate_type: the name stored with the events.
        event_publisher: optional; receives the events after they are stored. An event bus
            publishes them at once; an :class:`~eventsource_lab.relay.OutboxRelay` publishes
            everything stored and not yet published, so a failed publish is retried later.
        publish_in_background: hand events to the publisher with ``background=True``, so
            ``save`` returns without waiting for handlers (the publisher must accept it).
    """

    def __init__(
        self,
        event_store: EventStore,
        aggregate_factory: Callable[[UUID], A],
        aggregate_type: str,
        event_publisher: EventPublisher | None = None,
        publish_in_background: bool = False,
    ) -> None:
        self.event_store = event_store
        self.aggregate_factory = aggregate_factory
        self.aggregate_type = aggregate_type
        self.event_publisher = event_publisher
        self.publish_in_background = publish_in_background

    def create_new(self, aggregate_id: UUID) -> A:
        """A fresh aggregate at version 0; nothing is stored until ``save``."""
        return self.aggregate_factory(aggregate_id)

    async def load(self, aggregate_id: UUID) -> A:
        """Rebuild the aggregate from its events; :class:`AggregateNotFoundError` if it has none."""
        events = await self.event_store.get_events(aggregate_id)
        if not events:
            raise AggregateNotFoundError(aggregate_id, self.aggregate_type)
        aggregate = self.aggregate_factory(aggregate_id)
        aggregate.load_from_history(events)
        return aggregate

    async def exists(self, aggregate_id: UUID) -> bool:
        """Whether the store has any event for ``aggregate_id``."""
        return bool(await self.event_store.get_events(aggregate_id))

    async def save(self, aggregate: A) -> None:
        """Persist the new events, mark them committed, then publish them.

        Publishing comes last so nothing is published that was not stored. If the store refuses
        (a concurrent save), nothing is published and the aggregate keeps its new events. If
        publishing fails, the events stay stored and committed and :class:`EventsNotPublishedError`
        says so: two writes (store, then broker) cannot be one transaction.
        """
        events = aggregate.uncommitted_events
        if not events:
            return
        expected_version = aggregate.version - len(events)
        await self.event_store.append_events(
            aggregate.aggregate_id, self.aggregate_type, events, expected_version
        )
        aggregate.mark_events_as_committed()
        if self.event_publisher is None:
            return
        try:
            if self.publish_in_background:
                await self.event_publisher.publish(events, background=True)  # type: ignore[call-arg]
            else:
                await self.event_publisher.publish(events)
        except Exception as error:
            raise EventsNotPublishedError(
                aggregate.aggregate_id, self.aggregate_type, events
            ) from error
