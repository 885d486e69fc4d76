"""A robust AMQP connection over several RabbitMQ nodes: it connects to the first that answers
and, when that one goes away, reconnects to the next (round robin).

aio-pika's ``RobustConnection`` recovers channels, exchanges, queues, bindings and consumers
after a reconnect, but only ever to its one URL, so a consumer of a cluster whose node stopped
would wait for that node. aio-pika calls ``_on_connection_close`` after every failed connection
attempt and every lost connection, before it tries again; :class:`FailoverConnection` moves to
the next URL there and leaves the recovery to aio-pika.

Several URLs are written comma-separated (``amqp://u:p@h1:5672/,amqp://u:p@h2:5672/``) or as a
list. Every error and log line shows them without their passwords.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Sequence
from typing import Any

from aio_pika import RobustConnection
from aio_pika.abc import AbstractRobustChannel
from aio_pika.exceptions import AMQPError, ChannelInvalidStateError
from yarl import URL

from ..errors import BusConnectionError
from ..redact import redact_text, redact_url

__all__ = ["FailoverConnection", "connect", "redact_urls", "renew_channel", "split_urls"]

_SCHEMES = frozenset({"amqp", "amqps"})
_FAILED = (AMQPError, ConnectionError, OSError, RuntimeError, asyncio.TimeoutError)
# A comma that starts the next URL; any other comma (in a password, say) belongs to its URL.
_NEXT_URL = re.compile(r",(?=\s*[a-zA-Z][a-zA-Z0-9+.-]*://)")


def split_urls(value: str | Sequence[str]) -> list[str]:
    """The URLs in ``value`` (comma-separated text or a sequence), stripped, each checked to be
    ``amqp://`` or ``amqps://`` with a host; raises ``ValueError`` (passwords left out).

    Text is split only where a comma starts the next URL, so a password may hold a comma; an
    empty entry (a comma at either end, or two in a row) is refused."""
    parts = _NEXT_URL.split(value) if isinstance(value, str) else list(value)
    urls = [
        part.strip()
        for part in parts
        if isinstance(part, str) and part.strip() and not part.strip().endswith(",")
    ]
    if not urls or len(urls) != len(parts):
        raise ValueError(
            "give one or more AMQP URLs, comma-separated or as a list of strings, "
            f"e.g. amqp://user:password@host:5672/ (got {len(urls)} of {len(parts)} usable)"
        )
    for number, url in enumerate(urls, 1):
        try:
            parsed = URL(url)
            valid = parsed.scheme in _SCHEMES and bool(parsed.host)
        except ValueError:  # yarl refuses a port that is no number or out of range
            valid = False
        if not valid:  # shown only when it has a scheme, as only then can its password go
            shown = f": {redact_url(url)!r}" if "://" in url else ""
            raise ValueError(
                f"URL {number} of {len(urls)} is not amqp:// or amqps:// with a host{shown}"
            )
    return urls


def redact_urls(urls: Sequence[str | URL]) -> str:
    """``urls`` comma-separated, each without its password."""
    return ",".join(redact_url(str(url)) for url in urls)


class FailoverConnection(RobustConnection):
    """A ``RobustConnection`` that tries the next of its URLs after every failed attempt and
    every lost connection (round robin), so it reconnects to whichever node answers."""

    def __init__(
        self,
        urls: Sequence[str],
        start: int = 0,
        query: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self.urls = list(urls)
        self._full = [URL(url).update_query(query or {}) for url in self.urls]
        self._current = start
        super().__init__(self._full[start], **kwargs)

    @property
    def current_url(self) -> str:
        """The URL (as given, password included) this connection uses or tries next."""
        return self.urls[self._current]

    async def _on_connection_close(self, closing: asyncio.Future[Any]) -> None:
        if not (self._close_called or self.is_closed):
            self._current = (self._current + 1) % len(self.urls)
            self.url = self._full[self._current]
        await super()._on_connection_close(closing)

    def __str__(self) -> str:
        """All the URLs without passwords: aio-pika logs this after a failed attempt, by which
        time the connection has already moved on to the next URL."""
        return redact_urls(self.urls)


async def connect(urls: Sequence[str], *, timeout: float, **options: Any) -> FailoverConnection:
    """Connect to the first of ``urls`` that answers, each tried once in order.

    ``options`` (``heartbeat``, ``reconnect_interval``, ``client_properties``) apply to every
    URL. Raises ``BusConnectionError`` naming every URL, without passwords, and why each failed.
    """
    client_properties = options.pop("client_properties", None)
    query = {key: value for key, value in options.items() if value is not None}
    reasons, error = [], None
    for start, url in enumerate(urls):
        connection = FailoverConnection(urls, start, query, client_properties=client_properties)
        try:
            await connection.connect(timeout=timeout)
        except _FAILED as exc:
            await connection.close()
            reason = redact_text(str(exc).replace(url, redact_url(url))) or type(exc).__name__
            reasons.append(f"{redact_url(url)}: {reason}")
            error = exc
            continue
        except BaseException:  # cancelled (publish_timeout): leave no connection reconnecting
            await connection.close()
            raise
        return connection
    raise BusConnectionError(f"cannot reach RabbitMQ at {'; '.join(reasons)}") from error


async def renew_channel(channel: AbstractRobustChannel) -> None:
    """Have the robust ``channel`` replace its AMQP channel with a new one.

    RabbitMQ 3.10 may nack every publish to a quorum queue on a channel that first sent to it
    while the leader's node was stopping, long after a new leader took over; a new channel is
    not affected. Closing the AMQP channel with an error (not a cancellation) makes aio-pika
    open and restore another at once."""
    with contextlib.suppress(*_FAILED):
        underlay = await channel.get_underlay_channel()
        await underlay.close(ChannelInvalidStateError("replaced after a nack"))
