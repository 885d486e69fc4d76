"""A Docker engine of the test session's own: ``dockerd`` under a temp dir, stopped by its PID.

Nothing else on the machine sees it: its data root, exec root, pid file and socket live in the
temp dir, and its default network is a bridge made for it alone (so two sessions' engines never
hand out the same addresses). It leaves the host's firewall and forwarding alone
(``--iptables=false``): published ports go through Docker's userland proxy, which is all a
client on this machine needs.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import docker

__all__ = ["Engine", "EngineError", "start_engine", "why_no_engine"]

READY_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0
# The bridge gets a /24 of this range that no interface or route of the machine uses yet.
SUBNETS = ipaddress.ip_network("10.213.0.0/16")


class EngineError(Exception):
    """The engine could not be started; the message says why (with the tail of its log)."""


@dataclass
class Engine:
    """A running ``dockerd``: where to reach it and what to clean up."""

    root: Path
    process: subprocess.Popen[bytes]
    bridge: str
    gateway: str

    @property
    def socket(self) -> Path:
        return self.root / "docker.sock"

    @property
    def host(self) -> str:
        """The ``DOCKER_HOST`` value that reaches this engine."""
        return f"unix://{self.socket}"

    def client(self) -> docker.DockerClient:
        """A docker-py client of this engine (close it when done)."""
        return docker.DockerClient(base_url=self.host, timeout=30)

    def log_tail(self, lines: int = 20) -> str:
        log = self.root / "dockerd.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """Stop ``dockerd`` by its PID (SIGKILL after a grace period), then remove its traces:
        leftover processes of its own (containerd, shims), mounts under its root, the bridge,
        the temp dir."""
        _end(self.process.pid, self.process)
        for pid in _processes_under(self.root):
            _end(pid)
        for mount in reversed(_mounts_under(self.root)):
            subprocess.run(["umount", "-l", mount], check=False, capture_output=True)
        subprocess.run(["ip", "link", "delete", self.bridge], check=False, capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


def why_no_engine() -> str | None:
    """Why this machine cannot run a test engine (None: it can)."""
    if os.geteuid() != 0:
        return "a Docker engine of the session's own needs root (dockerd runs as root)"
    for binary, package in (("dockerd", "docker.io"), ("ip", "iproute2")):
        if _find(binary) is None:
            return f"{binary} not found: apt-get install {package}"
    return None


def _find(binary: str) -> str | None:
    """``binary`` on PATH or in the sbin directories (not on every PATH, even root's)."""
    return shutil.which(binary, path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")


def start_engine() -> Engine:
    """Start ``dockerd`` under a new temp dir; return once it answers a ping."""
    root = Path(tempfile.mkdtemp(prefix="eslab-docker-"))
    bridge, gateway = _make_bridge()
    log = open(root / "dockerd.log", "wb")  # the child writes it; ours is closed below
    try:
        process = subprocess.Popen(
            [
                _find("dockerd") or "dockerd",
                f"--data-root={root / 'data'}",
                f"--exec-root={root / 'exec'}",
                f"--pidfile={root / 'dockerd.pid'}",
                f"--host=unix://{root / 'docker.sock'}",
                f"--bridge={bridge}",
                "--iptables=false",
                "--ip-forward=false",
                "--ip-masq=false",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C reaches pytest, which stops it in order
        )
    except OSError:
        subprocess.run(["ip", "link", "delete", bridge], check=False, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
        raise
    finally:
        log.close()
    engine = Engine(root, process, bridge, gateway)
    try:
        _wait_until_ready(engine)
    except BaseException:
        engine.stop()
        raise
    return engine


def _make_bridge() -> tuple[str, str]:
    """A new bridge interface with a free /24 of ours: ``(name, gateway address)``."""
    used = subprocess.run(
        ["ip", "-4", "-o", "route", "show", "table", "all"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    taken = [
        ipaddress.ip_network(word, strict=False)
        for word in used.split()
        if "/" in word and word[0].isdigit()
    ]
    free = [
        net
        for net in SUBNETS.subnets(new_prefix=24)
        if not any(net.overlaps(other) for other in taken)
    ]
    if not free:
        raise EngineError(f"no free /24 left in {SUBNETS} for the test engine's bridge")
    subnet = free[secrets.randbelow(len(free))]
    name, gateway = f"eslab{secrets.token_hex(3)}", str(subnet.network_address + 1)
    for command in (
        ["ip", "link", "add", name, "type", "bridge"],
        ["ip", "addr", "add", f"{gateway}/24", "dev", name],
        ["ip", "link", "set", name, "up"],
    ):
        done = subprocess.run(command, check=False, capture_output=True, text=True)
        if done.returncode != 0:
            subprocess.run(["ip", "link", "delete", name], check=False, capture_output=True)
            raise EngineError(f"{' '.join(command)} failed: {done.stderr.strip()}")
    return name, gateway


def _wait_until_ready(engine: Engine) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    last = "no answer yet"
    while time.monotonic() < deadline:
        if engine.process.poll() is not None:
            raise EngineError(
                f"dockerd exited with {engine.process.returncode}:\n{engine.log_tail()}"
            )
        if engine.socket.exists():
            try:
                client = docker.DockerClient(base_url=engine.host, timeout=2)
                try:
                    client.ping()
                    return
                finally:
                    client.close()
            except docker.errors.DockerException as e:
                last = f"{type(e).__name__}: {e}"
        time.sleep(0.05)
    raise EngineError(
        f"dockerd did not answer within {READY_TIMEOUT:.0f} s ({last}):\n{engine.log_tail()}"
    )


def _end(pid: int, process: subprocess.Popen[bytes] | None = None) -> None:
    """SIGTERM ``pid``, SIGKILL if it outlives the grace period; reap it if it is our child."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while _alive(pid, process) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(pid, process):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        if process is not None:
            process.wait(timeout=STOP_TIMEOUT)


def _alive(pid: int, process: subprocess.Popen[bytes] | None) -> bool:
    if process is not None:
        return process.poll() is None
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def _processes_under(root: Path) -> list[int]:
    """PIDs whose command line names ``root``: containerd and shims the engine started."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if str(root).encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
    return found


def _mounts_under(root: Path) -> list[str]:
    """Mount points under ``root`` (overlays, netns, shm a killed engine left), in mount order."""
    mounts = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        point = line.split()[1].encode().decode("unicode_escape")
        if point == str(root) or point.startswith(f"{root}/"):
            mounts.append(point)
    return mounts
