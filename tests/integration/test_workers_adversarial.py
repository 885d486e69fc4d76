"""Worker processes under abuse, against a real Redis: handlers that raise, block, are objects or
classes, or write bytes that are not UTF-8; signals twice; a broker that is down or goes away;
a kill nobody waits for; secrets that must not leak. The module's handlers are imported by the
workers by dotted path."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from uuid import uuid4

import pytest

from eventsource_lab import DomainEvent, workers
from eventsource_lab.bus import RedisEventBus, RedisEventBusConfig
from tests.support import events as _events  # noqa: F401  (registers the order events)
from tests.support.processes import end_workers, exists
from tests.support.scenarios import orders
from tests.support.waiting import eventually

WAIT = 30.0
_WORKER_CLI = [sys.executable, "-m", "eventsource_lab", "worker", "--bus", "redis", "--group", "g"]
HERE = "tests.integration.test_workers_adversarial"


# -- handlers the workers import -------------------------------------------------------------


async def fail(event: DomainEvent) -> None:
    """Raise on every event."""
    raise RuntimeError(f"cannot handle {event.event_id}")


async def block(event: DomainEvent) -> None:
    """Say so on stderr, then block the worker's event loop for an hour, as a careless
    synchronous call does."""
    print("blocking", file=sys.stderr, flush=True)
    time.sleep(3600)  # noqa: ASYNC251  (the misbehaviour under test)


async def garbage(event: DomainEvent) -> None:
    """Write 4 KiB of bytes that are not UTF-8 to stderr and stdout for every event."""
    for stream in (sys.stderr, sys.stdout):
        stream.flush()
        stream.buffer.write(b"\xff\xfe" * 2048 + b"\n")
        stream.buffer.flush()


class Projection:
    """A handler object with ``handle()``, as the buses take it."""

    def __init__(self) -> None:
        self.seen = 0

    async def handle(self, event: DomainEvent) -> None:
        self.seen += 1


PROJECTION = Projection()


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture
def spawned() -> Iterator[Callable[..., list[workers.Worker]]]:
    """``spawn``; at teardown every worker is killed and its pid checked gone (not a zombie)."""
    started: list[workers.Worker] = []

    def spawn(*args: Any, **kwargs: Any) -> list[workers.Worker]:
        kwargs.setdefault("ready_timeout", WAIT)
        made = workers.spawn(*args, **kwargs)
        started.extend(made)
        return made

    yield spawn
    end_workers(started, WAIT, kill=True)


@pytest.fixture
def options() -> dict[str, Any]:
    return {"stream_prefix": f"adv-{uuid4().hex[:8]}", "block_ms": 100, "batch_size": 10}


@pytest.fixture
async def publisher(redis_broker, options) -> AsyncIterator[RedisEventBus]:
    bus = RedisEventBus(
        RedisEventBusConfig(redis_url=redis_broker.url, stream_prefix=options["stream_prefix"])
    )
    yield bus
    await bus.shutdown(5)


def _argv(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_text()


def _children() -> set[int]:
    """This process's child pids."""
    me = os.getpid()
    tasks = Path(f"/proc/{me}/task")
    found: set[int] = set()
    for task in tasks.iterdir():
        with_children = task / "children"
        if with_children.exists():
            found |= {int(p) for p in with_children.read_text().split()}
    return found


# -- handlers that misbehave -----------------------------------------------------------------


@pytest.mark.redis
async def test_a_handler_that_always_raises_leaves_the_worker_alive_counting_failures(
    redis_broker, options, publisher, spawned
) -> None:
    (worker,) = spawned(
        "redis", "g", f"{HERE}:fail", url=redis_broker.url, options={**options, "max_retries": 0}
    )
    await publisher.publish(orders(5))
    await eventually(
        lambda: worker.stats().get("handler_errors", 0) >= 5, WAIT, "the failures are counted"
    )
    assert worker.returncode is None
    assert worker.state == "running"
    assert worker.stats().get("events_processed", 0) == 0
    password = urlsplit(redis_broker.url).password
    assert password, "the session's Redis has a password, so this checks something"
    assert password not in worker.log() + _argv(worker.pid)


@pytest.mark.redis
async def test_a_blocked_handler_does_not_keep_a_terminated_worker_alive(
    redis_broker, options, publisher, spawned
) -> None:
    (worker,) = spawned(
        "redis", "g", f"{HERE}:block", url=redis_broker.url, options=options, stop_timeout=1.0
    )
    await publisher.publish(orders(1))
    await eventually(lambda: "blocking" in worker.log(), WAIT, "the handler blocks")
    started = time.monotonic()
    worker.terminate()
    code = worker.wait(WAIT)
    assert time.monotonic() - started < 10, "the stop timeout bounds a graceful stop"
    assert code == -signal.SIGKILL
    assert worker.state == "killed"


@pytest.mark.redis
async def test_two_signals_sent_together_end_stuck_workers_at_once(
    redis_broker, options, publisher, spawned
) -> None:
    """The second signal often lands on another thread (the main one still has the first
    pending), which the blocked main thread never notices: three workers, so that shows."""
    stuck = [
        worker
        for group in ("g1", "g2", "g3")  # a group each: each gets the event and blocks
        for worker in spawned(
            "redis", group, f"{HERE}:block", url=redis_broker.url, options=options
        )
    ]
    await publisher.publish(orders(1))
    for worker in stuck:
        await eventually(lambda w=worker: "blocking" in w.log(), WAIT, "the handler blocks")
    for worker in stuck:
        worker.terminate()
        worker._process.send_signal(signal.SIGINT)
    started = time.monotonic()
    for worker in stuck:
        assert worker.wait(WAIT) in (-signal.SIGINT, -signal.SIGTERM)
    assert time.monotonic() - started < 5, "the stop timeout (30 s) ended them, not the signals"


@pytest.mark.redis
async def test_output_that_is_not_utf8_neither_stalls_the_worker_nor_its_stats(
    redis_broker, options, publisher, spawned
) -> None:
    (worker,) = spawned("redis", "g", f"{HERE}:garbage", url=redis_broker.url, options=options)
    await publisher.publish(orders(100))  # 400 KiB each way: far more than a pipe holds
    await eventually(lambda: worker.stats().get("events_processed", 0) >= 100, WAIT, "all handled")
    assert "\ufffd" in worker.log()
    worker.terminate()
    assert worker.wait(WAIT) == 0
    assert worker.state == "stopped"


@pytest.mark.redis
async def test_a_handler_object_with_handle_is_accepted(
    redis_broker, options, publisher, spawned
) -> None:
    (worker,) = spawned("redis", "g", f"{HERE}:PROJECTION", url=redis_broker.url, options=options)
    await publisher.publish(orders(3))
    await eventually(lambda: worker.stats().get("events_processed", 0) >= 3, WAIT)


@pytest.mark.redis
def test_a_handler_class_fails_at_spawn_as_bad_setup(redis_broker, options) -> None:
    before = _children()
    with pytest.raises(workers.WorkerError, match="exited with 2") as error:
        workers.spawn("redis", "g", f"{HERE}:Projection", url=redis_broker.url, options=options)
    assert "subscribe an instance" in str(error.value)
    assert _children() <= before


# -- bad settings ----------------------------------------------------------------------------


@pytest.mark.redis
@pytest.mark.parametrize(
    "bad, why",
    [
        ({"batch_sise": 10}, "batch_sise"),
        ({"batch_size": "many"}, "batch_size"),
        ({"stream_prefix": "x" * 50_000}, ""),
    ],
)
def test_hostile_settings_fail_at_spawn_or_work(redis_broker, bad, why) -> None:
    before = _children()
    try:
        made = workers.spawn("redis", "g", f"{HERE}:fail", url=redis_broker.url, options=bad)
    except workers.WorkerError as error:
        assert why in str(error)
        assert "exited with 2" in str(error)
    else:
        assert not why, "an invalid setting was accepted"
        for worker in made:
            assert worker.stop(WAIT) == 0
    assert _children() <= before


def test_settings_too_large_for_a_command_line_are_a_worker_error() -> None:
    before = _children()
    with pytest.raises(workers.WorkerError, match="cannot start a worker"):
        workers.spawn("redis", "g", f"{HERE}:fail", options={"stream_prefix": "x" * 300_000})
    assert _children() <= before


@pytest.mark.redis
async def test_a_group_named_like_an_option_is_a_group(
    redis_broker, options, publisher, spawned
) -> None:
    (worker,) = spawned("redis", "-g", f"{HERE}:PROJECTION", url=redis_broker.url, options=options)
    await publisher.publish(orders(2))
    await eventually(lambda: worker.stats().get("events_processed", 0) >= 2, WAIT)


@pytest.mark.parametrize("every", [0, -1.0, float("nan")])
def test_a_report_interval_that_is_not_positive_is_refused(every: float) -> None:
    with pytest.raises(ValueError, match="report_every"):
        workers.spawn("redis", "g", f"{HERE}:fail", report_every=every)


def test_the_cli_refuses_a_report_interval_that_is_not_positive() -> None:
    done = subprocess.run(
        [*_WORKER_CLI, "--handler", f"{HERE}:fail", "--report-every", "0"],
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert done.returncode == 2
    assert "report-every" in done.stderr


# -- processes and signals -------------------------------------------------------------------


@pytest.mark.redis
def test_workers_do_not_share_the_spawners_process_group(redis_broker, options, spawned) -> None:
    """Jupyter interrupts a kernel with killpg(SIGINT): that must not stop its workers."""
    (worker,) = spawned("redis", "g", f"{HERE}:fail", url=redis_broker.url, options=options)
    assert os.getpgid(worker.pid) != os.getpgid(0)


@pytest.mark.redis
def test_a_killed_worker_is_reaped_without_a_wait(redis_broker, options, spawned) -> None:
    (worker,) = spawned("redis", "g", f"{HERE}:fail", url=redis_broker.url, options=options)
    pid = worker.pid
    worker.kill()
    deadline = time.monotonic() + WAIT
    while exists(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not exists(pid), "a killed worker stays a zombie until someone polls it"
    assert worker.state == "killed"


def test_spawn_against_a_broker_that_is_down_fails_soon_without_leaking(tmp_path) -> None:
    url = "redis://worker:s3cr3t-pw@127.0.0.1:1/0"
    before = _children()
    started = time.monotonic()
    with pytest.raises(workers.WorkerError) as error:
        workers.spawn("redis", "g", f"{HERE}:fail", url=url, count=2, ready_timeout=WAIT)
    assert time.monotonic() - started < 15
    assert "s3cr3t-pw" not in str(error.value)
    assert "cannot consume" in str(error.value)
    assert _children() <= before


async def test_a_worker_outlives_its_broker_going_away_and_still_stops_on_sigterm(
    options,
) -> None:
    """The bus reconnects, so the worker waits for its broker; a SIGTERM still ends it."""
    from eventsource_lab import brokers

    with brokers.start("redis", mode="local") as broker:
        (worker,) = workers.spawn(
            "redis", "g", f"{HERE}:fail", url=broker.url, options=options, ready_timeout=WAIT
        )
    try:
        await eventually(lambda: "retrying" in worker.log(), WAIT, "the worker sees the outage")
        assert worker.returncode is None
        worker.terminate()
        assert worker.wait(WAIT) == 0
        assert worker.state == "stopped"
    finally:
        worker.kill()
        worker.wait(WAIT)


# -- modules, output and paths a learner brings ----------------------------------------------


async def shout(event: DomainEvent) -> None:
    """Print to stdout, as a learner debugging a handler does."""
    print(f"handled {event.event_id}")


@pytest.mark.redis
async def test_a_handlers_print_shows_in_the_log_without_unbuffered_python(
    redis_broker, options, publisher, spawned
) -> None:
    """A notebook kernel does not set PYTHONUNBUFFERED; the worker's prints must still arrive."""
    (worker,) = spawned(
        "redis",
        "g",
        f"{HERE}:shout",
        url=redis_broker.url,
        options=options,
        env={"PYTHONUNBUFFERED": ""},  # empty: unset, for Python
    )
    (event,) = orders(1)
    await publisher.publish([event])
    await eventually(lambda: f"handled {event.event_id}" in worker.log(), WAIT, "the print shows")


@pytest.mark.redis
async def test_stray_lines_on_stdout_before_the_worker_starts_do_not_pass_for_reports(
    redis_broker, options, publisher, spawned, tmp_path
) -> None:
    """A sitecustomize (or .pth file) prints before the worker owns its stdout: a line that
    looks like a report, then JSON that is no object. Neither is the worker's report."""
    (tmp_path / "sitecustomize.py").write_text("print('{\"state\": \"ready\"}')\nprint('42')\n")
    (worker,) = spawned(
        "redis",
        "g",
        f"{HERE}:PROJECTION",
        url=redis_broker.url,
        options=options,
        env={"PYTHONPATH": str(tmp_path)},
        ready_timeout=10,
    )
    assert worker.stats().get("events_processed") == 0  # its own report, not the stray one
    await publisher.publish(orders(2))
    await eventually(lambda: worker.stats().get("events_processed") == 2, WAIT, "stats still come")


@pytest.mark.redis
def test_a_module_that_exits_at_import_is_a_clear_worker_error(
    redis_broker, options, tmp_path
) -> None:
    """A script passed as a module: it runs its main at import and calls sys.exit(0)."""
    (tmp_path / "my_script.py").write_text("import sys\nsys.exit(0)\n")
    before = _children()
    for where in ({"imports": ["my_script"]}, {"handler": "my_script:main"}):
        with pytest.raises(workers.WorkerError, match="exited with 2") as error:
            workers.spawn(
                "redis",
                "g",
                where.get("handler", f"{HERE}:fail"),
                url=redis_broker.url,
                options=options,
                imports=where.get("imports", ()),
                env={"PYTHONPATH": str(tmp_path)},
            )
        assert "my_script" in str(error.value)
        assert "SystemExit: 0" in str(error.value)
    assert _children() <= before


@pytest.mark.redis
def test_a_worker_killed_while_it_starts_is_a_worker_error(redis_broker, options, tmp_path) -> None:
    (tmp_path / "suicide.py").write_text("import os, signal\nos.kill(os.getpid(), 9)\n")
    before = _children()
    with pytest.raises(workers.WorkerError, match=f"exited with {-signal.SIGKILL}"):
        workers.spawn(
            "redis",
            "g",
            f"{HERE}:fail",
            url=redis_broker.url,
            options=options,
            imports=["suicide"],
            env={"PYTHONPATH": str(tmp_path)},
        )
    assert _children() <= before


@pytest.mark.redis
async def test_a_handler_in_a_path_with_spaces_and_unicode_is_imported(
    redis_broker, options, publisher, spawned, tmp_path
) -> None:
    home = tmp_path / "mes modules é"
    home.mkdir()
    (home / "commandes_ü.py").write_text("async def traiter_ü(event):\n    pass\n")
    (worker,) = spawned(
        "redis",
        "g",
        "commandes_ü:traiter_ü",
        url=redis_broker.url,
        options=options,
        imports=["tests.support.events"],
        env={"PYTHONPATH": str(home), "EVENTSOURCE_LAB_NOT_UTF8": "\udcff"},
    )
    await publisher.publish(orders(2))
    await eventually(lambda: worker.stats().get("events_processed") == 2, WAIT, "handled")


@pytest.mark.parametrize("count", [-1, 1.5, "2"])
def test_a_count_that_is_no_number_of_workers_is_refused(count: Any) -> None:
    with pytest.raises(ValueError, match="count must be"):
        workers.spawn("redis", "g", f"{HERE}:fail", count=count)


def test_one_module_to_import_given_as_a_string_is_a_clear_type_error() -> None:
    before = _children()
    with pytest.raises(TypeError, match=r"\['tests.support.events'\], not"):
        workers.spawn("redis", "g", f"{HERE}:fail", imports="tests.support.events")
    assert _children() <= before


def test_a_count_of_zero_starts_no_worker() -> None:
    before = _children()
    assert workers.spawn("redis", "g", f"{HERE}:fail", count=0) == []
    assert _children() <= before


async def test_adding_a_worker_while_the_broker_is_down_shows_why_and_leaks_nothing() -> None:
    from eventsource_lab.widgets.cluster import ClusterView

    spawner = functools.partial(
        workers.spawn, "redis", "g", f"{HERE}:fail", url="redis://127.0.0.1:1/0"
    )
    view = ClusterView(spawner=spawner)
    before = _children()
    try:
        view._add.click()
        await eventually(lambda: "WorkerError" in view._status.value, WAIT, "the error shows")
        assert "cannot consume" in view._status.value
        assert "adding a worker" not in view._status.value
        assert view.rows == []
        assert _children() <= before
    finally:
        view.close()


async def test_a_worker_added_after_a_failed_add_clears_the_old_error() -> None:
    from eventsource_lab.widgets.cluster import ClusterView

    outcomes: list[Any] = [workers.WorkerError("broker down"), []]

    def spawner() -> list[workers.Worker]:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    view = ClusterView(spawner=spawner)
    try:
        view._add.click()
        await eventually(lambda: "broker down" in view._status.value, WAIT, "the error shows")
        view._add.click()
        await eventually(lambda: not outcomes, WAIT, "the second add ran")
        await eventually(lambda: view._status.value == "", WAIT, "the old error goes")
    finally:
        view.close()
