"""``python -m eventsource_lab brokers up``: a broker for a shell, until Ctrl-C or SIGTERM."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from eventsource_lab.brokers.probes import check
from eventsource_lab.redact import redact_url


@pytest.mark.redis
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_brokers_up_prints_the_url_and_stops_cleanly(sig: signal.Signals) -> None:
    command = [sys.executable, "-m", "eventsource_lab", "brokers", "up", "redis", "--mode", "local"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as up:
        try:
            first, export, hint = (up.stdout.readline().strip() for _ in range(3))
            url = export.removeprefix("export EVENTSOURCE_LAB_REDIS_URL=")
            password = urlsplit(url).password
            assert password and password not in first  # the summary line is for people
            assert first == f"redis broker (local) at {redact_url(url)}"
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


@pytest.mark.redis
def test_brokers_serve_writes_the_passwords_to_a_private_file_only(tmp_path: Path) -> None:
    env_file = tmp_path / "brokers.env"
    env_file.with_name("brokers.env.partial").write_text("stale, world-readable\n")
    env_file.with_name("brokers.env.partial").chmod(0o644)
    command = [sys.executable, "-m", "eventsource_lab", "brokers", "serve", "redis"]
    command += ["--mode", "local", "--env-file", str(env_file)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as up:
        try:
            shown = [up.stdout.readline() for _ in range(3)]  # written after the env file
            assert stat.S_IMODE(os.stat(env_file).st_mode) == 0o600
            line = env_file.read_text().strip()
            url = line.removeprefix("export EVENTSOURCE_LAB_REDIS_URL=")
            password = urlsplit(url).password
            assert password and line.startswith("export ")
            check("redis", url)
            up.send_signal(signal.SIGTERM)
            out, err = up.communicate(timeout=30)
        finally:
            if up.poll() is None:
                up.kill()
    assert up.returncode == 0, err
    printed = "".join(shown) + out + err
    assert password not in printed
    assert f"export EVENTSOURCE_LAB_REDIS_URL={redact_url(url)}" in printed
    assert f"(with the passwords in {env_file})" in printed
    with pytest.raises(OSError):  # serve stopped its broker before it exited
        check("redis", url, timeout=1.0)


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["redis", "--nodes", "3"], "only rabbitmq runs as a cluster here"),
        (["rabbitmq", "--nodes", "0"], "nodes must be 1 (one broker) or more"),
        (["rabbitmq", "--nodes", "3", "--mode", "container"], "local"),
    ],
)
def test_brokers_up_refuses_a_cluster_it_cannot_start(argv: list[str], says: str) -> None:
    command = [sys.executable, "-m", "eventsource_lab", "brokers", "up", *argv]
    done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith("brokers up: ") and says in done.stderr
