"""Handlers the worker-process tests import by dotted path: each appends the event_id it handled
to ``$EVENTSOURCE_LAB_TEST_WORKER_LOG/<pid>.log`` (flushed before it returns, so before the
bus acknowledges), which lets a test see every handled event even of a worker it killed."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from eventsource_lab import DomainEvent
from tests.support import events as _events  # noqa: F401  (registers the order events)

LOG_DIR = "EVENTSOURCE_LAB_TEST_WORKER_LOG"


async def record(event: DomainEvent) -> None:
    """Append ``event.event_id`` to this process's log, after a short pause (a real handler's
    work, so a signal can land mid-stream)."""
    await asyncio.sleep(0.005)
    await asyncio.to_thread(_append, Path(os.environ[LOG_DIR]) / f"{os.getpid()}.log", event)


def _append(log: Path, event: DomainEvent) -> None:
    with log.open("a") as out:
        out.write(f"{event.event_id}\n")


def handled(directory: Path) -> dict[int, list[str]]:
    """The event_ids each worker (by pid) logged in ``directory``."""
    return {int(p.stem): p.read_text().split() for p in directory.glob("*.log")}


NOT_CALLABLE = 42
