"""The session guard: a process a test leaks fails the run, is named, and does not survive it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.support.processes import exists

ROOT = Path(__file__).resolve().parents[1]
LEAKY = """
import subprocess, sys

def test_leaks_a_process():
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])

def test_ends_its_process():
    subprocess.run([sys.executable, "-c", "pass"], check=True)
"""


def run_session(tmp_path: Path, source: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_case.py").write_text(source)
    env = {k: v for k, v in os.environ.items() if k != "EVENTSOURCE_LAB_TEST_SESSION"}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "tests.support.leftovers",
            "-p",
            "no:cacheprovider",
            "-o",
            "addopts=",
            "-o",
            "leftover_grace=0.5",
            "-q",
            str(tmp_path / "test_case.py"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_leaked_process_fails_the_session_and_is_killed(tmp_path):
    result = run_session(tmp_path, LEAKY)

    assert result.returncode == 1, result.stdout + result.stderr
    assert "2 passed" in result.stdout
    assert "1 process(es) the test session started outlived it" in result.stdout
    pid = int(re.search(r"pid (\d+): .*time\.sleep\(60\)", result.stdout).group(1))
    assert not exists(pid) or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]


def test_a_session_that_ends_its_processes_passes(tmp_path):
    result = run_session(tmp_path, LEAKY.replace("def test_leaks_a_process", "def _unused"))

    assert result.returncode == 0, result.stdout + result.stderr
    assert "outlived" not in result.stdout
