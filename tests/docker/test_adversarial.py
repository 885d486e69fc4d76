"""Container mode as a demanding user meets it: interrupted and simultaneous starts, secrets in
every message, restarts of containers that went away, a hung engine, a loud notebook, bad
settings and odd images. Each test here found a fault once, or guards a promise nobody had
tested on a real engine; all run against the session's own Docker engine.
"""

from __future__ import annotations

import _thread
import asyncio
import contextlib
import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
import traceback
import warnings
from collections.abc import Iterator
from typing import Any

import docker
import pytest
import redis

from eventsource_lab.brokers import (
    BrokerUnavailableError,
    astart,
    base,
    container_specs,
    containers,
    diagnose,
    format_report,
    publish,
    start,
)
from eventsource_lab.brokers.images import DEFAULT_IMAGES, DURABLE_LABEL, HUB_PREFIX_ENV
from eventsource_lab.brokers.quiet import LOGGERS
from eventsource_lab.errors import BrokerError
from tests.docker import standins
from tests.docker.conftest import DockerLab

pytestmark = pytest.mark.docker

#: Seconds within which a start that cannot work must have said so (and auto gone local).
FAIL_FAST = 10.0
#: A test image whose "broker" prints its arguments and environment, then exits: what a broker
#: that rejects its configuration does (and so what lands in the error's log tail).
TELLTALE = "eslab-adversarial/telltale:1"
_TELLTALE_SCRIPT = """#!/bin/sh
echo "argv: $*"
export -p
exit 3
"""


# --- helpers ------------------------------------------------------------------------------


def _containers(client: docker.DockerClient) -> list[str]:
    """Every container the engine has, running or not, by name (one call: no race with a
    container removed between the listing and a look at it)."""
    return [name for c in client.api.containers(all=True) for name in c["Names"]]


def _settings(names: list[str]) -> tuple[Any, ...]:
    """Everything about logging and warnings a start could leave changed, for ``names``."""
    loggers = [logging.getLogger(name or None) for name in names]
    return (
        [(g.level, list(g.handlers), list(g.filters), g.propagate, g.disabled) for g in loggers],
        list(warnings.filters),
        warnings.showwarning,
        logging.root.manager.disable,
    )


def _logger_names() -> list[str]:
    """The root logger, the quiet libraries' loggers and every child of theirs that exists."""
    children = [n for n in logging.root.manager.loggerDict if n.split(".")[0] in LOGGERS]
    return ["", *LOGGERS, *children]


def _build_telltale(client: docker.DockerClient) -> None:
    """TELLTALE from this machine's ``dash``: ``redis-server`` on its PATH is the script, which
    is also the image's command (so a RabbitMQ container, given none, runs it too)."""
    dash = standins._binary("dash")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(dash.resolve(), arcname="bin/sh")
        for inside, here in standins._libraries([dash]).items():
            tar.add(here.resolve(), arcname=inside)
        script = _TELLTALE_SCRIPT.encode()
        info = tarfile.TarInfo("usr/bin/redis-server")
        info.size, info.mode = len(script), 0o755
        tar.addfile(info, io.BytesIO(script))
    repository, _, tag = TELLTALE.rpartition(":")
    client.api.import_image(
        src=buffer.getvalue(),
        repository=repository,
        tag=tag,
        changes=["ENV PATH=/usr/bin:/bin", 'CMD ["redis-server"]'],
    )


def _labelled(client: docker.DockerClient, number: int, value: str) -> str:
    """The Redis stand-in again, its durable label set to ``value``; its name."""
    name = f"eslab-adversarial/durable:{number}"
    dockerfile = f'FROM {DEFAULT_IMAGES["redis"]}\nLABEL {DURABLE_LABEL}="{value}"\n'
    client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=name, rm=True)
    return name


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _python(code: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``code`` in a fresh interpreter (nothing imported, nothing warned yet), as a new
    notebook kernel would run it, with this test's environment."""
    return subprocess.run(
        [sys.executable, "-W", "always", "-c", code],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def images_made(docker_engine: DockerLab) -> Iterator[list[str]]:
    """Images the tests make; removed at the end of the module."""
    made: list[str] = []
    yield made
    with contextlib.closing(docker_engine.engine.client()) as client:
        for name in made:
            client.images.remove(name, force=True)


@pytest.fixture
def telltale(docker_client: docker.DockerClient, images_made: list[str]) -> str:
    if TELLTALE not in images_made:
        _build_telltale(docker_client)
        images_made.append(TELLTALE)
    return TELLTALE


@pytest.fixture
def secrets_given(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every secret the launcher hands a container during the test (recorded, not changed)."""
    given: list[str] = []
    real = container_specs.spec

    def recording(kind: str, host: str, port: int) -> container_specs.Spec:
        made = real(kind, host, port)
        given.extend(made.secrets)
        return made

    monkeypatch.setattr(container_specs, "spec", recording)
    return given


@pytest.fixture
def never_answers(docker_engine: DockerLab, docker_env: pytest.MonkeyPatch) -> None:
    """Redis containers run an image that boots but never speaks Redis (the Kafka stand-in)."""
    docker_engine.require("kafka")
    docker_env.setenv("EVENTSOURCE_LAB_REDIS_IMAGE", DEFAULT_IMAGES["kafka"])


# --- leftovers ----------------------------------------------------------------------------


def test_a_start_interrupted_while_the_container_boots_leaves_nothing(
    never_answers: None, docker_client: docker.DockerClient
) -> None:
    seen: list[str] = []

    def interrupt_once_it_boots() -> None:
        deadline = time.monotonic() + FAIL_FAST
        while not seen and time.monotonic() < deadline:
            seen.extend(_containers(docker_client))
            time.sleep(0.02)
        _thread.interrupt_main()  # Ctrl-C, or a notebook's interrupt button

    names = _logger_names()
    before = _settings(names)
    watcher = threading.Thread(target=interrupt_once_it_boots)
    watcher.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            start("redis", mode="container")
    finally:
        watcher.join(timeout=FAIL_FAST)
    assert seen, "the container never showed up to be interrupted"
    assert _containers(docker_client) == []
    assert _settings(names) == before


def test_a_start_interrupted_as_the_container_is_created_leaves_nothing(
    docker_engine: DockerLab,
    docker_env: pytest.MonkeyPatch,
    docker_client: docker.DockerClient,
) -> None:
    # docker-py creates the container, then reads it back before testcontainers holds it: a
    # Ctrl-C in between (seen once in a loaded CI rehearsal) left no handle, and it stayed.
    docker_engine.require("redis")
    read_back = docker.models.containers.ContainerCollection.get
    interrupted: list[str] = []

    def interrupt_once(self: object, container_id: str) -> object:
        if not interrupted:
            interrupted.append(container_id)
            raise KeyboardInterrupt
        return read_back(self, container_id)

    docker_env.setattr(docker.models.containers.ContainerCollection, "get", interrupt_once)
    with pytest.raises(KeyboardInterrupt):
        start("redis", mode="container")
    assert interrupted, "the start never reached the read-back"
    assert _containers(docker_client) == []


def test_a_container_that_never_answers_is_removed_when_its_time_is_up(
    never_answers: None, docker_env: pytest.MonkeyPatch, docker_client: docker.DockerClient
) -> None:
    docker_env.setitem(containers.READY_TIMEOUT, "redis", 1.0)
    began = time.monotonic()
    with pytest.raises(BrokerUnavailableError, match="did not answer within 1 s"):
        start("redis", mode="container")
    assert time.monotonic() - began < FAIL_FAST
    assert _containers(docker_client) == []


def test_a_cancelled_astart_leaves_no_container(
    docker_engine: DockerLab, docker_env: pytest.MonkeyPatch, docker_client: docker.DockerClient
) -> None:
    docker_engine.require("redis")
    alive = set(base._live)

    def booting() -> bool:  # created, not yet answering: Redis takes ~0.2 s from here
        deadline = time.monotonic() + FAIL_FAST
        while not _containers(docker_client) and time.monotonic() < deadline:
            time.sleep(0.005)
        return bool(_containers(docker_client))

    async def cancel_once_it_boots() -> None:
        task = asyncio.create_task(astart("redis", mode="container"))
        assert await asyncio.to_thread(booting)
        task.cancel()  # a notebook's interrupt of `await brokers.astart("redis")`
        with pytest.raises(asyncio.CancelledError):
            await task

    try:
        asyncio.run(cancel_once_it_boots())  # returns once the worker thread is done too
        assert _containers(docker_client) == []
    finally:
        for orphan in set(base._live) - alive:
            orphan.stop()


async def test_two_starts_at_once_get_two_brokers(
    docker_engine: DockerLab, docker_env: pytest.MonkeyPatch, docker_client: docker.DockerClient
) -> None:
    docker_engine.require("redis")
    names = _logger_names()
    before = _settings(names)
    first, second = await asyncio.gather(
        astart("redis", mode="container"), astart("redis", mode="container")
    )
    try:
        assert first.port != second.port and first.url != second.url
        assert first.is_running() and second.is_running()
        assert len(docker_client.containers.list()) == 2
    finally:
        await asyncio.gather(first.astop(), second.astop())
    assert _settings(names) == before  # the muffler counted both threads in and out
    assert _containers(docker_client) == []


def test_a_port_taken_between_the_pick_and_the_publish_is_picked_again(
    docker_engine: DockerLab, docker_env: pytest.MonkeyPatch, docker_client: docker.DockerClient
) -> None:
    docker_engine.require("redis")
    picks: list[int] = []
    with socket.socket() as squatter:
        squatter.bind((docker_engine.expected_host(None), 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        real = publish.free_port

        def first_the_taken_one(bind: str) -> int:  # another process won the race for it
            picks.append(taken if not picks else real(bind))
            return picks[-1]

        docker_env.setattr(publish, "free_port", first_the_taken_one)
        with start("redis", mode="container") as broker:
            assert picks[0] == taken and broker.port == picks[-1] != taken
            assert broker.is_running()
            assert len(docker_client.containers.list(all=True)) == 1
    assert _containers(docker_client) == []


# --- secrets ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["redis", "rabbitmq"])
def test_no_secret_in_what_a_failed_start_shows(
    kind: str,
    telltale: str,
    docker_env: pytest.MonkeyPatch,
    docker_client: docker.DockerClient,
    secrets_given: list[str],
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    docker_env.setenv(f"EVENTSOURCE_LAB_{kind.upper()}_IMAGE", telltale)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(BrokerUnavailableError) as raised:
        start(kind, mode="container")
    error = raised.value
    shown = "\n".join(
        [
            str(error),
            repr(error),
            *error.reasons,
            "".join(traceback.format_exception(error)),  # the chain a notebook prints
            caplog.text,
            *capfd.readouterr(),
        ]
    )
    assert "exited (code 3)" in shown
    told = "argv: --requirepass ***" if kind == "redis" else "RABBITMQ_DEFAULT_PASS='***'"
    assert told in shown  # the log tail is there, with the secret blanked
    assert secrets_given
    for secret in secrets_given:
        assert secret not in shown
    assert _containers(docker_client) == []


def test_no_password_of_docker_host_in_reasons_or_the_doctor(
    docker_env: pytest.MonkeyPatch,
) -> None:
    password = "s3cr3t-of-the-engine"
    docker_env.setenv("DOCKER_HOST", f"tcp://alice:{password}@127.0.0.1:{_closed_port()}")
    with pytest.raises(BrokerUnavailableError) as raised:
        start("redis", mode="container")
    report = format_report(diagnose())
    assert "no Docker engine answered" in raised.value.reasons[0]
    assert password not in str(raised.value) and password not in report


# --- restart and stop ---------------------------------------------------------------------


def test_restart_keeps_url_binding_and_data_and_a_removed_container_is_named(
    connection_mode: str | None,
    docker_engine: DockerLab,
    docker_client: docker.DockerClient,
) -> None:
    docker_engine.require("redis")
    host = docker_engine.expected_host(connection_mode)
    broker = start("redis", mode="container")
    try:
        (container,) = docker_client.containers.list()
        bindings = {"6379/tcp": [{"HostIp": host, "HostPort": str(broker.port)}]}
        assert container.attrs["HostConfig"]["PortBindings"] == bindings  # never 0.0.0.0
        password = broker.url.split("@")[0].rsplit(":", 1)[1]
        assert password not in repr(broker)
        with redis.Redis.from_url(broker.url, socket_timeout=5) as client:
            client.set("kept", "yes")
        url = broker.url
        broker.restart()
        assert broker.url == url
        container.reload()
        assert container.attrs["HostConfig"]["PortBindings"] == bindings
        with redis.Redis.from_url(broker.url, socket_timeout=5) as client:
            assert client.get("kept") == b"yes"

        container.remove(force=True)  # behind the launcher's back
        began = time.monotonic()
        with pytest.raises(BrokerError, match=r"container is gone .* start a new one"):
            broker.restart()
        assert time.monotonic() - began < FAIL_FAST
    finally:
        broker.stop()
        broker.stop()  # twice is fine
    assert _containers(docker_client) == []


def test_stop_gives_up_on_a_hung_engine_in_bounded_time(
    docker_engine: DockerLab, docker_env: pytest.MonkeyPatch, docker_client: docker.DockerClient
) -> None:
    docker_engine.require("redis")
    docker_env.setattr(containers, "CONTAINER_TIMEOUT", 2)  # 10 s: too long to wait for here
    broker = start("redis", mode="container")
    engine = docker_engine.engine.process.pid
    os.kill(engine, signal.SIGSTOP)  # Docker Desktop frozen, say
    try:
        began = time.monotonic()
        broker.stop()
        took = time.monotonic() - began
    finally:
        os.kill(engine, signal.SIGCONT)
    assert took < containers.CONTAINER_TIMEOUT + 2, f"stop took {took:.1f} s"
    for container in docker_client.api.containers(all=True):  # what the hung engine kept
        with contextlib.suppress(docker.errors.APIError):  # 409: the stop's removal goes on
            docker_client.api.remove_container(container["Id"], force=True)
        with contextlib.suppress(docker.errors.NotFound):
            docker_client.api.wait(container["Id"], timeout=FAIL_FAST, condition="removed")
    assert _containers(docker_client) == []


# --- quietness ----------------------------------------------------------------------------


class _ToStderr(logging.Handler):
    """Prints every record to the stderr of the moment, as ``logging.basicConfig``'s would."""

    def emit(self, record: logging.LogRecord) -> None:
        sys.stderr.write(f"{self.format(record)}\n")


def test_a_loud_notebook_hears_nothing_and_keeps_its_settings(
    docker_engine: DockerLab,
    docker_env: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    docker_engine.require("redis")
    root = logging.getLogger()
    handler, level = _ToStderr(), root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            names = _logger_names()
            before = _settings(names)
            capfd.readouterr()
            with start("redis", mode="container") as broker:
                assert broker.mode == "container"
            assert _settings(names) == before
            docker_env.setenv("EVENTSOURCE_LAB_REDIS_IMAGE", "eslab-missing:none")
            with pytest.raises(BrokerUnavailableError):
                start("redis", mode="container")
            assert _settings(names) == before
            with start("redis") as broker:
                assert broker.mode == "local"
            assert _settings(names) == before
            assert capfd.readouterr() == ("", "")
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def test_testcontainers_own_root_warning_neither_prints_nor_configures_logging(
    docker_engine: DockerLab, docker_env: pytest.MonkeyPatch
) -> None:
    docker_engine.require("redis")
    auths = {"auths": {"mirror.school.invalid": {"auth": "c3R1ZGVudDpwdw=="}}}
    docker_env.setenv("DOCKER_AUTH_CONFIG", json.dumps(auths))  # a class's registry login
    done = _python(
        "import logging\n"
        "from eventsource_lab.brokers import start\n"
        "with start('redis') as broker:\n"
        "    print(broker.mode, len(logging.getLogger().handlers))\n"
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.split()[1] == "0"  # no handler left on the root logger


# --- connection settings ------------------------------------------------------------------


def test_an_unknown_connection_mode_is_a_reason_and_auto_goes_local(
    docker_engine: DockerLab, docker_env: pytest.MonkeyPatch
) -> None:
    docker_env.setenv(publish.MODE_ENV, "garbage")
    done = _python(  # testcontainers, imported with it, raises ValueError from its import
        "from eventsource_lab.__main__ import main\n"
        "from eventsource_lab.brokers import BrokerUnavailableError, start\n"
        "try:\n"
        "    start('redis', mode='container')\n"
        "except BrokerUnavailableError as e:\n"
        "    print(e.reasons[0])\n"
        "with start('redis') as broker:\n"
        "    print(broker.mode)\n"
        "print('pull', main(['brokers', 'pull', 'redis']))\n"
    )
    said = "TESTCONTAINERS_CONNECTION_MODE='garbage' is none of docker_host, gateway_ip, bridge_ip"
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"container: {said}", "local", "pull 1"]
    assert done.stderr == f"nothing pulled: {said}\n"


def test_an_engine_that_refuses_fails_fast_and_auto_goes_local(
    docker_env: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    port = _closed_port()
    docker_env.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{port}")
    began = time.monotonic()
    with pytest.raises(BrokerUnavailableError) as raised:
        start("redis", mode="container")
    assert time.monotonic() - began < FAIL_FAST
    assert raised.value.reasons[0].startswith(
        f"container: no Docker engine answered at tcp://127.0.0.1:{port} ("
    )
    began = time.monotonic()
    with start("redis") as broker:
        assert broker.mode == "local"
    assert time.monotonic() - began < FAIL_FAST
    assert capfd.readouterr() == ("", "")


# --- images -------------------------------------------------------------------------------


def test_the_durable_label_is_read_as_people_write_it(
    docker_engine: DockerLab,
    docker_env: pytest.MonkeyPatch,
    docker_client: docker.DockerClient,
    images_made: list[str],
) -> None:
    docker_engine.require("redis")
    expected = {"false": False, "False": False, " FALSE ": False, "0": False, "no": False}
    expected |= {"true": True, "1": True, "": True}
    named, found = {}, {}
    for number, value in enumerate(expected):
        named[value] = _labelled(docker_client, number, value)
        images_made.append(named[value])
        docker_env.setenv("EVENTSOURCE_LAB_REDIS_IMAGE", named[value])
        found[value] = containers.container_status()["redis"].durable
    assert found == expected
    docker_env.setenv("EVENTSOURCE_LAB_REDIS_IMAGE", named[""])
    with start("redis", mode="container") as broker:
        assert broker.durable is True
    docker_env.setenv("EVENTSOURCE_LAB_REDIS_IMAGE", named["False"])
    with start("redis", mode="container") as broker:
        assert broker.durable is False and "nothing" in broker.traits.durability


def test_a_mirror_name_and_the_hub_prefix_together(
    docker_engine: DockerLab,
    docker_env: pytest.MonkeyPatch,
    docker_client: docker.DockerClient,
    images_made: list[str],
) -> None:
    docker_engine.require("redis")
    mirror = "mirror.school:5000/library/"
    docker_client.images.get(DEFAULT_IMAGES["redis"]).tag(f"{mirror}redis", "7-alpine")
    images_made.append(f"{mirror}redis:7-alpine")
    docker_env.setenv(HUB_PREFIX_ENV, mirror)
    with start("redis", mode="container") as broker:  # the prefix before the hub name
        (container,) = docker_client.containers.list()
        assert container.attrs["Config"]["Image"] == f"{mirror}redis:7-alpine"
        assert broker.is_running()
    # the class also names the mirror's image in full: the prefix must not go before it again
    docker_env.setenv("EVENTSOURCE_LAB_REDIS_IMAGE", f"{mirror}redis:7-alpine")
    assert f"{mirror}redis:7-alpine here" in containers.container_status()["redis"].detail
    with start("redis", mode="container") as broker:
        (container,) = docker_client.containers.list()
        assert container.attrs["Config"]["Image"] == f"{mirror}redis:7-alpine"
    assert _containers(docker_client) == []


def test_an_image_name_docker_cannot_parse_is_named_as_such(
    docker_env: pytest.MonkeyPatch,
) -> None:
    docker_env.setenv("EVENTSOURCE_LAB_REDIS_IMAGE", "Redis:7")
    with pytest.raises(BrokerUnavailableError) as raised:
        start("redis", mode="container")
    (reason,) = raised.value.reasons
    assert reason.startswith("container: Redis:7 is no valid image name (")
    assert reason.endswith("; see EVENTSOURCE_LAB_REDIS_IMAGE")
    row = containers.container_status()["redis"]
    assert not row.available and row.detail.startswith("Redis:7 is no valid image name")
    present, why = containers.pull_image("Redis:7")  # what `brokers pull` does with it
    assert not present and why and why.startswith("Redis:7 is no valid image name")
