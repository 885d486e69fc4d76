"""OutboxRelay: publish what the store holds and no consumer has seen, in global order.

Saving to a store and publishing to a broker are two writes that cannot be one transaction: if
the publish fails, the events are stored and nobody hears of them. The relay treats the store as
the outbox. It reads the events after its checkpoint, publishes them, and only then moves the
checkpoint, so a failed publish is retried on the next run: delivery is at-least-once, and a
repeated event carries the same ``event_id`` (handlers deduplicate on it).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from .events import DomainEvent
from .repository import EventPublisher
from .store import SupportsReadAll

__all__ = ["Checkpoint", "InMemoryCheckpoint", "OutboxRelay"]

logger = logging.getLogger(__name__)

_run_in_context: contextvars.ContextVar[object] = contextvars.ContextVar("outbox_relay_run")
"""The run a publish happens in: a handler it reaches (and its tasks) inherit it."""


@runtime_checkable
class Checkpoint(Protocol):
    """Where a relay remembers the global position of the last event it published."""

    async def load(self) -> int:
        """The last published position (0 before anything was published)."""
        ...

    async def save(self, position: int) -> None:
        """Remember ``position`` as published; a durable checkpoint survives a restart."""
        ...


class InMemoryCheckpoint:
    """A checkpoint in a variable: for tests and notebooks; a restart publishes all again."""

    def __init__(self, position: int = 0) -> None:
        self.position = position

    async def load(self) -> int:
        """The last published position."""
        return self.position

    async def save(self, position: int) -> None:
        """Remember ``position`` as published."""
        self.position = position


class OutboxRelay:
    """Publishes stored events not yet published, oldest first, and records how far it got.

    It is also an :class:`~eventsource_lab.repository.EventPublisher`: give it to
    ``AggregateRepository(event_publisher=relay)`` and each ``save`` catches up through it, so an
    event whose publish failed goes out with the next save, the next ``run_once`` or the
    background loop (``start``), whichever comes first.

    Args:
        store: the store the repository writes to; it must support ``read_all``.
        publisher: where events go, usually an event bus.
        checkpoint: the last published position; a fresh :class:`InMemoryCheckpoint` if omitted.
        batch_size: how many events one ``publish`` call receives at most.
    """

    def __init__(
        self,
        store: SupportsReadAll,
        publisher: EventPublisher,
        checkpoint: Checkpoint | None = None,
        *,
        batch_size: int = 100,
    ) -> None:
        if not isinstance(store, SupportsReadAll):
            raise TypeError(
                f"{type(store).__name__} has no read_all(from_position, limit): "
                f"a relay needs a store that numbers its events globally"
            )
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        self.store = store
        self.publisher = publisher
        self.checkpoint = InMemoryCheckpoint() if checkpoint is None else checkpoint
        self.batch_size = batch_size
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._run: object | None = None  # the run in progress
        self._again = False  # a save inside the run stored more while it read

    async def run_once(self) -> int:
        """Publish everything after the checkpoint, batch by batch; return how many events.

        The checkpoint moves after each published batch, so if ``publish`` raises, the error
        propagates and the failed batch is published again by the next run. Concurrent calls
        take turns, so no event is published twice by one relay.
        """
        async with self._lock:
            run = self._run = object()
            token = _run_in_context.set(run)
            try:
                return await self._catch_up()
            finally:
                _run_in_context.reset(token)
                self._run = None

    async def _catch_up(self) -> int:
        position = await self.checkpoint.load()
        published = 0
        while True:
            self._again = False
            batch = await self.store.read_all(position, limit=self.batch_size)
            if not batch:
                if self._again:
                    continue
                return published
            await self.publisher.publish([stored.event for stored in batch])
            position = batch[-1].position
            await self.checkpoint.save(position)
            published += len(batch)

    async def publish(self, events: Sequence[DomainEvent], background: bool = False) -> None:
        """Catch up now: ``events`` are already stored, so publishing after the checkpoint
        includes them; with ``background`` and a running loop, only wake the loop.

        Called from within this relay's run (a handler saving through the same relay), it
        leaves the events to that run, which reads on until the store has no more: waiting for
        the run would wait for itself.
        """
        if self._run is not None and _run_in_context.get(None) is self._run:
            self._again = True
            return
        if background and self.is_running:
            self._wake.set()
            return
        await self.run_once()

    @property
    def is_running(self) -> bool:
        """Whether the background loop started by ``start`` is running."""
        return self._task is not None and not self._task.done()

    async def run_forever(self, interval: float = 1.0) -> None:
        """Catch up now, then every ``interval`` seconds or when woken, until ``stop``.

        A failed run is logged and retried on the next round; the checkpoint keeps its place.
        """
        _check_interval(interval)
        await self._loop(interval, self._stop)

    async def _loop(self, interval: float, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.run_once()
            except Exception:
                logger.exception("outbox relay: publishing failed; retrying in %ss", interval)
            except asyncio.CancelledError:
                if _cancelling():
                    raise
                logger.exception("outbox relay: publish raised CancelledError; retrying")
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=interval)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()

    def start(self, interval: float = 1.0) -> asyncio.Task[None]:
        """Run ``run_forever`` in a task (once: a running loop is returned as is)."""
        _check_interval(interval)
        if self._task is None or self._task.done():
            stop = self._stop = asyncio.Event()  # its own: a stop still waiting keeps the old
            self._task = asyncio.get_running_loop().create_task(
                self._loop(interval, stop), name="OutboxRelay"
            )
        return self._task

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop the loop: a batch in flight may finish for up to ``timeout`` seconds, then the
        task is cancelled (its batch is published again next time); a publish that ignores the
        cancel for another ``timeout`` is left behind with an error logged."""
        task, self._task = self._task, None
        if task is None or task.done():
            return
        self._stop.set()
        self._wake.set()
        _, pending = await asyncio.wait({task}, timeout=timeout)
        if pending:
            task.cancel()
            _, pending = await asyncio.wait({task}, timeout=timeout)
        if pending:
            logger.error("outbox relay: the loop ignored its cancel for %gs; left behind", timeout)


def _cancelling() -> bool:
    """Whether this task is being cancelled (always assumed on 3.10, which cannot tell)."""
    task = asyncio.current_task()
    return task is None or getattr(task, "cancelling", lambda: 1)() > 0


def _check_interval(interval: float) -> None:
    if interval <= 0:
        raise ValueError(f"interval must be positive, not {interval}")
