"""The event-bus family: one API (:class:`EventBus`), one module per transport."""

from ..events import DomainEvent
from .base import EventBus
from .memory import InMemoryEventBus

__all__ = ["DomainEvent", "EventBus", "InMemoryEventBus"]
