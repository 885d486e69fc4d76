"""Handlers as the bus sees them: adapting what users subscribe, the subscription table, and
running one handler so its failures stay its own."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import threading
import types
from collections.abc import Awaitable, Callable, Coroutine, Generator
from dataclasses import dataclass
from typing import Any

from ..events import DomainEvent, event_type_of

__all__ = [
    "Delivery",
    "Handler",
    "HandlerFailure",
    "Subscriber",
    "SubscriptionTable",
    "as_subscriber",
    "subscription_key",
]

Handler = Callable[[DomainEvent], Awaitable[None] | None] | Any
"""A sync or async function of one event, or an object with a sync or async ``handle(event)``."""


@dataclass(frozen=True)
class Subscriber:
    """A handler as the bus calls it (``call(event)``) and what the user subscribed (``target``)."""

    target: object
    call: Callable[[DomainEvent], Any]
    name: str


def as_subscriber(handler: Handler) -> Subscriber:
    """Adapt a function or an object with ``handle()``; anything else is a ``TypeError`` now."""
    if isinstance(handler, type):
        raise TypeError(
            f"got the class {handler.__name__}; subscribe an instance of it: {handler.__name__}()"
        )
    handle = getattr(handler, "handle", None)
    if callable(handle):
        return Subscriber(handler, handle, type(handler).__name__)
    if callable(handler):
        name = getattr(handler, "__qualname__", None) or type(handler).__name__
        return Subscriber(handler, handler, name)
    raise TypeError(
        f"a handler must be a function taking an event or an object with a handle(event) "
        f"method; got {type(handler).__name__}: {handler!r:.80}"
    )


@dataclass(frozen=True)
class HandlerFailure:
    """One handler call that raised."""

    subscriber: Subscriber
    error: BaseException

    @property
    def handler(self) -> str:
        """The failing handler's name."""
        return self.subscriber.name


@dataclass(frozen=True)
class Delivery:
    """One dispatch of an event: which handlers it reached and which of them raised."""

    event: DomainEvent
    handlers: tuple[str, ...]
    failed: tuple[str, ...]


class SubscriptionTable:
    """Handlers by ``event_type`` plus wildcard handlers; safe to change from any thread.

    Entries are tuples replaced under a lock, so dispatch reads them without locking.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._typed: dict[str, tuple[Subscriber, ...]] = {}
        self._wildcard: tuple[Subscriber, ...] = ()

    def add(self, event_type: str | None, subscriber: Subscriber) -> None:
        """Add ``subscriber`` for ``event_type`` (``None``: every type); once only."""
        with self._lock:
            current = self._wildcard if event_type is None else self._typed.get(event_type, ())
            if any(s.target == subscriber.target for s in current):
                return
            self._store(event_type, (*current, subscriber))

    def remove(self, event_type: str | None, handler: object) -> bool:
        """Remove ``handler`` for ``event_type`` (``None``: wildcard); whether it was there."""
        with self._lock:
            current = self._wildcard if event_type is None else self._typed.get(event_type, ())
            kept = tuple(s for s in current if s.target != handler)
            self._store(event_type, kept)
            return len(kept) != len(current)

    def _store(self, event_type: str | None, subscribers: tuple[Subscriber, ...]) -> None:
        if event_type is None:
            self._wildcard = subscribers
        elif subscribers:
            self._typed[event_type] = subscribers
        else:
            self._typed.pop(event_type, None)

    def route(self, event_type: str) -> tuple[Subscriber, ...]:
        """Everyone who gets an event of ``event_type``: typed subscribers, then wildcards."""
        return self._typed.get(event_type, ()) + self._wildcard

    def typed(self) -> dict[str, tuple[Subscriber, ...]]:
        """A snapshot of the typed subscriptions."""
        return dict(self._typed)

    def wildcard(self) -> tuple[Subscriber, ...]:
        """A snapshot of the wildcard subscribers."""
        return self._wildcard

    def clear(self) -> None:
        """Remove every subscription."""
        with self._lock:
            self._typed = {}
            self._wildcard = ()


def subscription_key(event_type: type[DomainEvent]) -> str:
    """The ``event_type`` string a class is subscribed under; refuses ``DomainEvent`` itself."""
    if event_type is DomainEvent:
        raise TypeError(
            "subscribe to a DomainEvent subclass; for every event use subscribe_to_all_events()"
        )
    return event_type_of(event_type)


def _start(call: Callable[[DomainEvent], Any], event: DomainEvent) -> asyncio.Future[Any] | None:
    """Call a handler in a copy of the current context and run it up to its first suspension.

    Returns ``None`` when it already finished, else a task that finishes it (like an eager task).
    """
    context = contextvars.copy_context()
    result = context.run(call, event)
    if result is None:
        return None
    if isinstance(result, Coroutine):
        try:
            yielded = context.run(result.send, None)
        except StopIteration:
            return None
        return context.run(asyncio.ensure_future, _finish(result, yielded))
    if inspect.isawaitable(result):
        return context.run(asyncio.ensure_future, result)
    return None


async def _finish(coro: Coroutine[Any, Any, Any], yielded: object) -> Any:
    return await _delegate(coro, yielded)


@types.coroutine
def _delegate(coro: Coroutine[Any, Any, Any], yielded: object) -> Generator[Any, Any, Any]:
    """``yield from`` for a coroutine whose first step already ran and yielded ``yielded``."""
    while True:
        try:
            sent = yield yielded
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:
            try:
                yielded = coro.throw(exc)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                yielded = coro.send(sent)
            except StopIteration as stop:
                return stop.value
