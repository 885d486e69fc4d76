"""eventsource_lab: the event-sourcing core and the event-bus family, as the tutorial uses them."""

from .aggregate import AggregateRoot
from .bus import EventBus, InMemoryEventBus
from .errors import (
    AggregateNotFoundError,
    DuplicateEventTypeError,
    EventSourceLabError,
    OptimisticConcurrencyError,
    UnknownEventTypeError,
)
from .events import DomainEvent, EventRegistry, get_event_registry, register_event
from .repository import AggregateRepository, EventPublisher
from .store import EventStore, InMemoryEventStore

__all__ = [
    "AggregateNotFoundError",
    "AggregateRepository",
    "AggregateRoot",
    "DomainEvent",
    "DuplicateEventTypeError",
    "EventBus",
    "EventPublisher",
    "EventRegistry",
    "EventSourceLabError",
    "EventStore",
    "InMemoryEventBus",
    "InMemoryEventStore",
    "OptimisticConcurrencyError",
    "UnknownEventTypeError",
    "get_event_registry",
    "register_event",
]
__version__ = "0.1.0"
