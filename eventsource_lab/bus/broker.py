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
from abc import abstractmethod
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from ..events import DomainEvent, EventRegistry, get_event_registry
from . import wire
from .base import EventBus
from .handlers import HandlerFailure
from .retry import RetryPolicy

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
