"""What every bus shares: handler adaptation, the subscription table, dispatch, stats, lifecycle.

A concrete bus implements only ``_publish`` (where events go) and, for brokers, ``_connect`` and
``_disconnect``. Delivery to local handlers always goes through :meth:`EventBus._dispatch`, so
every bus runs handlers with the same concurrency and error isolation.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import os
import random
import socket
import threading
import types
import uuid
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Coroutine, Generator, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..events import DomainEvent, EventRegistry, event_type_of, get_event_registry
from . import wire

__all__ = [
    "BACKLOG_DLQ_LIMIT",
    "RECONNECT",
    "BrokerBusConfig",
    "BrokerEventBus",
    "DeadLetter",
    "Delivery",
    "EventBus",
    "HandlerFailure",
    "RetryPolicy",
    "Subscriber",
    "as_subscriber",
    "redact_url",
    "subscription_key",
]

logger = logging.getLogger("eventsource_lab.bus")

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


class EventBus(ABC):
    """The one API of every bus: subscribe handlers, publish events, read stats, shut down.

    Args:
        max_background_tasks: at most this many ``publish(..., background=True)`` calls run at
            once; past it, a background publish runs inline, so nothing is dropped.
    """

    STATS: tuple[str, ...] = (
        "events_published",
        "handlers_invoked",
        "handler_errors",
        "background_tasks_created",
        "background_tasks_completed",
    )

    def __init__(self, *, max_background_tasks: int = 1000) -> None:
        if max_background_tasks < 1:
            raise ValueError("max_background_tasks must be at least 1")
        self._subscriptions = SubscriptionTable()
        self._stats: dict[str, int] = dict.fromkeys(self.STATS, 0)
        self._background: set[asyncio.Task[None]] = set()
        self._max_background = max_background_tasks
        self._connected = False
        self._lifecycle_lock = asyncio.Lock()
        self._listeners: tuple[Callable[[Delivery], None], ...] = ()

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def is_connected(self) -> bool:
        """Whether ``connect()`` has completed (and ``disconnect()`` has not)."""
        return self._connected

    async def connect(self) -> None:
        """Open the bus's connections; calling it again does nothing."""
        async with self._lifecycle_lock:
            if not self._connected:
                await self._connect()
                self._connected = True

    async def disconnect(self) -> None:
        """Close the bus's connections; calling it again does nothing."""
        async with self._lifecycle_lock:
            if self._connected:
                await self._disconnect()
                self._connected = False

    async def shutdown(self, timeout: float = 30.0) -> None:
        """Let background publishes finish for up to ``timeout`` seconds, cancel the rest,
        then disconnect. Safe to call more than once."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._background:
            remaining = max(0.0, deadline - loop.time())
            _, pending = await asyncio.wait(set(self._background), timeout=remaining)
            if pending and loop.time() >= deadline:
                logger.warning(
                    "shutdown: cancelling %d unfinished background publishes", len(pending)
                )
                for task in pending:
                    task.cancel()
                await asyncio.wait(pending)
        await self.disconnect()

    async def __aenter__(self) -> EventBus:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.shutdown()

    async def _connect(self) -> None:
        """Open connections (brokers override)."""

    async def _disconnect(self) -> None:
        """Close connections (brokers override)."""

    # -- subscriptions -----------------------------------------------------------------------

    def subscribe(self, event_type: type[DomainEvent], handler: Handler) -> None:
        """Call ``handler`` for every event of ``event_type``; subscribing it twice does nothing."""
        key = subscription_key(event_type)
        self._subscriptions.add(key, as_subscriber(handler))

    def unsubscribe(self, event_type: type[DomainEvent], handler: Handler) -> bool:
        """Stop calling ``handler`` for ``event_type``; ``True`` if it was subscribed."""
        return self._subscriptions.remove(subscription_key(event_type), handler)

    def subscribe_all(self, subscriber: Any) -> None:
        """Subscribe a projection to every type its ``subscribed_to()`` declares."""
        declared = getattr(subscriber, "subscribed_to", None)
        if not callable(declared):
            raise TypeError(
                f"subscribe_all() needs an object with subscribed_to() returning event classes; "
                f"{type(subscriber).__name__} has none (use subscribe() for a single type)"
            )
        adapted = as_subscriber(subscriber)
        for event_type in declared():
            self._subscriptions.add(subscription_key(event_type), adapted)

    def subscribe_to_all_events(self, handler: Handler) -> None:
        """Call ``handler`` for every event, whatever its type (a wildcard subscription)."""
        self._subscriptions.add(None, as_subscriber(handler))

    def unsubscribe_from_all_events(self, handler: Handler) -> bool:
        """Remove a wildcard subscription; ``True`` if it was there."""
        return self._subscriptions.remove(None, handler)

    def clear_subscribers(self) -> None:
        """Remove every subscription, typed and wildcard."""
        self._subscriptions.clear()

    def get_subscriber_count(self, event_type: type[DomainEvent] | None = None) -> int:
        """Handlers subscribed to ``event_type`` (to any type when ``None``), wildcards excluded."""
        typed = self._subscriptions.typed()
        if event_type is None:
            return sum(len(subs) for subs in typed.values())
        return len(typed.get(subscription_key(event_type), ()))

    def get_wildcard_subscriber_count(self) -> int:
        """How many wildcard handlers there are."""
        return len(self._subscriptions.wildcard())

    def get_subscriptions(self) -> dict[str, list[str]]:
        """Handler names by ``event_type``, with wildcard handlers under ``"*"``."""
        table = {t: [s.name for s in subs] for t, subs in self._subscriptions.typed().items()}
        table["*"] = [s.name for s in self._subscriptions.wildcard()]
        return table

    # -- publishing --------------------------------------------------------------------------

    async def publish(self, events: Sequence[DomainEvent], background: bool = False) -> None:
        """Publish ``events`` in order; with ``background=True`` return at once and publish in
        a tracked task (inline instead once ``max_background_tasks`` are running)."""
        batch = _as_batch(events)
        if background and len(self._background) < self._max_background:
            task = asyncio.get_running_loop().create_task(self._publish(batch))
            self._background.add(task)
            self._stats["background_tasks_created"] += 1
            task.add_done_callback(self._background_done)
            return
        await self._publish(batch)

    @abstractmethod
    async def _publish(self, events: list[DomainEvent]) -> None:
        """Deliver a validated batch: to local handlers, or to the broker."""

    def _background_done(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        self._stats["background_tasks_completed"] += 1
        if not task.cancelled() and task.exception() is not None:
            logger.error("background publish failed", exc_info=task.exception())

    # -- dispatch to local handlers ----------------------------------------------------------

    async def _dispatch(
        self, event: DomainEvent, only: Sequence[Subscriber] | None = None
    ) -> list[HandlerFailure]:
        """Run the handlers for ``event`` (all, or just ``only``) concurrently; return the failures.

        Each handler starts at once in its own context; one that finishes without suspending
        costs no task. Only handlers that really wait get one, and all of them are awaited.
        """
        subscribers = self._subscriptions.route(event.event_type) if only is None else only
        self._stats["handlers_invoked"] += len(subscribers)
        failures: list[HandlerFailure] = []
        waiting: dict[asyncio.Future[Any], Subscriber] = {}
        for subscriber in subscribers:
            try:
                future = _start(subscriber.call, event)
            except Exception as exc:
                failures.append(self._handler_failed(subscriber, event, exc))
                continue
            if future is not None:
                waiting[future] = subscriber
        if waiting:
            try:
                await asyncio.wait(waiting)
            except asyncio.CancelledError:
                for future in waiting:
                    future.cancel()
                raise
            for future, subscriber in waiting.items():
                error = asyncio.CancelledError() if future.cancelled() else future.exception()
                if error is not None:
                    failures.append(self._handler_failed(subscriber, event, error))
        if self._listeners:
            self._notify(
                Delivery(
                    event, tuple(s.name for s in subscribers), tuple(f.handler for f in failures)
                )
            )
        return failures

    def on_delivery(self, listener: Callable[[Delivery], None]) -> Callable[[], None]:
        """Call ``listener`` after every dispatch of an event to its handlers (a retry included),
        so a view or a test can watch the bus; returns a function that removes it."""
        self._listeners = (*self._listeners, listener)

        def remove() -> None:
            self._listeners = tuple(x for x in self._listeners if x is not listener)

        return remove

    def _notify(self, delivery: Delivery) -> None:
        for listener in self._listeners:
            try:
                listener(delivery)
            except Exception:
                logger.exception("delivery listener %r failed", listener)

    def _handler_failed(
        self, subscriber: Subscriber, event: DomainEvent, error: BaseException
    ) -> HandlerFailure:
        self._stats["handler_errors"] += 1
        logger.error(
            "handler %s failed on %s %s: %r",
            subscriber.name,
            event.event_type,
            event.event_id,
            error,
            exc_info=error,
        )
        return HandlerFailure(subscriber, error)

    # -- statistics --------------------------------------------------------------------------

    def get_stats(self) -> dict[str, int]:
        """A copy of the counters (see ``STATS`` for their names)."""
        return dict(self._stats)


def subscription_key(event_type: type[DomainEvent]) -> str:
    """The ``event_type`` string a class is subscribed under; refuses ``DomainEvent`` itself."""
    if event_type is DomainEvent:
        raise TypeError(
            "subscribe to a DomainEvent subclass; for every event use subscribe_to_all_events()"
        )
    return event_type_of(event_type)


def _as_batch(events: object) -> list[DomainEvent]:
    if isinstance(events, DomainEvent):
        raise TypeError(
            f"publish() takes a list of events, got a single {type(events).__name__}; "
            f"wrap it: publish([event])"
        )
    if not isinstance(events, (list, tuple)):
        raise TypeError(f"publish() takes a list of DomainEvent, got {type(events).__name__}")
    for index, event in enumerate(events):
        if not isinstance(event, DomainEvent):
            raise TypeError(
                f"publish() takes a list of DomainEvent; item {index} is "
                f"{type(event).__name__}: {event!r:.80}"
            )
    return list(events)


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


# -- what the broker buses share ---------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter: the one schedule for reconnects and handler retries."""

    initial: float = 0.1
    maximum: float = 5.0
    multiplier: float = 2.0
    jitter: float = 0.2

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based)."""
        base = min(self.maximum, self.initial * self.multiplier**attempt)
        return base * (1 + random.uniform(-self.jitter, self.jitter))


RECONNECT = RetryPolicy(initial=0.1, maximum=5.0)

BACKLOG_DLQ_LIMIT = 10_000
"""The default ``get_backlog()`` counts at most this many dead letters."""


def redact_url(url: str) -> str:
    """``url`` without its password, fit for logs and error messages."""
    scheme, sep, rest = url.partition("://")
    if "@" not in rest:
        return url
    return f"{scheme}{sep}***@{rest.rsplit('@', 1)[1]}"


def _default_consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class BrokerBusConfig(BaseModel):
    """Settings every broker bus has.

    Args:
        consumer_group: consumers in one group share the events; each group gets all of them.
        consumer_name: this consumer within its group; unique per process by default.
        max_retries: how often failing handlers are retried before the message is dead-lettered.
        retry_delay: seconds before the first retry; later ones back off exponentially.
        enable_dlq: move messages that keep failing to a dead-letter queue. When off, such a
            message is kept for redelivery (each bus says how), never dropped.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    consumer_group: str = Field("default", min_length=1)
    consumer_name: str = Field(default_factory=_default_consumer_name, min_length=1)
    max_retries: int = Field(3, ge=0)
    retry_delay: float = Field(0.1, gt=0)
    enable_dlq: bool = True


@dataclass(frozen=True)
class DeadLetter:
    """A message in a dead-letter queue, with why it is there."""

    id: str
    original_id: str
    event_type: str | None
    error_type: str
    error: str
    retries: int
    body: bytes


class BrokerEventBus(EventBus):
    """A bus whose events travel through a broker: publish sends, a consumer loop dispatches.

    Subclasses implement ``_connect``/``_disconnect``, ``_send`` (publish a batch), ``_consume``
    (the loop: call ``_consuming_ready()`` once receiving, stop when ``_stopping`` is set, and
    set ``_busy`` while a received batch is in hand) and the dead-letter methods.
    """

    STATS = (
        *EventBus.STATS,
        "events_consumed",
        "events_processed",
        "events_failed",
        "messages_recovered",
        "messages_dead_lettered",
        "reconnections",
    )

    def __init__(
        self,
        config: BrokerBusConfig,
        event_registry: EventRegistry | None = None,
        *,
        max_background_tasks: int = 1000,
    ) -> None:
        super().__init__(max_background_tasks=max_background_tasks)
        self.config = config
        self.event_registry = event_registry or get_event_registry()
        self._handler_retry = RetryPolicy(initial=config.retry_delay)
        self._consumer: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._stopping = False
        self._busy = False

    # -- consuming ---------------------------------------------------------------------------

    @property
    def is_consuming(self) -> bool:
        """Whether the consumer loop is running."""
        return self._consumer is not None and not self._consumer.done()

    async def start_consuming(self) -> None:
        """Start the consumer loop and return once it receives; it runs until stopped."""
        task = self.start_consuming_in_background()
        ready = asyncio.ensure_future(self._ready.wait())
        try:
            await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
        if task.done():
            task.result()  # setup failed: raise why

    def start_consuming_in_background(self) -> asyncio.Task[None]:
        """Start the consumer loop without waiting; the task ends when consuming stops."""
        if self._consumer is None or self._consumer.done():
            self._ready.clear()
            self._stopping = False
            self._consumer = asyncio.get_running_loop().create_task(
                self._run_consumer(), name=f"{type(self).__name__}-consumer"
            )
            self._consumer.add_done_callback(_log_consumer_end)
        return self._consumer

    async def stop_consuming(self, timeout: float = 10.0) -> None:
        """Stop the loop: a batch in hand is finished and acknowledged first (up to ``timeout``)."""
        task, self._consumer = self._consumer, None
        if task is None or task.done():
            return
        self._stopping = True
        if not self._busy:
            task.cancel()
        _, pending = await asyncio.wait({task}, timeout=timeout)
        if pending:
            task.cancel()
            await asyncio.wait({task})

    async def _run_consumer(self) -> None:
        await self.connect()
        await self._consume()

    def _consuming_ready(self) -> None:
        self._ready.set()

    @abstractmethod
    async def _consume(self) -> None:
        """The consumer loop."""

    # -- lifecycle and publishing ------------------------------------------------------------

    async def disconnect(self) -> None:
        """Stop consuming, then close the connections."""
        await self.stop_consuming()
        await super().disconnect()

    async def _publish(self, events: list[DomainEvent]) -> None:
        await self.connect()
        await self._send(events)
        self._stats["events_published"] += len(events)

    @abstractmethod
    async def _send(self, events: list[DomainEvent]) -> None:
        """Hand ``events`` to the broker, in order; return once the broker has them."""

    # -- processing a received message -------------------------------------------------------

    def _decode(self, body: bytes, event_type: str | None) -> DomainEvent:
        """The event in a message; raises one of ``wire.DecodeError`` for a bad one."""
        return wire.decode(body, self.event_registry, event_type)

    async def _deliver(self, event: DomainEvent) -> list[HandlerFailure]:
        """Dispatch ``event``, retrying only the handlers that failed, with backoff, up to
        ``max_retries`` times; return the failures that remain."""
        failures = await self._dispatch(event)
        for attempt in range(self.config.max_retries):
            if not failures:
                break
            await asyncio.sleep(self._handler_retry.delay(attempt))
            failures = await self._dispatch(event, [f.subscriber for f in failures])
        if failures:
            self._stats["events_failed"] += 1
        else:
            self._stats["events_processed"] += 1
        return failures

    # -- dead letters ------------------------------------------------------------------------

    @abstractmethod
    async def get_dlq_messages(self, limit: int = 100) -> list[DeadLetter]:
        """The oldest ``limit`` messages in this group's dead-letter queue."""

    @abstractmethod
    async def replay_dlq_message(self, message_id: str) -> bool:
        """Move one dead letter back to this group's consumers; ``False`` if there is none."""

    async def get_backlog(self) -> dict[str, int | None]:
        """What waits for this group, for a dashboard: ``dlq`` is the number of dead letters
        (counted up to ``BACKLOG_DLQ_LIMIT``); ``pending`` is ``None`` here, as this broker gives
        no cheap, reliable count (buses that can, override this and say what they count)."""
        letters = await self.get_dlq_messages(limit=BACKLOG_DLQ_LIMIT)
        return {"pending": None, "dlq": len(letters)}


def _log_consumer_end(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("consumer loop stopped by an error", exc_info=task.exception())
