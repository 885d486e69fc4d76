"""Helpers for testing handlers and buses: a recording handler, and waiting without sleeping.

Broker buses deliver asynchronously, so a test waits for what it expects (with a timeout, so a
broken bus fails fast) instead of sleeping and hoping.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from uuid import UUID

from .events import DomainEvent

__all__ = ["DEFAULT_TIMEOUT", "Recorder", "eventually"]

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
