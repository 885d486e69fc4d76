"""EventBus: the one API of every bus — subscriptions, publishing, dispatch, stats, lifecycle.

A concrete bus implements only ``_publish`` (where events go) and, for brokers, ``_connect`` and
``_disconnect``. Delivery to local handlers always goes through :meth:`EventBus._dispatch`, so
every bus runs handlers with the same concurrency and error isolation. What a handler is and how
one runs lives in :mod:`.handlers`; the broker consumer loop in :mod:`.broker`.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

from ..events import DomainEvent
from .handlers import (
    Delivery,
    Handler,
    HandlerFailure,
    HandlerRun,
    Subscriber,
    SubscriptionTable,
    as_subscriber,
    subscription_key,
)

__all__ = ["EventBus"]

logger = logging.getLogger("eventsource_lab.bus")
_CANCEL_GRACE = 0.1  # seconds shutdown() waits at least for cancelled background publishes to end


class EventBus(ABC):
    """The one API of every bus: subscribe handlers, publish events, read stats, shut down.

    Args:
        max_background_tasks: at most this many ``publish(..., background=True)`` calls run at
            once; past it, a background publish runs inline, so nothing is dropped.

    Of the background tasks created, each ends either completed (its publish ran to the end,
    or raised, which is logged) or cancelled (by ``shutdown``'s timeout or by its caller: its
    events may never have reached a handler or a broker); created minus both is still running.
    """

    STATS: tuple[str, ...] = (
        "events_published",
        "handlers_invoked",
        "handler_errors",
        "background_tasks_created",
        "background_tasks_completed",
        "background_tasks_cancelled",
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
        """Let background publishes finish for up to ``timeout`` seconds, cancel the rest (and
        leave behind, logged, any that ignore the cancel for another ``timeout``, at least a
        tenth of a second), then disconnect. Safe to call more than once."""
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
                grace = max(timeout, _CANCEL_GRACE)  # a cancel needs a loop pass or two to land
                _, stuck = await asyncio.wait(pending, timeout=grace)
                if stuck:  # a handler that ignores its cancel: never wait on it for ever
                    logger.error(
                        "shutdown: %d background publishes ignored their cancel; left behind",
                        len(stuck),
                    )
                    break
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
        if task.cancelled():
            self._stats["background_tasks_cancelled"] += 1
            return
        self._stats["background_tasks_completed"] += 1
        if task.exception() is not None:
            logger.error("background publish failed", exc_info=task.exception())

    # -- dispatch to local handlers ----------------------------------------------------------

    async def _dispatch(
        self, event: DomainEvent, only: Sequence[Subscriber] | None = None
    ) -> list[HandlerFailure]:
        """Run the handlers for ``event`` (all, or just ``only``) concurrently; return the failures.

        Each async handler runs as a task of its own in its own context copy, so whatever it
        raises or cancels (its own timeout, say) is its failure alone. On Python 3.12+ the tasks
        start eagerly: a handler that never suspends is done before the next one starts. When
        the dispatch itself is cancelled, the handlers' tasks are cancelled with it.
        """
        subscribers = self._subscriptions.route(event.event_type) if only is None else only
        self._stats["handlers_invoked"] += len(subscribers)
        run = HandlerRun(asyncio.get_running_loop())
        for index, subscriber in enumerate(subscribers):
            run.start(index, subscriber, event)
        try:
            await run.join()
        except asyncio.CancelledError:
            for task in run.tasks:
                task.cancel()
            if run.tasks:
                await asyncio.wait(run.tasks)
            for _, subscriber, error in run.failures:
                if not isinstance(error, asyncio.CancelledError):
                    self._handler_failed(subscriber, event, error)
            raise
        failures = (
            [
                self._handler_failed(subscriber, event, error)
                for _, subscriber, error in sorted(run.failures, key=_first)
            ]
            if run.failures
            else []
        )
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


def _first(failure: tuple[int, Subscriber, BaseException]) -> int:
    return failure[0]


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
