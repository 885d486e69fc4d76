"""eventsource_lab: the event-sourcing core and the event-bus family, as the tutorial uses them.

Errors live in :mod:`eventsource_lab.errors`; broker buses in :mod:`eventsource_lab.bus`.
"""

from .aggregate import AggregateRoot
from .bus import EventBus, InMemoryEventBus
from .events import DomainEvent, EventRegistry, get_event_registry, register_event
from .repository import AggregateRepository
from .store import InMemoryEventStore

__all__ = [
    "AggregateRepository",
    "AggregateRoot",
    "DomainEvent",
    "EventBus",
    "EventRegistry",
    "InMemoryEventBus",
    "InMemoryEventStore",
    "get_event_registry",
    "register_event",
]
__version__ = "0.1.0"
