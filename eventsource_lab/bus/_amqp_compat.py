"""Let pamqp read every content header: short strings that are no UTF-8, dates past 9999.

pamqp 4.0.1 (under aiormq and aio-pika) raises while it unmarshals a frame that holds a short
string (a property such as ``type`` or ``message_id``, or a header name) that is not UTF-8, or
a timestamp past the year 9999. aiormq then drops the whole connection, publishing channel
included; the robust connection reconnects, the broker delivers the same message again, and
so on forever: one message from a broken producer stops a consumer and the bus never sees it.
pika traps these (pika PR #890), so does py-amqp, and pamqp itself did for long strings (pamqp
PR #40: it returns the bytes). :func:`install` does the same for the rest, in place:

- a short string that is no UTF-8 decodes with ``surrogateescape``: still a ``str``, as
  aio-pika expects of its properties (it would turn bytes into the text ``"b'...'"``), and
  ``.encode("utf-8", "surrogateescape")`` gives back the bytes sent. pamqp's encoder refuses
  such a string, so whoever sends a copy of the message on must clean it first;
- a timestamp no ``datetime`` holds decodes as :class:`UnreadableTimestamp`, ``datetime.max``
  with the integer sent in ``raw`` (aio-pika accepts a ``datetime`` only).

:func:`unreadable_properties` names what a message received so carries, :func:`text` and
:func:`escaped` make such values fit to send on or to show.
"""

from __future__ import annotations

import datetime
import struct
from collections.abc import Callable

from aio_pika.abc import AbstractMessage
from pamqp import common, decode

__all__ = ["UnreadableTimestamp", "escaped", "install", "text", "unreadable_properties"]

# Every AMQP short-string property of a received message (cluster_id is always empty).
_TEXT_PROPERTIES = ("type", "message_id", "content_type", "content_encoding", "correlation_id")
_TEXT_PROPERTIES += ("reply_to", "user_id", "app_id")


class UnreadableTimestamp(datetime.datetime):
    """A timestamp past what ``datetime`` holds: read as ``datetime.max`` (UTC), the integer
    that was sent in ``raw``."""

    raw: int

    @classmethod
    def of(cls, raw: int) -> UnreadableTimestamp:
        stamp = cls.combine(cls.max.date(), cls.max.time(), datetime.UTC)
        stamp.raw = raw
        return stamp


def _tolerant_short_str(
    strict: Callable[[bytes], tuple[int, str]],
) -> Callable[[bytes], tuple[int, str]]:
    def short_str(value: bytes) -> tuple[int, str]:
        """pamqp's ``short_str``, but bytes that are no UTF-8 come back surrogate-escaped."""
        try:
            return strict(value)
        except UnicodeDecodeError:
            length = value[0]
            return length + 1, value[1 : length + 1].decode("utf-8", "surrogateescape")

    return short_str


def _tolerant_timestamp(
    strict: Callable[[bytes], tuple[int, datetime.datetime]],
) -> Callable[[bytes], tuple[int, datetime.datetime]]:
    def timestamp(value: bytes) -> tuple[int, datetime.datetime]:
        """pamqp's ``timestamp``, but one past what ``datetime`` holds is an
        :class:`UnreadableTimestamp`."""
        try:
            return strict(value)
        except (OverflowError, OSError, ValueError):
            if len(value) < 8:
                raise  # a truncated frame: not ours to excuse
            return 8, UnreadableTimestamp.of(common.Struct.timestamp.unpack(value[:8])[0])

    return timestamp


def field_table(value: bytes) -> tuple[int, common.FieldTable]:
    """pamqp's ``field_table``, but a key that is no UTF-8 comes back surrogate-escaped."""
    try:
        length = common.Struct.integer.unpack(value[0:4])[0]
        offset, end = 4, 4 + length
        if end > len(value):
            raise ValueError("Field table length exceeds available data")
        data: common.FieldTable = {}
        while offset < end:
            key_length = common.Struct.byte.unpack_from(value, offset)[0]
            offset += 1
            if offset + key_length > end:
                raise ValueError("Field table key length exceeds data")
            key = value[offset : offset + key_length].decode("utf-8", "surrogateescape")
            offset += key_length
            consumed, data[key] = decode.embedded_value(value[offset:])
            offset += consumed
        return end, data
    except (struct.error, TypeError) as err:
        raise ValueError("Could not unpack data") from err


def install() -> None:
    """Put the tolerant decoders in the tables pamqp looks decoders up in (by AMQP type for
    properties and method arguments, by tag inside header tables); later calls do nothing."""
    if decode.METHODS["table"] is field_table:
        return
    decode.METHODS["shortstr"] = _tolerant_short_str(decode.short_str)
    decode.METHODS["timestamp"] = decode.TABLE_MAPPING[b"T"] = _tolerant_timestamp(decode.timestamp)
    decode.METHODS["table"] = decode.TABLE_MAPPING[b"F"] = field_table


def text(value: str | None) -> str | None:
    """``value`` if it can be sent as an AMQP short string (UTF-8), else ``None``."""
    if value is not None:
        try:
            value.encode()
        except UnicodeEncodeError:
            return None
    return value


def escaped(value: str) -> str:
    """``value`` as printable text: the bytes in it that are no UTF-8 as escapes (``\\xff``)."""
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def unreadable_properties(message: AbstractMessage) -> list[str]:
    """``name=value`` for each property of ``message`` that pamqp could only read
    tolerantly: strings that are no UTF-8 (escaped) and timestamps past 9999 (the integer)."""
    found = [
        f"{name}={escaped(value)}"
        for name in _TEXT_PROPERTIES
        if (value := getattr(message, name)) is not None and text(value) is None
    ]
    if isinstance(message.timestamp, UnreadableTimestamp):
        found.append(f"timestamp={message.timestamp.raw}")
    return found
