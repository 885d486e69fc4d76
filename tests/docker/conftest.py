"""The container tests' fixtures: a Docker engine of the session's own with the stand-in images,
and, per test, the environment that points the launcher at it.

Only these tests see the engine: ``DOCKER_HOST`` names it for the duration of one test (or of
one module's shared container) and is taken away again, so the session's other brokers stay
local processes. At the end no container, network or volume may be left in it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import docker
import pytest

from eventsource_lab.brokers import ENV_VARS
from eventsource_lab.brokers.images import HUB_PREFIX_ENV, IMAGE_ENV_VARS
from eventsource_lab.brokers.publish import MODE_ENV
from tests.conftest import skip_or_fail
from tests.docker import standins
from tests.docker.engine import Engine, EngineError, start_engine, why_no_engine

#: Environment that would point docker-py or testcontainers elsewhere, or change the images.
_FOREIGN_ENV = (
    "DOCKER_TLS_VERIFY",
    "DOCKER_CERT_PATH",
    "DOCKER_CONTEXT",
    "TC_HOST",
    "TESTCONTAINERS_HOST_OVERRIDE",
    MODE_ENV,
    HUB_PREFIX_ENV,
    *IMAGE_ENV_VARS.values(),
    *ENV_VARS.values(),
)
#: What testcontainers reads once, at import, and the launcher sets from the environment.
_TESTCONTAINERS_CONFIG = ("connection_mode_override", "_ryuk_disabled", "hub_image_name_prefix")
DEFAULT_NETWORKS = {"bridge", "host", "none"}


@dataclass
class DockerLab:
    """The session's engine, the stand-in images it has, and the times the tests measured."""

    engine: Engine
    unbuilt: dict[str, str] = field(default_factory=dict)  # kind -> why its image is missing
    timings: dict[str, float] = field(default_factory=dict)

    def require(self, kind: str) -> None:
        """Skip (fail under CI) a test whose kind has no stand-in image."""
        if kind in self.unbuilt:
            skip_or_fail(f"no {kind} stand-in image: {self.unbuilt[kind]}")

    @contextlib.contextmanager
    def pointed_at(self, connection_mode: str | None = None) -> Iterator[pytest.MonkeyPatch]:
        """The launcher talks to this engine (testcontainers' reaper off) until the block ends;
        ``connection_mode`` sets ``TESTCONTAINERS_CONNECTION_MODE`` (None: as the machine is)."""
        from testcontainers.core.config import testcontainers_config

        with pytest.MonkeyPatch.context() as patch:
            for name in _FOREIGN_ENV:
                patch.delenv(name, raising=False)
            for attr in _TESTCONTAINERS_CONFIG:  # restored on the way out
                patch.setattr(testcontainers_config, attr, getattr(testcontainers_config, attr))
            patch.setenv("DOCKER_HOST", self.engine.host)
            patch.setenv("TESTCONTAINERS_RYUK_DISABLED", "true")  # Ryuk has no image here
            if connection_mode:
                patch.setenv(MODE_ENV, connection_mode)
            yield patch

    def expected_host(self, connection_mode: str | None) -> str:
        """Where the launcher must publish (and the URL point): loopback where the client
        reaches containers through the host, else the bridge gateway."""
        mode = connection_mode or ("gateway_ip" if Path("/.dockerenv").exists() else "docker_host")
        return "127.0.0.1" if mode == "docker_host" else self.engine.gateway


_LAB: list[DockerLab] = []  # the session's, for the terminal summary


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[DockerLab]:
    """A ``dockerd`` of the session's own with every stand-in image built (once); at the end it
    must hold no container, network or volume of ours, and is stopped by its PID."""
    why = why_no_engine()
    if why:
        skip_or_fail(f"no Docker engine for the container tests: {why}")
    began = time.monotonic()
    try:
        engine = start_engine()
    except EngineError as e:
        skip_or_fail(f"no Docker engine for the container tests: {e}")
    lab = DockerLab(engine)
    lab.timings["dockerd ready"] = time.monotonic() - began
    _LAB.append(lab)
    try:
        with contextlib.closing(engine.client()) as client:
            for kind in standins.STANDINS:
                try:
                    lab.timings[f"build {kind} stand-in"] = standins.build(client, kind)
                except (OSError, docker.errors.DockerException, RuntimeError) as e:
                    lab.unbuilt[kind] = f"{type(e).__name__}: {e}"
        yield lab
        with contextlib.closing(engine.client()) as client:
            left = _leftovers(client)
    finally:
        began = time.monotonic()
        engine.stop()
        lab.timings["dockerd stop"] = time.monotonic() - began
    assert not left, f"the container tests left these in the engine: {left}"


def _leftovers(client: docker.DockerClient) -> list[str]:
    return [
        *(f"container {c.name} ({c.image.tags})" for c in client.containers.list(all=True)),
        *(f"network {n.name}" for n in client.networks.list() if n.name not in DEFAULT_NETWORKS),
        *(f"volume {v.name}" for v in client.volumes.list()),
    ]


@pytest.fixture
def docker_env(docker_engine: DockerLab) -> Iterator[pytest.MonkeyPatch]:
    """This test's launcher uses the session's engine, as the machine is (connection mode)."""
    with docker_engine.pointed_at() as patch:
        yield patch


CONNECTION_MODES = [
    pytest.param(None, id="as-this-machine-is"),  # here: gateway_ip, for /.dockerenv exists
    pytest.param("docker_host", id="docker_host"),
]


@pytest.fixture(params=CONNECTION_MODES)
def connection_mode(docker_env: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> str | None:
    """Each test that takes it runs in both connection modes (None: as the machine is)."""
    if request.param:
        docker_env.setenv(MODE_ENV, request.param)
    return request.param


@pytest.fixture
def docker_client(docker_engine: DockerLab) -> Iterator[docker.DockerClient]:
    """A docker-py client of the session's engine, for looking at what the launcher did."""
    with contextlib.closing(docker_engine.engine.client()) as client:
        yield client


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The engine's and the containers' times, for the record (seconds)."""
    for lab in _LAB:
        terminalreporter.section("docker: times (s)")
        for what, seconds in lab.timings.items():
            terminalreporter.write_line(f"{what:<48}{seconds:7.2f}")
