"""Keep docker-py, urllib3 and testcontainers silent while the launcher works with Docker.

A notebook cell that falls back from Docker to a local broker must show nothing of the attempt:
their log records (which reach stderr wherever the root logger has a handler) and their warnings
go nowhere while any start, stop or survey runs; the reason travels in the error instead.
testcontainers also logs on the root logger itself (``logging.warning``, which first calls
``basicConfig`` where the root logger has no handler): those records are dropped too, and the
root logger is given no handler for good.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import threading
import warnings
from collections.abc import Iterator

__all__ = ["LOGGERS", "muted"]

LOGGERS = ("docker", "urllib3", "testcontainers")


class _FromLibraries(logging.Filter):
    """Drops a record logged on the root logger by code of the quiet libraries."""

    def __init__(self) -> None:
        super().__init__()
        specs = [importlib.util.find_spec(name) for name in LOGGERS]
        dirs = [d for spec in specs if spec for d in spec.submodule_search_locations or ()]
        self.places = tuple(f"{d}/" for d in dirs)

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.pathname.startswith(self.places)


class _LastResort(logging.Handler):
    """Stands in for logging's last resort while the root logger has no handler of its own, so
    that ``logging.warning`` finds one and does not call ``basicConfig``."""

    def emit(self, record: logging.LogRecord) -> None:
        last = logging.lastResort
        if last is not None and record.levelno >= last.level:
            last.handle(record)


class _Muffler:
    """Counts the threads inside :func:`muted`: the first one in silences, the last one out
    restores (so two notebooks' starts at once never leave the loggers silenced)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0
        self._sink = logging.NullHandler()
        self._propagate: dict[str, bool] = {}
        self._warnings: warnings.catch_warnings | None = None
        self._root_filter: _FromLibraries | None = None
        self._root_handler: _LastResort | None = None

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
            root = logging.getLogger()
            self._root_filter = self._root_filter or _FromLibraries()
            root.addFilter(self._root_filter)
            if not root.handlers:
                self._root_handler = _LastResort()
                root.addHandler(self._root_handler)
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
            root = logging.getLogger()
            root.removeFilter(self._root_filter)
            if self._root_handler is not None:
                root.removeHandler(self._root_handler)
                self._root_handler = None
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
