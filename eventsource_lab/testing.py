"""Helpers for testing handlers and buses: a recording handler, waiting without sleeping, and
a consumer that crashes on cue.

Broker buses deliver asynchronously, so a test waits for what it expects (with a timeout, so a
broken bus fails fast) instead of sleeping and hoping.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING
from uuid import UUID

from .events import DomainEvent

if TYPE_CHECKING:
    from .bus import BrokerEventBus

__all__ = ["DEFAULT_TIMEOUT", "Recorder", "crash_consumer", "eventually"]

DEFAULT_TIMEOUT = 10.0


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]],
    timeout: float = DEFAULT_TIMEOUT,
    what: str = "",
) -> None:
    """Return once ``condition()`` (sync or async) is true; raise ``AssertionError`` after
    ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        await asyncio.sleep(0.005)


class Recorder:
    """An async handler that keeps what it received, so a test can wait for a count."""

    def __init__(self, name: str = "recorder") -> None:
        self.name = name
        self.events: list[DomainEvent] = []
        self._changed = asyncio.Event()

    async def handle(self, event: DomainEvent) -> None:
        self.events.append(event)
        self._changed.set()

    async def wait_for(self, count: int, timeout: float = DEFAULT_TIMEOUT) -> list[DomainEvent]:
        """Wait until at least ``count`` events arrived; return them all."""

        async def reached() -> None:
            while len(self.events) < count:
                self._changed.clear()
                await self._changed.wait()

        try:
            await asyncio.wait_for(reached(), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(
                f"{self.name}: got {len(self.events)} of {count} events in {timeout}s"
            ) from None
        return self.events

    @property
    def ids(self) -> list[UUID]:
        """The ids of the events received, in arrival order."""
        return [e.event_id for e in self.events]


async def crash_consumer(bus: BrokerEventBus, timeout: float = DEFAULT_TIMEOUT) -> None:
    """Kill ``bus``'s consumer loop mid-work, as when its process dies; return once it ended.

    The loop's task is cancelled wherever it is, a running handler included, so the messages in
    hand are never acknowledged or committed and the broker delivers them again to the group's
    other consumers. How soon depends on what each loop still does on its way out:

    - Redis: nothing more is sent. The consumer stays in the group and its messages stay
      pending (with any finished ones whose ``XACK`` had not gone out yet) until another
      consumer takes them over after ``pending_idle_ms``.
    - RabbitMQ: the loop closes its channel, so the broker requeues the unacknowledged messages
      at once, as when the operating system closes a killed process's connection.
    - Kafka: the loop commits what earlier batches finished (not the batch in hand) and asks
      to leave the group, so Kafka rebalances without waiting for ``session_timeout_ms``, as it
      must for a process killed outright. (aiokafka never leaves a group generation numbered
      0, which is tansu's first, so there the group waits out the timeout.)

    The bus stays connected (it can still publish), ``consumer_error`` says the loop was
    cancelled, and ``start_consuming()`` starts a new loop: a restart.
    """
    if not bus.is_consuming:
        raise RuntimeError(f"{type(bus).__name__} is not consuming: no consumer to crash")
    task = bus.start_consuming_in_background()  # the loop that runs, not a new one
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=timeout)
    if not done:
        raise AssertionError(
            f"{type(bus).__name__}'s consumer loop ran on {timeout}s after its crash"
        )
