"""The teardown bound: a teardown that hangs ends the run soon, naming the test and its stack."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.hangs import HUNG

ROOT = Path(__file__).resolve().parents[1]
HANGING = """
import asyncio

import pytest


@pytest.fixture
async def stubborn():
    async def ignore_cancel():
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                pass  # a task that will not be cancelled

    task = asyncio.create_task(ignore_cancel())
    yield
    await asyncio.sleep(3600)  # and a teardown that waits for nothing
    task.cancel()


async def test_with_a_hanging_teardown(stubborn):
    assert True
"""


def test_a_hanging_teardown_ends_the_run_and_names_the_test(tmp_path: Path) -> None:
    (tmp_path / "test_case.py").write_text(HANGING)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "tests.support.hangs",
            "-p",
            "no:cacheprovider",
            "-o",
            "addopts=",
            "-o",
            "teardown_limit=1",
            "-o",
            "asyncio_mode=auto",
            str(tmp_path / "test_case.py"),
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == HUNG, result.stdout + result.stderr
    assert "teardown of " in result.stderr and "test_with_a_hanging_teardown hung" in result.stderr
    assert "pytest_runtest_teardown" in result.stderr  # the main thread's stack, where it waits
