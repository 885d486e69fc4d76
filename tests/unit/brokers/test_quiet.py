"""A start that falls back from Docker writes nothing: not a log line, not a warning.

Docker answers, but it has no image and no registry (an offline laptop). The real testcontainers
is used; the root logger prints everything at DEBUG to stderr, as a notebook that turned logging
on would, and every warning is shown.
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Iterator

import pytest

from eventsource_lab.brokers import BrokerUnavailableError, astart, diagnose, start
from eventsource_lab.brokers.quiet import LOGGERS

from .conftest import FakeClient, FakeEngine


class _ToStderr(logging.Handler):
    """Prints every record to the stderr of the moment, as ``logging.basicConfig``'s would."""

    def emit(self, record: logging.LogRecord) -> None:
        sys.stderr.write(f"{self.format(record)}\n")


@pytest.fixture
def loud(
    engine: FakeEngine, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> Iterator[FakeEngine]:
    """An engine without images whose client logs and warns, and a root logger that prints
    (to the stderr that ``capfd`` captures)."""
    engine.images.clear()
    lookup = FakeClient._image

    def noisy(self: FakeClient, name: str) -> object:
        logging.getLogger("docker.api.image").warning("looking up %s", name)
        warnings.warn(f"a deprecated way to look up {name}", DeprecationWarning, stacklevel=1)
        return lookup(self, name)

    monkeypatch.setattr(FakeClient, "_image", noisy)
    root = logging.getLogger()
    handler, level = _ToStderr(), root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            yield engine
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def _still_heard(capfd: pytest.CaptureFixture[str]) -> None:
    """Once the launcher is done, the libraries' loggers print as before: nothing stays muted."""
    for name in LOGGERS:
        logging.getLogger(f"{name}.after").warning("heard")
    assert capfd.readouterr().err.count("heard") == len(LOGGERS)


def test_auto_falls_back_to_local_without_a_word(
    loud: FakeEngine, local_starts: list[str], capfd: pytest.CaptureFixture[str]
) -> None:
    broker = start("redis")
    assert broker.mode == "local" and loud.pulls == []
    assert capfd.readouterr() == ("", "")
    _still_heard(capfd)


async def test_astart_in_a_notebook_cell_falls_back_without_a_word(
    loud: FakeEngine, local_starts: list[str], capfd: pytest.CaptureFixture[str]
) -> None:
    capfd.readouterr()  # asyncio's own debug line from setting up the event loop
    async with await astart("redis") as broker:
        assert broker.mode == "local"
    assert capfd.readouterr() == ("", "")
    _still_heard(capfd)


def test_a_failed_pull_is_a_reason_not_output(
    loud: FakeEngine, capfd: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(BrokerUnavailableError, match="cannot pull redis:7-alpine"):
        start("redis", mode="container")
    assert loud.pulls == ["redis:7-alpine"]
    assert capfd.readouterr() == ("", "")


def test_the_doctor_asks_docker_quietly(
    loud: FakeEngine, capfd: pytest.CaptureFixture[str]
) -> None:
    rows = {(r.kind, r.mode): r for r in diagnose()}
    assert "redis:7-alpine not here" in rows["redis", "container"].detail
    assert capfd.readouterr() == ("", "")
