"""Await conditions instead of sleeping, always with a timeout so a broken bus fails fast."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from eventsource_lab import DomainEvent

DEFAULT_TIMEOUT = 10.0


async def eventually(
    condition: Callable[[], bool], timeout: float = DEFAULT_TIMEOUT, what: str = ""
) -> None:
    """Return once ``condition()`` is true; fail the test after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        await asyncio.sleep(0.005)


class Recorder:
    """An async handler that keeps what it received and lets a test wait for a count."""

    def __init__(self, name: str = "recorder") -> None:
        self.name = name
        self.events: list[DomainEvent] = []
        self._changed = asyncio.Event()

    async def handle(self, event: DomainEvent) -> None:
        self.events.append(event)
        self._changed.set()

    async def wait_for(self, count: int, timeout: float = DEFAULT_TIMEOUT) -> list[DomainEvent]:
        """Wait until at least ``count`` events arrived; return them."""

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
    def ids(self) -> list:
        return [e.event_id for e in self.events]
