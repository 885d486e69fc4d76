"""A pytest plugin that bounds a test's teardown: one that hangs (a task that ignores its
cancellation, a thread that never returns) would hold the run until CI's limit.

pytest-timeout's timer covers a test once; after it fires in the call, the teardown runs
without one. Past ``teardown_limit`` seconds this plugin names the test, prints every thread's
stack and ends the process: the run fails fast (under pytest-xdist, as a crashed worker).
"""

from __future__ import annotations

import faulthandler
import os
import sys
import threading
from collections.abc import Iterator

import pytest

HUNG = 70
"""The exit code of a process whose teardown hung."""


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("teardown_limit", "seconds a test's teardown may take", default="90")


def _give_up(config: pytest.Config, nodeid: str, limit: float) -> None:
    capture = config.pluginmanager.getplugin("capturemanager")
    if capture is not None:  # the process ends here: give fd 2 back to the terminal first
        capture.suspend_global_capture(in_=True)
    sys.__stderr__.write(f"\n\nteardown of {nodeid} hung for over {limit:g} s; its stacks:\n")
    sys.__stderr__.flush()
    faulthandler.dump_traceback(file=sys.__stderr__, all_threads=True)
    os._exit(HUNG)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Iterator[None]:
    limit = float(item.config.getini("teardown_limit"))
    watchdog = threading.Timer(limit, _give_up, (item.config, item.nodeid, limit))
    watchdog.daemon = True
    watchdog.start()
    try:
        yield
    finally:
        watchdog.cancel()
