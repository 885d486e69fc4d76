"""A pytest plugin that fails the session if any process it started outlives it.

Every process the session starts (brokers, worker processes, notebook kernels and what they
spawn) inherits a token in its environment; at the end, after every fixture is torn down, any
live process still carrying it is named, killed, and the run fails. Things stopped only by an
``atexit`` hook count as left behind: a test that leaks them would leak them in a notebook too.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import time
from pathlib import Path

import pytest

MARK = "EVENTSOURCE_LAB_TEST_SESSION"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "leftover_grace",
        "seconds processes already told to stop get to end before they count as left behind",
        default="10",
    )


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):  # an xdist worker inherits the controller's token
        os.environ[MARK] = secrets.token_hex(8)


def survivors(token: str) -> list[tuple[int, str]]:
    """``(pid, command line)`` of every live process but this one carrying ``token``."""
    marker = f"{MARK}={token}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text()
            if stat[stat.rindex(")") + 2] == "Z":  # a zombie runs nothing
                continue
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                command = (
                    (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                )
                found.append((int(entry.name), command.strip()[:200]))
    return found


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    token = os.environ.get(MARK)
    if hasattr(session.config, "workerinput") or not token or not Path("/proc/self").exists():
        return
    deadline = time.monotonic() + float(session.config.getini("leftover_grace"))
    while (left := survivors(token)) and time.monotonic() < deadline:
        time.sleep(0.1)
    if not left:
        return
    for pid, _ in left:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    lines = "\n".join(f"  pid {pid}: {command}" for pid, command in left)
    message = f"{len(left)} process(es) the test session started outlived it (now killed):\n{lines}"
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_sep("=", "processes left behind", red=True)
        reporter.write_line(message)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
