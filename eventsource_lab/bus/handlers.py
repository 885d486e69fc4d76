"""Handlers as the bus sees them: adapting what users subscribe, the subscription table, and
starting one handler as a task of its own, so its failures stay its own."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import sys
import threading
import types
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from ..events import DomainEvent, event_type_of

__all__ = [
    "Delivery",
    "Handler",
    "HandlerFailure",
    "HandlerRun",
    "Subscriber",
    "SubscriptionTable",
    "as_subscriber",
    "same_handler",
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


def same_handler(a: object, b: object) -> bool:
    """Whether two subscriptions are one: the same object, not an equal one (two projections
    with equal state are two subscribers); bound methods are made anew on every attribute
    access, so ``obj.handle`` is the same handler when bound to the same object."""
    if a is b:
        return True
    if isinstance(a, types.MethodType) and isinstance(b, types.MethodType):
        return a.__self__ is b.__self__ and a.__func__ is b.__func__
    if isinstance(a, types.BuiltinMethodType) and isinstance(b, types.BuiltinMethodType):
        return a.__self__ is b.__self__ and a.__name__ == b.__name__  # e.g. ``seen.append``
    return False


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
            if any(same_handler(s.target, subscriber.target) for s in current):
                return
            self._store(event_type, (*current, subscriber))

    def remove(self, event_type: str | None, handler: object) -> bool:
        """Remove ``handler`` for ``event_type`` (``None``: wildcard); whether it was there."""
        with self._lock:
            current = self._wildcard if event_type is None else self._typed.get(event_type, ())
            kept = tuple(s for s in current if not same_handler(s.target, handler))
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


_FATAL = (KeyboardInterrupt, SystemExit)
"""What a handler may raise to stop the program; anything else it raises is its own failure
(``CancelledError``, ``GeneratorExit`` and other ``BaseException`` subclasses included)."""


class HandlerRun:
    """The handlers of one dispatch: each async one started as a task of its own, all joined.

    Each task reports its own outcome as it ends and the last one wakes the dispatcher, so
    joining costs one loop pass after the handlers end (no done-callbacks, no ``asyncio.wait``).
    """

    __slots__ = ("_running", "_waiter", "failures", "loop", "tasks")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.tasks: list[asyncio.Task[None]] = []
        self.failures: list[tuple[int, Subscriber, BaseException]] = []
        self._running = 0
        self._waiter: asyncio.Future[None] | None = None

    def start(self, index: int, subscriber: Subscriber, event: DomainEvent) -> None:
        """Call a handler in a copy of the current context; an async one runs as a task of its
        own, so ``current_task()`` is the handler's and its timeouts and task groups cancel only
        it. On Python 3.12+ the task starts eagerly. A sync handler's error is recorded here."""
        context = contextvars.copy_context()
        try:
            result = context.run(subscriber.call, event)
        except _FATAL:
            raise
        except BaseException as exc:
            self.failures.append((index, subscriber, exc))
            return
        if result is None or not (
            type(result) is types.CoroutineType or inspect.isawaitable(result)
        ):
            return
        self._running += 1
        task = _new_task(self._run(index, subscriber, result), self.loop, context)
        if not task.done():
            self.tasks.append(task)

    async def _run(self, index: int, subscriber: Subscriber, handling: Awaitable[Any]) -> None:
        try:
            await handling
        except _FATAL:
            raise
        except BaseException as exc:
            self.failures.append((index, subscriber, exc))
        finally:
            self._running -= 1
            if not self._running and self._waiter is not None and not self._waiter.done():
                self._waiter.set_result(None)

    async def join(self) -> None:
        """Return once every handler task has ended; cancelled, it leaves them running."""
        if self._running:
            self._waiter = self.loop.create_future()
            await self._waiter


if sys.version_info >= (3, 12):

    def _new_task(
        coro: Coroutine[Any, Any, Any],
        loop: asyncio.AbstractEventLoop,
        context: contextvars.Context,
    ) -> asyncio.Task[Any]:
        """An eager task: a handler that never suspends finishes in here, with no loop trip."""
        return asyncio.Task(coro, loop=loop, context=context, eager_start=True)

elif sys.version_info >= (3, 11):

    def _new_task(
        coro: Coroutine[Any, Any, Any],
        loop: asyncio.AbstractEventLoop,
        context: contextvars.Context,
    ) -> asyncio.Task[Any]:
        """A task in ``context``; its first step runs on the loop's next iteration."""
        return loop.create_task(coro, context=context)

else:

    def _new_task(
        coro: Coroutine[Any, Any, Any],
        loop: asyncio.AbstractEventLoop,
        context: contextvars.Context,
    ) -> asyncio.Task[Any]:
        """A task in (a copy of) ``context``: 3.10's ``create_task`` takes no ``context``."""
        return context.run(loop.create_task, coro)
