"""``python -m eventsource_lab brokers up``: a broker for a shell, until Ctrl-C or SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from eventsource_lab.brokers.probes import check


@pytest.mark.redis
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_brokers_up_prints_the_url_and_stops_cleanly(sig: signal.Signals) -> None:
    command = [sys.executable, "-m", "eventsource_lab", "brokers", "up", "redis", "--mode", "local"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as up:
        try:
            first, export, hint = (up.stdout.readline().strip() for _ in range(3))
            url = first.rsplit(" at ", 1)[1]
            assert first == f"redis broker (local) at {url}"
            assert export == f"export EVENTSOURCE_LAB_REDIS_URL={url}"
            assert hint == "Ctrl-C stops it."
            check("redis", url)
            up.send_signal(sig)
            out, err = up.communicate(timeout=30)
        finally:
            if up.poll() is None:
                up.kill()
    assert (up.returncode, out, err) == (0, "redis broker stopped\n", "")
    with pytest.raises(OSError):
        check("redis", url, timeout=1.0)
