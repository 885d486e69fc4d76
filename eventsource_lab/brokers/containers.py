"""Brokers in Docker containers through testcontainers, where a Docker engine answers.

Each broker runs as a plain testcontainers ``DockerContainer`` (its reaper removes it should
Python die), its port published on one host port picked beforehand, on the address this process
reaches it by (:mod:`.publish`). Readiness is our own protocol probe, bounded per kind by
``READY_TIMEOUT``: a container that cannot be reached fails with the reason and is removed.
While this module works with Docker, its libraries write nothing (:mod:`.quiet`).
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

from ..errors import BrokerError, BrokerUnavailableError
from ..redact import redact_text, redact_url
from . import container_specs, images, probes, publish
from .base import KINDS, TRAITS, Broker, Traits, unavailable, wait_until_ready
from .quiet import muted

__all__ = [
    "IMAGES",
    "PULL_COMMAND",
    "READY_TIMEOUT",
    "ContainerStatus",
    "container_class",
    "container_status",
    "container_traits",
    "docker_status",
    "images_to_pull",
    "pull_image",
    "start_container",
]

#: The default image per kind (``images.configured_image`` applies the overrides).
IMAGES = images.DEFAULT_IMAGES
#: Seconds from start until the broker answers its protocol (RabbitMQ and Kafka boot slower).
READY_TIMEOUT = {"redis": 30.0, "rabbitmq": 60.0, "kafka": 60.0}
DOCKER_TIMEOUT = 30  # seconds for one Docker API call (a ping gets 5; a pull's pauses too)
#: Seconds for one call about a started container (create, start, remove; a restart gets its
#: 10 s stop grace on top): a stop, even at exit, gives up on a hung engine after this long.
CONTAINER_TIMEOUT = 10
PORT_ATTEMPTS = 3  # host ports tried, should another process take the picked one first
LOG_LINES = 20  # of a failed container's log, in the error
PULL_COMMAND = "python -m eventsource_lab brokers pull"


@dataclass(frozen=True)
class ContainerStatus:
    """Whether a ``kind`` container can start here without a download (``available``), why,
    the images it would have to pull first, and whether its image keeps data across a restart."""

    available: bool
    detail: str
    missing: tuple[str, ...] = ()
    durable: bool = True


def _engine() -> tuple[Any | None, str]:
    """A docker-py client whose engine answered a ping, and a line saying so; (None, why not)."""
    try:  # testcontainers reads the mode as it is imported, and fails the import on a bad one
        publish.connection_mode(publish.engine_host())
    except ValueError as e:
        return None, str(e)
    try:
        import docker

        client = docker.from_env(timeout=5)
        try:
            client.ping()
            version = client.version().get("Version", "?")
        except Exception:
            client.close()
            raise
        client.api.timeout = DOCKER_TIMEOUT
        return client, f"Docker {version} answers"
    except Exception as e:  # any failure at all means: no usable Docker here
        reason = _why_no_engine(e)
    gc.collect()  # docker-py leaves the failed socket in a cycle: close it while muted
    return None, reason


def _why_no_engine(error: Exception) -> str:
    """One line a learner can act on: a missing socket says so instead of docker-py's chain."""
    host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    if host.startswith("unix://") and not Path(host.removeprefix("unix://")).exists():
        return f"no Docker engine answered: no socket at {host.removeprefix('unix://')}"
    # docker-py's error may quote DOCKER_HOST whole, a password in it included
    return redact_text(f"no Docker engine answered at {host} ({type(error).__name__}: {error})")


def docker_status() -> tuple[bool, str]:
    """``(True, version)`` when a Docker engine answers a ping, else ``(False, why not)``."""
    with muted():
        client, detail = _engine()
        if client is not None:
            client.close()
    return client is not None, detail


def container_class(kind: str) -> Any:
    """testcontainers' ``DockerContainer``; BrokerUnavailableError if it cannot be imported."""
    try:
        from testcontainers.core.container import DockerContainer
    except ImportError as e:
        why = f"container: testcontainers cannot be imported ({e}): pip install testcontainers"
        raise unavailable(kind, [why]) from e
    return DockerContainer


def container_traits(kind: str, durable: bool) -> Traits:
    """What a ``kind`` container keeps and lets in, given its image's durable label."""
    traits = TRAITS[kind, "container"]
    if durable:
        return traits
    keeps = f"nothing: its image is labelled {images.DURABLE_LABEL}=false"
    return Traits(False, keeps, traits.access)


def _follow_env() -> None:
    """Make what testcontainers read once, at import, what the environment says now."""
    from testcontainers.core.config import ConnectionMode
    from testcontainers.core.config import testcontainers_config as config

    mode = os.environ.get(publish.MODE_ENV)
    config.connection_mode_override = ConnectionMode(mode) if mode else None
    config.ryuk_disabled = images.reaper_image() is None
    config.hub_image_name_prefix = os.environ.get(images.HUB_PREFIX_ENV, "")


def _wanted(client: Any, kind: str) -> list[images.ImageState]:
    """The images a ``kind`` container needs: the broker's, then the reaper's (if enabled)."""
    names = [images.image_name(kind), images.reaper_image()]
    try:
        return [images.inspect(client, name) for name in names if name]
    except images.ImageNameError as e:
        raise unavailable(kind, [f"container: {e}; see {images.IMAGE_ENV_VARS[kind]}"]) from e


def _ready_image(client: Any, kind: str, pull: bool) -> images.ImageState:
    """The broker's image, once the engine has every image the start needs."""
    wanted = _wanted(client, kind)
    missing = [state.name for state in wanted if not state.present]
    if missing and not pull:
        raise unavailable(
            kind,
            [
                f"container: {' and '.join(missing)} not here (auto mode pulls only where no "
                f"local broker can be had; `{PULL_COMMAND} {kind}` pulls it)"
            ],
        )
    for name in missing:
        try:
            images.pull(client, name)
        except images.ImagePullError as e:
            raise unavailable(kind, [redact_text(f"container: cannot pull {name}: {e}")]) from e
    return wanted[0] if wanted[0].present else images.inspect(client, wanted[0].name)


def start_container(kind: str, pull: bool = True) -> Broker:
    """Start a ``kind`` broker in a container; return once it answers its protocol.

    ``pull``: pull the images the engine lacks (the broker's, testcontainers' reaper's). Without
    it a missing image fails at once: auto mode does not wait for a download where a local
    process can be had.
    """
    with muted():
        client, why = _engine()
        if client is None:
            raise unavailable(kind, [f"container: {why}"])
        try:
            return _start(client, kind, pull)
        finally:
            client.close()


def _start(client: Any, kind: str, pull: bool) -> Broker:
    cls = container_class(kind)
    secrets: list[str] = []
    container = None
    try:
        image = _ready_image(client, kind, pull)
        where = publish.plan(client)
        _follow_env()
        for attempt in range(1, PORT_ATTEMPTS + 1):
            port = publish.free_port(where.bind)
            spec = container_specs.spec(kind, where.host, port)
            secrets += spec.secrets
            container = _container(cls, kind, spec, (where.bind, port))
            try:
                container.start()
                break
            except Exception as e:
                if attempt == PORT_ATTEMPTS or not _port_taken(e):
                    raise
                _quietly_remove(client, container)  # the port was taken after the pick
                container = None
        _wait(kind, spec.url, container, secrets)
    except BaseException as e:
        if container is not None:
            _quietly_remove(client, container)
        if isinstance(e, BrokerUnavailableError) or not isinstance(e, Exception):
            raise
        raise unavailable(
            kind, [redact_text(f"container: {type(e).__name__}: {e}", secrets)]
        ) from e
    runner = _ContainerRunner(kind, spec.url, container, secrets)
    return Broker(kind, "container", spec.url, runner, container_traits(kind, image.durable))


def _container(cls: Any, kind: str, spec: container_specs.Spec, bind: tuple[str, int]) -> Any:
    """A ``kind`` container not yet started, its port to be published on ``bind``."""
    name = images.configured_image(kind)
    container = cls(name, docker_client_kw={"timeout": CONTAINER_TIMEOUT})
    container.with_name(f"eventsource-lab-{kind}-{uuid4().hex[:12]}")  # found by it if need be
    if images.names_registry(name):  # testcontainers puts its hub prefix before every name
        container.image = name
    container.ports[str(container_specs.PORTS[kind])] = bind
    container.with_envs(**spec.env)
    if spec.command:
        container.with_command(spec.command)
    return container


def _port_taken(error: Exception) -> bool:
    """Whether Docker refused to start a container because its host port was taken."""
    import docker

    words = ("address already in use", "port is already allocated")
    return isinstance(error, docker.errors.APIError) and any(w in str(error) for w in words)


def _log_tail(wrapped: Any) -> str:
    try:
        tail = wrapped.logs(tail=LOG_LINES).decode(errors="replace").strip()
    except Exception:  # the log is a courtesy: never the reason a start fails
        return ""
    return f"its log ends:\n{tail}" if tail else ""


def _wait(kind: str, url: str, container: Any, secrets: list[str]) -> None:
    """Until the broker at ``url`` answers; at once if its container exits; at most
    ``READY_TIMEOUT[kind]`` seconds."""
    wrapped = container.get_wrapped_container()

    def exited() -> str | None:
        wrapped.reload()
        if wrapped.status not in ("exited", "dead"):
            return None
        code = wrapped.attrs.get("State", {}).get("ExitCode")
        text = f"container: it exited (code {code}) before it answered\n{_log_tail(wrapped)}"
        return redact_text(text.strip(), secrets)

    wait_until_ready(
        kind,
        f"container at {redact_url(url)}",
        lambda: probes.check(kind, url),
        READY_TIMEOUT[kind],
        failed=exited,
        explain=lambda: redact_text(_log_tail(wrapped), secrets),
    )


def _quietly_stop(container: Any) -> None:
    try:
        container.stop()
    except Exception:  # the container may never have started
        pass


def _quietly_remove(client: Any, container: Any) -> None:
    """Remove a container whose start failed or was interrupted. One interrupted inside
    docker-py (created, maybe running, before ``run`` returned) left testcontainers no handle
    to it, so it is also looked up by the name it was given."""
    _quietly_stop(container)
    try:
        client.containers.get(container._name).remove(force=True, v=True)
    except Exception:  # removed by the stop, or never created
        pass


class _ContainerRunner:
    """A started container: stop removes it (and its volumes); restart restarts it in place."""

    data_dir = None

    def __init__(self, kind: str, url: str, container: Any, secrets: list[str]) -> None:
        self.kind = kind
        self.url = url
        self.container = container
        self.secrets = secrets

    def stop(self) -> None:
        with muted():
            _quietly_stop(self.container)

    def restart(self) -> None:
        with muted():
            try:
                self.container.get_wrapped_container().restart()
            except Exception as e:
                raise BrokerError(self._why_no_restart(e)) from None
            _wait(self.kind, self.url, self.container, self.secrets)

    def _why_no_restart(self, error: Exception) -> str:
        import docker

        if isinstance(error, docker.errors.NotFound):
            return (
                f"this {self.kind} broker's container is gone (removed outside the launcher, "
                "say by `docker rm`): start a new one"
            )
        why = redact_text(f"{type(error).__name__}: {error}", self.secrets)
        return f"this {self.kind} broker's container could not be restarted: {why}"

    def pids(self) -> list[int]:
        return []  # its processes live in the container


def container_status() -> dict[str, ContainerStatus]:
    """Per kind: the image a container would run, whether it is here, where it would be
    published; one engine asked for all kinds."""
    with muted():
        client, engine = _engine()
        if client is None:
            return {
                kind: ContainerStatus(False, f"{engine}; would run {images.image_name(kind)}")
                for kind in KINDS
            }
        try:
            return {kind: _status(client, kind, engine) for kind in KINDS}
        finally:
            client.close()


def _status(client: Any, kind: str, engine: str) -> ContainerStatus:
    try:
        container_class(kind)
        wanted = _wanted(client, kind)
        where = publish.plan(client)
    except BrokerUnavailableError as e:
        return ContainerStatus(False, e.reasons[0].removeprefix("container: "))
    except Exception as e:  # a bad connection mode, an engine without a bridge network
        return ContainerStatus(False, redact_text(f"{engine}, but {type(e).__name__}: {e}"))
    missing = tuple(state.name for state in wanted if not state.present)
    have = "; ".join(f"{s.name} {'here' if s.present else 'not here'}" for s in wanted)
    hint = f" (`{PULL_COMMAND} {kind}` pulls it)" if missing else ""
    detail = f"{engine}; {have}{hint}; {where}"
    return ContainerStatus(not missing, detail, missing, wanted[0].durable)


def images_to_pull(kinds: list[str]) -> list[str]:
    """The images containers of ``kinds`` need, the reaper's last (if enabled), each once."""
    names = [images.image_name(kind) for kind in kinds] + [images.reaper_image()]
    return list(dict.fromkeys(name for name in names if name))


def pull_image(name: str) -> tuple[bool, str | None]:
    """Pull ``name``: whether the engine has it afterwards, and why the pull failed (if it did)."""
    with muted():
        client, why = _engine()
        if client is None:
            return False, why
        try:
            images.inspect(client, name)  # a name the engine cannot parse fails here, plainly
            images.pull(client, name)
            return True, None
        except images.ImageNameError as e:
            return False, str(e)
        except images.ImagePullError as e:
            return images.inspect(client, name).present, redact_text(str(e))
        finally:
            client.close()
