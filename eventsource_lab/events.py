"""Domain events and the registry that maps ``event_type`` strings back to their classes."""

from __future__ import annotations

import threading
from datetime import datetime, timezone
from typing import TypeVar
from uuid import UUID, uuid4

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .errors import DuplicateEventTypeError, UnknownEventTypeError

__all__ = [
    "DomainEvent",
    "EventRegistry",
    "event_type_of",
    "get_event_registry",
    "register_event",
]


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class DomainEvent(BaseModel):
    """An immutable fact about one aggregate; subclasses add the payload fields.

    ``event_type`` defaults to the class name, so a subclass only sets it to choose another name.
    """

    # NaN and infinities travel as JSON5-style constants that decode back, not as a lossy null.
    model_config = ConfigDict(frozen=True, ser_json_inf_nan="constants")

    event_id: UUID = Field(default_factory=uuid4)
    event_type: str = Field(default="", validate_default=True)
    aggregate_id: UUID
    aggregate_type: str = ""
    aggregate_version: int = Field(default=1, ge=1)
    occurred_at: datetime = Field(default_factory=_utcnow)

    @field_validator("event_type")
    @classmethod
    def _default_event_type(cls, value: str) -> str:
        return value or cls.__name__


E = TypeVar("E", bound=type[DomainEvent])


def event_type_of(event_class: type[DomainEvent]) -> str:
    """The ``event_type`` string that instances of ``event_class`` carry by default."""
    if not (isinstance(event_class, type) and issubclass(event_class, DomainEvent)):
        raise TypeError(f"expected a DomainEvent subclass, got {event_class!r}")
    return event_class.model_fields["event_type"].default or event_class.__name__


class EventRegistry:
    """Maps ``event_type`` to event class, so bytes from a broker become typed events again."""

    def __init__(self) -> None:
        self._classes: dict[str, type[DomainEvent]] = {}
        self._lock = threading.Lock()

    def register(self, event_class: E) -> E:
        """Register ``event_class`` under its ``event_type`` and return it (so it is a decorator).

        Registering the same class again is a no-op. A class redefined in the same module under the
        same name (re-running a notebook cell) replaces the old one. Any other class claiming a
        taken ``event_type`` raises :class:`DuplicateEventTypeError`.
        """
        event_type = event_type_of(event_class)
        with self._lock:
            current = self._classes.get(event_type)
            if (
                current is not None
                and current is not event_class
                and not _same_definition(current, event_class)
            ):
                raise DuplicateEventTypeError(
                    f"event_type {event_type!r} is already registered to "
                    f"{_qualified(current)}; cannot also register {_qualified(event_class)}. "
                    f"Give one of them another event_type."
                )
            self._classes[event_type] = event_class
        return event_class

    def get(self, event_type: str) -> type[DomainEvent]:
        """The class for ``event_type``; raises :class:`UnknownEventTypeError` if none."""
        try:
            return self._classes[event_type]
        except KeyError:
            raise UnknownEventTypeError(event_type, list(self._classes)) from None

    def event_types(self) -> list[str]:
        """Every registered ``event_type``, sorted."""
        return sorted(self._classes)

    def __contains__(self, event_type: object) -> bool:
        return event_type in self._classes

    def __len__(self) -> int:
        return len(self._classes)

    def __bool__(self) -> bool:
        """Always true: an empty registry is still one the caller chose, often to fill later.

        Without this, ``__len__`` makes an empty registry falsy and ``registry or default``
        silently swaps it for another; ask ``len(registry)`` whether it holds any classes.
        """
        return True


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _same_definition(a: type, b: type) -> bool:
    return _qualified(a) == _qualified(b)


_default_registry = EventRegistry()


def get_event_registry() -> EventRegistry:
    """The process-wide registry that ``@register_event`` fills."""
    return _default_registry


def register_event(event_class: E) -> E:
    """Class decorator: register a :class:`DomainEvent` subclass in the default registry."""
    return _default_registry.register(event_class)
