"""Worker processes a test started: end them all, then prove none is left, not even a zombie."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from eventsource_lab.workers import Worker


def exists(pid: int) -> bool:
    """Whether ``pid`` is a process at all, a zombie included."""
    return Path(f"/proc/{pid}").exists()


def end_workers(started: Iterable[Worker], timeout: float, *, kill: bool = False) -> None:
    """Stop (or kill) every worker in ``started`` and assert that no pid of theirs remains."""
    started = list(started)
    for worker in started:
        if kill:
            worker.kill()
            worker.wait(timeout)
        else:
            worker.stop(timeout=timeout)
    left = [worker.pid for worker in started if exists(worker.pid)]
    assert not left, f"workers survived their test: {left}"
