"""Keep docker-py, urllib3 and testcontainers silent while the launcher works with Docker.

A notebook cell that falls back from Docker to a local broker must show nothing of the attempt:
their log records (which reach stderr wherever the root logger has a handler) and their warnings
go nowhere while any start, stop or survey runs; the reason travels in the error instead.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import warnings
from collections.abc import Iterator

__all__ = ["LOGGERS", "muted"]

LOGGERS = ("docker", "urllib3", "testcontainers")


class _Muffler:
    """Counts the threads inside :func:`muted`: the first one in silences, the last one out
    restores (so two notebooks' starts at once never leave the loggers silenced)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0
        self._sink = logging.NullHandler()
        self._propagate: dict[str, bool] = {}
        self._warnings: warnings.catch_warnings | None = None

    def enter(self) -> None:
        with self._lock:
            self._depth += 1
            if self._depth > 1:
                return
            for name in LOGGERS:
                logger = logging.getLogger(name)
                self._propagate[name] = logger.propagate
                logger.addHandler(self._sink)  # a handler, or logging's last resort prints
                logger.propagate = False
            self._warnings = warnings.catch_warnings()
            self._warnings.__enter__()
            warnings.simplefilter("ignore")

    def exit(self) -> None:
        with self._lock:
            self._depth -= 1
            if self._depth > 0:
                return
            for name, propagate in self._propagate.items():
                logger = logging.getLogger(name)
                logger.removeHandler(self._sink)
                logger.propagate = propagate
            if self._warnings is not None:
                self._warnings.__exit__(None, None, None)
                self._warnings = None


_muffler = _Muffler()


@contextlib.contextmanager
def muted() -> Iterator[None]:
    """While inside, Docker's client libraries write nothing and no warning is shown."""
    _muffler.enter()
    try:
        yield
    finally:
        _muffler.exit()
