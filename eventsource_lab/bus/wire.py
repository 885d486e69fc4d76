"""Events to bytes and back: JSON on the wire, classes found through the event registry.

No pickle, no eval: a message can only become an instance of a class that was registered with
``@register_event``. Every broker bus encodes and decodes here, so one event looks the same on
Redis, RabbitMQ and Kafka.
"""

from __future__ import annotations

from pydantic import ValidationError
from pydantic_core import from_json

from ..errors import EventSourceLabError, UnknownEventTypeError
from ..events import DomainEvent, EventRegistry

__all__ = ["CONTENT_TYPE", "DecodeError", "MalformedMessageError", "decode", "encode"]

CONTENT_TYPE = "application/json"


class MalformedMessageError(EventSourceLabError, ValueError):
    """The bytes are no valid event: not JSON, no ``event_type``, or fields that fail validation."""


DecodeError = (MalformedMessageError, UnknownEventTypeError)
"""Everything ``decode`` raises for a bad message: ``except DecodeError:`` in the buses."""


def encode(event: DomainEvent) -> bytes:
    """The event as UTF-8 JSON, ``event_type`` included."""
    return event.__pydantic_serializer__.to_json(event)  # model_dump_json(), as bytes


def decode(data: bytes, registry: EventRegistry, event_type: str | None = None) -> DomainEvent:
    """Rebuild the event in ``data``.

    ``event_type`` is the type the transport carried beside the body (a header or field); when
    given it saves parsing twice. Raises :class:`UnknownEventTypeError` for a type nobody
    registered and :class:`MalformedMessageError` for anything else wrong, whatever the bytes
    (deeply nested JSON that exhausts the parser's recursion included): nothing else escapes.
    """
    try:
        return _decode(data, registry, event_type)
    except DecodeError:
        raise
    except Exception as exc:
        raise MalformedMessageError(
            f"message cannot be decoded ({type(exc).__name__}): {_preview(data)}"
        ) from exc


def _decode(data: bytes, registry: EventRegistry, event_type: str | None) -> DomainEvent:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise MalformedMessageError(f"message body is {type(data).__name__}, not bytes")
    if event_type is None:
        event_type = _peek_event_type(data)
    event_class = registry.get(event_type)  # raises UnknownEventTypeError
    try:  # model_validate_json() without its Python wrapper, a sixth of a decode
        event = event_class.__pydantic_validator__.validate_json(data)
    except ValidationError as exc:
        raise MalformedMessageError(
            f"message does not validate as {event_type}: {_first_error(exc)}"
        ) from exc
    if event.event_type != event_type:
        raise MalformedMessageError(
            f"message says event_type {event.event_type!r} but travelled as {event_type!r}"
        )
    return event


def _peek_event_type(data: bytes) -> str:
    # pydantic's Rust parser, like model_validate_json: deep nesting is a ValueError at its
    # depth limit, never a RecursionError in the interpreter (which can upset CPython 3.11's
    # compiler for the rest of the process).
    try:
        body = from_json(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedMessageError(f"message is not JSON: {_preview(data)}") from exc
    event_type = body.get("event_type") if isinstance(body, dict) else None
    if not isinstance(event_type, str) or not event_type:
        raise MalformedMessageError(f"message has no event_type: {_preview(data)}")
    return event_type


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    location = ".".join(str(part) for part in error["loc"]) or "body"
    return f"{location}: {error['msg']} ({exc.error_count()} error(s))"


def _preview(data: bytes, limit: int = 60) -> str:
    text = repr(data[:limit])
    return text + ("…" if len(data) > limit else "")
