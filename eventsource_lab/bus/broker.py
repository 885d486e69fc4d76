"""BrokerEventBus: what the broker buses share — config, the consumer loop and its health,
decoding, handler retries, dead letters.

A broker bus publishes by sending to its broker, and a consumer loop receives and dispatches
through :meth:`EventBus._dispatch`, so handlers behave the same on every bus.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
import weakref
from abc import abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..errors import BusConnectionError
from ..events import DomainEvent, EventRegistry, get_event_registry
from ..redact import redact_url
from . import wire
from .base import EventBus
from .handlers import HandlerFailure
from .retry import RECONNECT, RetryPolicy

__all__ = ["BACKLOG_DLQ_LIMIT", "BrokerBusConfig", "BrokerEventBus", "DeadLetter"]

logger = logging.getLogger("eventsource_lab.bus")

BACKLOG_DLQ_LIMIT = 10_000
"""The default ``get_backlog()`` counts at most this many dead letters."""


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
        publish_timeout: seconds ``publish()`` waits for the broker to take the events (while
            it is down, say) before it raises ``BusConnectionError``.

    The repr shows broker URLs without their passwords.
    """

    # hide_input_in_errors: a mistyped field would otherwise quote a URL, password and all.
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    consumer_group: str = Field("default", min_length=1)
    consumer_name: str = Field(default_factory=_default_consumer_name, min_length=1)
    max_retries: int = Field(3, ge=0)
    retry_delay: float = Field(0.1, gt=0)
    enable_dlq: bool = True
    publish_timeout: float = Field(10.0, gt=0)

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            yield name, redact_url(value) if name in _URL_FIELDS else value


_URL_FIELDS = frozenset({"redis_url", "rabbitmq_url"})


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

    TRANSIENT: tuple[type[BaseException], ...] = (
        ConnectionError,
        OSError,
        TimeoutError,
        asyncio.TimeoutError,
    )
    """Errors after which the consumer loop backs off and starts again; each bus adds its
    driver's transient errors. Any other error ends the loop (see ``consumer_error``)."""

    def __init__(
        self,
        config: BrokerBusConfig,
        event_registry: EventRegistry | None = None,
        *,
        max_background_tasks: int = 1000,
    ) -> None:
        super().__init__(max_background_tasks=max_background_tasks)
        self.config = config
        self.event_registry = get_event_registry() if event_registry is None else event_registry
        self._handler_retry = RetryPolicy(
            initial=config.retry_delay, maximum=max(RECONNECT.maximum, config.retry_delay)
        )
        self._consumer: asyncio.Task[None] | None = None
        self._consumer_error: BaseException | None = None
        self._ready = asyncio.Event()
        self._stop_requested: weakref.WeakSet[asyncio.Task[None]] = weakref.WeakSet()
        self._busy = False

    # -- consuming ---------------------------------------------------------------------------

    @property
    def is_consuming(self) -> bool:
        """Whether the consumer loop is running (also while it waits out a broker outage)."""
        return self._consumer is not None and not self._consumer.done()

    @property
    def consumer_error(self) -> BaseException | None:
        """Why the consumer loop stopped on its own (``None`` while it runs or when stopped by
        ``stop_consuming()``); it is also logged at ERROR."""
        return self._consumer_error

    async def start_consuming(self) -> None:
        """Start the consumer loop and return once it receives; it runs until stopped.

        Raises why if the loop cannot start (the broker unreachable, say). Once it runs, it
        outlives transient broker errors by backing off and starting again.
        """
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
            self._consumer_error = None
            self._consumer = asyncio.get_running_loop().create_task(
                self._run_consumer(), name=f"{type(self).__name__}-consumer"
            )
        return self._consumer

    async def stop_consuming(self, timeout: float = 10.0) -> None:
        """Stop the loop: a batch in hand is finished and acknowledged first (up to ``timeout``),
        then the loop is cancelled; a loop stuck past another ``timeout`` (a driver call that
        ignores cancellation) is left behind with an error logged, never waited on for ever."""
        task, self._consumer = self._consumer, None
        if task is None or task.done():
            return
        self._stop_requested.add(task)
        if not self._busy:
            task.cancel()
        _, pending = await asyncio.wait({task}, timeout=timeout)
        if pending:
            task.cancel()
            _, pending = await asyncio.wait({task}, timeout=timeout)
        if pending:
            logger.error(
                "%s: the consumer loop did not stop within %gs of being cancelled; left behind",
                type(self).__name__,
                2 * timeout,
            )

    async def _run_consumer(self) -> None:
        """Run ``_consume`` until stopped: start again after transient errors (backing off),
        and keep the reason, logged at ERROR, when anything else ends it."""
        failures = 0
        while True:
            try:
                await self.connect()
                await self._consume()
                return
            except asyncio.CancelledError:
                if not self._stopping:
                    self._stopped_by(asyncio.CancelledError("the consumer task was cancelled"))
                raise
            except Exception as exc:
                if self._stopping:
                    return
                if not self._ready.is_set():
                    raise  # start_consuming() raises it: the loop never ran
                if not isinstance(exc, self.TRANSIENT):
                    self._stopped_by(exc)
                    return
                delay = RECONNECT.delay(failures)
                logger.warning("consumer loop hit %r; starting again in %.1fs", exc, delay)
                failures += 1
                await asyncio.sleep(delay)

    def _stopped_by(self, error: BaseException) -> None:
        self._consumer_error = error
        logger.error(
            "%s stopped consuming (group %s): %r",
            type(self).__name__,
            self.config.consumer_group,
            error,
            exc_info=error,
        )

    @property
    def _stopping(self) -> bool:
        """Whether the consumer loop asking was told to stop (each loop has its own request, so
        a loop started while an old one is still stopping is not stopped with it)."""
        task = asyncio.current_task()
        return task is not None and task in self._stop_requested

    def _consuming_ready(self) -> None:
        self._ready.set()

    @staticmethod
    def _raise_if_cancelled() -> None:
        """Re-raise a cancellation of this task that a driver swallowed; loops call it each round.

        On Python 3.11 ``asyncio.wait_for`` (which redis-py and aiokafka use inside calls) loses a
        cancel that arrives as its inner future finishes, so the consumer would run on, its task
        stuck in "cancelling". (3.10 cannot tell; 3.12's ``wait_for`` no longer loses it.)
        """
        task = asyncio.current_task()
        if task is not None and getattr(task, "cancelling", lambda: 0)():
            raise asyncio.CancelledError("the consumer task was cancelled")

    @abstractmethod
    async def _consume(self) -> None:
        """The consumer loop."""

    # -- lifecycle and publishing ------------------------------------------------------------

    async def disconnect(self) -> None:
        """Stop consuming, then close the connections."""
        await self.stop_consuming()
        await super().disconnect()

    async def _publish(self, events: list[DomainEvent]) -> None:
        timeout = self.config.publish_timeout
        try:
            await asyncio.wait_for(self._connect_and_send(events), timeout)
        except asyncio.TimeoutError as exc:
            raise BusConnectionError(
                f"{type(self).__name__}: the broker did not take {len(events)} event(s) within "
                f"publish_timeout={timeout:g}s; is it running?"
            ) from exc
        self._stats["events_published"] += len(events)

    async def _connect_and_send(self, events: list[DomainEvent]) -> None:
        await self.connect()
        await self._send(events)

    @abstractmethod
    async def _send(self, events: list[DomainEvent]) -> None:
        """Hand ``events`` to the broker, in order; return once the broker has them."""

    # -- processing a received message -------------------------------------------------------

    def _decode(self, body: bytes, event_type: str | None) -> DomainEvent:
        """The event in a message; raises one of ``wire.DecodeError`` for a bad one, whatever
        its bytes (a bus dead-letters those and goes on)."""
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
