"""A handler for worker processes that records what it handled, one file per process, so a
notebook can check every event was handled at least once, even by a worker it killed.

``record`` appends a line per event to ``$EVENTSOURCE_LAB_WORKER_LOG/<pid>.log``, flushed before
it returns (so before the bus acknowledges or commits): whatever a worker acknowledged is in its
file. ``$EVENTSOURCE_LAB_WORKER_DELAY`` (seconds, default 0) plays the handler's work, so a
signal can land mid-stream. It takes any event, so it registers none: spawn its workers with
``imports=["eventsource_lab.demo"]`` (the tutorial's events) or the module with yours. Importing
it registers nothing either, so a kernel with its own ``OrderPlaced`` can read the files too.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

from .events import DomainEvent

__all__ = ["DELAY_ENV", "LOG_ENV", "Handled", "duplicates", "handled", "missing", "record"]

LOG_ENV = "EVENTSOURCE_LAB_WORKER_LOG"
DELAY_ENV = "EVENTSOURCE_LAB_WORKER_DELAY"


@dataclass(frozen=True)
class Handled:
    """One event as a worker handled it."""

    pid: int
    event_id: UUID
    aggregate_id: UUID
    aggregate_version: int
    event_type: str
    at_ns: int  # time.time_ns() when the handler finished: orders the workers' lines


async def record(event: DomainEvent) -> None:
    """Note ``event`` in this process's file under ``$EVENTSOURCE_LAB_WORKER_LOG``."""
    delay = float(os.environ.get(DELAY_ENV) or 0)
    if delay > 0:
        await asyncio.sleep(delay)
    log = Path(os.environ[LOG_ENV]) / f"{os.getpid()}.log"
    line = (
        f"{event.event_id} {event.aggregate_id} {event.aggregate_version} "
        f"{event.event_type} {time.time_ns()}\n"
    )
    await asyncio.to_thread(_append, log, line)


def _append(log: Path, line: str) -> None:
    with log.open("a") as out:
        out.write(line)


def handled(directory: str | os.PathLike[str]) -> list[Handled]:
    """Every line the workers wrote in ``directory``, in the order they were handled. Only
    ``<pid>.log`` files are read, and a line that is not a record or not finished (cut short by a
    kill, or read as it is written) is skipped; a missing directory is an error, not "nothing"."""
    root = Path(directory)
    if not root.is_dir():
        raise FileNotFoundError(f"no worker log directory at {str(root)!r}")
    found = []
    for path in root.glob("*.log"):
        if path.stem.isascii() and path.stem.isdigit() and path.is_file():
            *lines, _unfinished = path.read_text(errors="replace").split("\n")  # being written
            for line in lines:
                if (record := _parse(int(path.stem), line)) is not None:
                    found.append(record)
    return sorted(found, key=lambda h: h.at_ns)


def _parse(pid: int, line: str) -> Handled | None:
    """The record ``line`` holds (its event type may contain spaces), or ``None``."""
    parts = line.split(" ", 3)
    if len(parts) != 4:
        return None
    event_id, aggregate_id, version, rest = parts
    event_type, _, at_ns = rest.rpartition(" ")
    if not (event_type and at_ns.isascii() and at_ns.isdigit()):
        return None
    try:
        return Handled(
            pid, UUID(event_id), UUID(aggregate_id), int(version), event_type, int(at_ns)
        )
    except ValueError:
        return None


def duplicates(records: list[Handled]) -> dict[UUID, int]:
    """The event_ids handled more than once, with how many times."""
    counts = Counter(r.event_id for r in records)
    return {event_id: n for event_id, n in counts.items() if n > 1}


def missing(published: list[DomainEvent], records: list[Handled]) -> list[DomainEvent]:
    """The published events no worker handled."""
    seen = {r.event_id for r in records}
    return [e for e in published if e.event_id not in seen]
