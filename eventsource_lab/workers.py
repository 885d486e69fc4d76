"""Workers as processes: one bus consumer per OS process, started by ``python -m eventsource_lab
worker`` or :func:`spawn`, so a group can be scaled out, stopped gracefully or killed for real.

A worker imports its handler by dotted path (``package.module:callable``), subscribes it to every
event, consumes until SIGTERM/SIGINT (then finishes what it holds, acknowledges or commits it and
leaves the group through ``bus.shutdown()``) and writes one JSON line of its state and
``bus.get_stats()`` to stdout every ``report_every`` seconds. Nothing crosses the process
boundary but argv, environment and those lines: no pickle. Its own prints go to stderr. A stop
is bounded: past ``stop_timeout`` the worker kills itself, and a second signal ends it at once.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import importlib
import json
import math
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any

from pydantic import ValidationError

from .brokers.base import ENV_VARS
from .bus.broker import BrokerEventBus
from .bus.handlers import as_subscriber

__all__ = [
    "BUSES",
    "Worker",
    "WorkerError",
    "load_handler",
    "load_modules",
    "make_bus",
    "run_worker",
    "spawn",
]

BUSES = ("redis", "rabbitmq", "kafka")
_URL_FIELD = {"redis": "redis_url", "rabbitmq": "rabbitmq_url", "kafka": "bootstrap_servers"}
BAD_SETUP = 2
"""The exit code of a worker that could not start: its handler or settings were wrong."""
STOP_TIMEOUT = 30.0
"""Seconds a stopping worker may take to finish what it holds before it kills itself."""
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class WorkerError(RuntimeError):
    """A worker process could not start; the message says why (its own words included)."""


# -- inside the worker process ---------------------------------------------------------------


def load_handler(path: str) -> Callable[..., Any]:
    """Import ``package.module:callable`` (the attribute may be dotted); raise ``WorkerError``
    saying what is wrong when it does not import or is not callable."""
    module_name, sep, attribute = path.partition(":")
    if not sep or not module_name or not attribute:
        raise WorkerError(f"handler {path!r} is not of the form package.module:callable")
    try:
        target: Any = importlib.import_module(module_name)
        for name in attribute.split("."):
            target = getattr(target, name)
    except (Exception, SystemExit) as exc:  # an import can raise anything (a script: exit)
        raise WorkerError(f"cannot load handler {path!r}: {type(exc).__name__}: {exc}") from exc
    try:
        as_subscriber(target)  # what the bus takes: a function or an object with handle()
    except TypeError as exc:
        raise WorkerError(f"handler {path!r} is not callable as a handler: {exc}") from exc
    return target


def load_modules(names: Sequence[str]) -> None:
    """Import each module in ``names`` (say, the one that registers the events a generic
    handler receives); raise ``WorkerError`` naming one that does not import."""
    for name in names:
        try:
            importlib.import_module(name)
        except (Exception, SystemExit) as exc:  # an import can raise anything (a script: exit)
            raise WorkerError(f"cannot import {name!r}: {type(exc).__name__}: {exc}") from exc


def make_bus(
    kind: str, group: str, url: str | None = None, options: Mapping[str, Any] | None = None
) -> BrokerEventBus:
    """A ``kind`` bus consuming as ``group``; ``url`` (when given) and ``options`` set its config.
    Raises ``WorkerError`` for an unknown kind or invalid settings (passwords not echoed)."""
    from .bus import (
        KafkaEventBus,
        KafkaEventBusConfig,
        RabbitMQEventBus,
        RabbitMQEventBusConfig,
        RedisEventBus,
        RedisEventBusConfig,
    )

    classes: dict[str, tuple[Any, Any]] = {
        "redis": (RedisEventBus, RedisEventBusConfig),
        "rabbitmq": (RabbitMQEventBus, RabbitMQEventBusConfig),
        "kafka": (KafkaEventBus, KafkaEventBusConfig),
    }
    if kind not in classes:
        raise WorkerError(f"bus {kind!r} is none of {', '.join(BUSES)}")
    bus_class, config_class = classes[kind]
    settings = {**(options or {}), "consumer_group": group}
    if url is not None:
        settings[_URL_FIELD[kind]] = url
    try:
        return bus_class(config_class(**settings))
    except ValidationError as exc:
        raise WorkerError(f"invalid {kind} bus settings: {exc}") from exc


async def run_worker(
    kind: str,
    group: str,
    handler: str,
    url: str | None = None,
    options: Mapping[str, Any] | None = None,
    *,
    imports: Sequence[str] = (),
    report_every: float = 1.0,
    report: IO[str] | None = None,
    stop_on_stdin_eof: bool = False,
    stop_timeout: float = STOP_TIMEOUT,
) -> int:
    """Consume until SIGTERM/SIGINT (exit 0), the consumer loop dies (1) or, with
    ``stop_on_stdin_eof``, stdin closes (the spawning process is gone); report to ``report``.

    A stop that takes over ``stop_timeout`` seconds (a handler blocking the loop, say) ends in
    SIGKILL; a second SIGTERM/SIGINT ends the worker at once, as that signal does by default.
    """
    _check_positive("report_every", report_every)
    _check_positive("stop_timeout", stop_timeout)
    out = report or sys.stdout
    bus = make_bus(kind, group, url, options)
    load_modules(imports)
    bus.subscribe_to_all_events(load_handler(handler))
    stopper = _Stopper(asyncio.get_running_loop(), stop_timeout)
    stop = stopper.stop
    for sig in _STOP_SIGNALS:
        signal.signal(sig, stopper.on_signal)  # runs even while a handler blocks the loop
    threading.Thread(target=_relay_signals, args=(_wakeup_pipe(),), daemon=True).start()
    if stop_on_stdin_eof:
        threading.Thread(target=_wait_for_eof, args=(stopper,), daemon=True).start()

    def write(state: str) -> None:
        line = {"pid": os.getpid(), "state": state, "group": group, "stats": bus.get_stats()}
        with contextlib.suppress(BrokenPipeError):  # nobody reads them any more: work on
            out.write(json.dumps({**line, "consumer": bus.config.consumer_name}) + "\n")
            out.flush()

    try:
        try:
            await bus.start_consuming()
        except Exception as exc:  # the broker unreachable, say: the bus's message names it
            raise WorkerError(f"cannot consume from {kind}: {type(exc).__name__}: {exc}") from exc
        write("ready")
        consumer = bus.start_consuming_in_background()  # the running loop's task
        while not stop.is_set() and not consumer.done():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), report_every)
            write("running")
        failed = consumer.done() and not stop.is_set()
    finally:
        await bus.shutdown()
    if failed:
        print(f"worker: the consumer loop stopped: {bus.consumer_error!r}", file=sys.stderr)
    write("failed" if failed else "stopped")
    return 1 if failed else 0


class _Stopper:
    """Stops a worker on its first signal (or stdin EOF), bounded by a SIGKILL watchdog."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self.stop = asyncio.Event()
        self._loop = loop
        self._timeout = timeout
        self._requested = threading.Event()

    def request(self) -> None:
        """Set ``stop`` in the loop; kill this process if it still runs ``timeout`` later."""
        if self._requested.is_set():
            return
        self._requested.set()
        with contextlib.suppress(RuntimeError):  # the loop already closed
            self._loop.call_soon_threadsafe(self.stop.set)
        watchdog = threading.Timer(self._timeout, os.kill, (os.getpid(), signal.SIGKILL))
        watchdog.daemon = True
        watchdog.start()

    def on_signal(self, signum: int, _frame: object) -> None:
        """First signal: stop gracefully; a repeated one: die of it now."""
        if self._requested.is_set():
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
        self.request()


def _wakeup_pipe() -> int:
    """A pipe that gets the number of each signal with a Python handler, whichever thread it
    lands on; its read end."""
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    return read_end


def _relay_signals(wakeup: int) -> None:
    """Send the second stop signal on to the main thread. One that lands on another thread (the
    kernel's choice while the main thread still has the first pending) waits for the main
    thread to wake, which a handler blocking it never does; sent to it, it wakes it."""
    seen = 0
    with contextlib.suppress(OSError):
        while data := os.read(wakeup, 1):
            seen += data[0] in _STOP_SIGNALS
            if seen == 2:
                signal.pthread_kill(threading.main_thread().ident or 0, data[0])


def _wait_for_eof(stopper: _Stopper) -> None:
    """Block until stdin closes, then stop the worker (its parent died or let it go)."""
    with contextlib.suppress(OSError):  # the raw fd: a buffered stdin's lock aborts the exit
        while os.read(sys.stdin.fileno(), 4096):
            pass
    stopper.request()


def _check_positive(name: str, value: float) -> None:
    """``ValueError`` unless ``value`` is a finite number above zero."""
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")


def main(
    kind: str,
    group: str,
    handler: str,
    url: str | None,
    settings: list[str],
    imports: list[str],
    report_every: float,
    stop_on_stdin_eof: bool,
    stop_timeout: float = STOP_TIMEOUT,
) -> int:
    """The ``worker`` command: stats lines keep stdout to themselves (prints go to stderr)."""
    report = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout.reconfigure(line_buffering=True)  # a print shows in the log now, not at exit
    try:
        options = dict(_setting(s) for s in settings)
        return asyncio.run(
            run_worker(
                kind,
                group,
                handler,
                url,
                options,
                imports=imports,
                report_every=report_every,
                report=report,
                stop_on_stdin_eof=stop_on_stdin_eof,
                stop_timeout=stop_timeout,
            )
        )
    except (WorkerError, ValueError) as exc:
        print(f"worker: {exc}", file=sys.stderr)
        return BAD_SETUP
    finally:
        with contextlib.suppress(BrokenPipeError):
            report.close()


def _setting(text: str) -> tuple[str, Any]:
    """``key=value`` with a JSON value (``500``, ``true``, ``"x"``), or else the plain string."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise WorkerError(f"setting {text!r} is not KEY=VALUE")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


# -- in the spawning process -----------------------------------------------------------------


class Worker:
    """A running worker process: its ``pid``, the latest ``stats()`` it reported, and
    ``terminate()`` (graceful), ``kill()`` (SIGKILL), ``wait()`` and ``stop()``."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self._process = process
        self._latest: dict[str, Any] = {}
        self._settled = threading.Event()  # ready, or its stdout ended
        self._log: collections.deque[str] = collections.deque(maxlen=50)
        self._readers = [
            threading.Thread(target=self._read_reports, daemon=True),
            threading.Thread(target=self._read_log, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        """The exit code once it ended (negative: the signal that ended it), else ``None``."""
        return self._process.poll()

    @property
    def state(self) -> str:
        """``starting``, ``ready``, ``running``, ``stopped``, ``failed`` or ``killed``."""
        reported = self._latest.get("state", "starting")
        code = self.returncode
        if code is None or reported in ("stopped", "failed"):
            return reported
        return "killed" if code < 0 else "failed"

    def stats(self) -> dict[str, int]:
        """The bus counters the worker last reported (final once it stopped gracefully)."""
        return dict(self._latest.get("stats", {}))

    def log(self) -> str:
        """The last lines the worker wrote to stderr."""
        return "".join(self._log)

    def terminate(self) -> None:
        """SIGTERM: finish what it holds, acknowledge/commit, leave the group, exit 0."""
        if self.returncode is None:
            self._process.terminate()

    def kill(self) -> None:
        """SIGKILL: it ends at once; the broker hands what it held to the group's others."""
        if self.returncode is None:
            self._process.kill()

    def wait(self, timeout: float) -> int:
        """Its exit code, once its reports are all read; ``TimeoutError`` after ``timeout``."""
        try:
            code = self._process.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            raise TimeoutError(f"worker {self.pid} still runs after {timeout:g}s") from exc
        for reader in self._readers:
            reader.join(timeout)
        return code

    def stop(self, timeout: float = 10.0) -> int:
        """Terminate, and kill if it has not ended within ``timeout``; its exit code."""
        self.terminate()
        try:
            return self.wait(timeout)
        except TimeoutError:
            self.kill()
            return self.wait(timeout)

    def __repr__(self) -> str:
        return f"<Worker pid={self.pid} {self.state}>"

    def _read_reports(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            with contextlib.suppress(json.JSONDecodeError):
                report = json.loads(line)
                if isinstance(report, dict) and report.get("pid") == self.pid:  # not a stray print
                    self._latest = report
                    if report.get("state") == "ready":
                        self._settled.set()
        self._settled.set()
        self._process.wait()  # reap it: a killed worker nobody waits for is no zombie

    def _read_log(self) -> None:
        assert self._process.stderr is not None
        for line in self._process.stderr:
            self._log.append(line)

    def _wait_ready(self, timeout: float) -> None:
        if not self._settled.wait(timeout):
            raise WorkerError(f"worker {self.pid} not consuming after {timeout:g}s:\n{self.log()}")
        if self.state != "ready" and self.state != "running":
            code = self.wait(timeout)
            raise WorkerError(f"worker {self.pid} exited with {code}:\n{self.log()}".rstrip())


def spawn(
    bus: str,
    group: str,
    handler: str,
    *,
    url: str | None = None,
    count: int = 1,
    options: Mapping[str, Any] | None = None,
    imports: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    report_every: float = 0.2,
    ready_timeout: float = 30.0,
    stop_timeout: float = STOP_TIMEOUT,
) -> list[Worker]:
    """Start ``count`` worker processes of ``group`` on ``bus`` and return once each consumes.

    ``handler`` must import in a child started with this process's working directory and
    environment; ``imports`` are modules the child imports first (those registering the events,
    where the handler's own module does not); ``options`` are more bus settings (JSON values),
    ``env`` extra environment variables. If any worker cannot start (its handler does not
    import, say), all are ended and ``WorkerError`` says why. A worker whose spawning process
    dies stops by itself; a stopping worker that takes over ``stop_timeout`` seconds kills
    itself. Workers run in their own session, so an interrupt of the spawner's process group
    (Jupyter's) does not stop them.
    """
    _check_positive("report_every", report_every)
    _check_positive("stop_timeout", stop_timeout)
    if isinstance(imports, str):  # it would be imported letter by letter
        raise TypeError(f"imports takes a list of module names: [{imports!r}], not {imports!r}")
    if not isinstance(count, int) or count < 0:
        raise ValueError(f"count must be a whole number of workers, 0 or more; got {count!r}")
    if bus not in BUSES:
        raise WorkerError(f"bus {bus!r} is none of {', '.join(BUSES)}")
    command = [sys.executable, "-m", "eventsource_lab", "worker", f"--bus={bus}"]
    command += [f"--group={group}", f"--handler={handler}"]  # "=": a value may start with "-"
    command += [f"--report-every={report_every}", f"--stop-timeout={stop_timeout}"]
    command += ["--stop-on-stdin-eof"]
    command += [f"--import={module}" for module in imports]
    for key, value in (options or {}).items():
        command += ["--set", f"{key}={json.dumps(value)}"]
    environment = {**os.environ, **(env or {})}
    if url is not None:  # through the environment: argv, password and all, is public in ps
        environment[ENV_VARS[bus]] = url
    workers: list[Worker] = []
    try:
        for _ in range(count):
            try:
                process = _popen(command, environment)
            except OSError as exc:  # E2BIG: settings too large for a command line, say
                raise WorkerError(f"cannot start a worker: {exc}") from exc
            workers.append(Worker(process))
        for worker in workers:
            worker._wait_ready(ready_timeout)
    except BaseException:
        for worker in workers:
            worker.kill()
            with contextlib.suppress(TimeoutError):
                worker.wait(ready_timeout)
        raise
    return workers


def _popen(command: list[str], environment: Mapping[str, str]) -> subprocess.Popen[str]:
    """One worker process: stdin its lifeline, stdout its reports, stderr its log."""
    return subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        encoding="utf-8",
        errors="replace",  # a handler's stray bytes must not kill the pipe's reader
        env=environment,
        start_new_session=True,  # not stopped by an interrupt of our process group
    )
