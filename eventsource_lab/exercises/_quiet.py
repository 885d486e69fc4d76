"""Keep the bus's own error logs out of a check's output: the feedback says what happened."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def quiet_bus_logs() -> Iterator[None]:
    bus_logger = logging.getLogger("eventsource_lab.bus")
    saved = bus_logger.level
    bus_logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        bus_logger.setLevel(saved)
