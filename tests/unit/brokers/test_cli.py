"""``python -m eventsource_lab brokers ...`` where no broker is needed."""

from __future__ import annotations

import subprocess
import sys


def test_brokers_up_without_a_way_exits_one_with_the_reason() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "eventsource_lab", "brokers", "up", "kafka", "--mode", "url"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 1 and result.stdout == ""
    assert "EVENTSOURCE_LAB_KAFKA_BOOTSTRAP is not set" in result.stderr
