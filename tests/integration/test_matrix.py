"""The conformance matrix, end to end through the command line, on the in-memory bus and Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from eventsource_lab.conformance import BEHAVIOURS
from eventsource_lab.matrix import PROBES

pytestmark = pytest.mark.redis


def test_the_matrix_shows_what_holds_and_how_buses_differ(redis_broker, tmp_path: Path) -> None:
    out = tmp_path / "matrix.json"
    env = {**os.environ, "EVENTSOURCE_LAB_REDIS_URL": redis_broker.url}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "eventsource_lab",
            "conformance",
            "--buses",
            "memory,redis",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    matrix = json.loads(out.read_text())
    assert matrix["buses"] == ["memory", "redis"]
    cells = matrix["cells"]
    for behaviour in BEHAVIOURS:  # the conformance suite holds everywhere
        assert {bus: c["outcome"] for bus, c in cells[behaviour.name].items()} == {
            "memory": "holds",
            "redis": "holds",
        }, behaviour.name
    differs_on_memory = {p.name for p in PROBES if cells[p.name]["memory"]["outcome"] == "differs"}
    assert differs_on_memory == {
        "groups_each_get_everything",
        "group_shares_the_work",
        "keeps_events_for_a_stopped_consumer",
        "retries_a_failing_handler",
        "dead_letters_poison",
    }
    redis_differs = {p.name for p in PROBES if cells[p.name]["redis"]["outcome"] == "differs"}
    assert redis_differs == {"publish_waits_for_handlers"}
    assert "memory retries_a_failing_handler: a failed handler is logged" in result.stdout
    assert result.stdout.splitlines()[0].split() == ["behaviour", "memory", "redis"]
