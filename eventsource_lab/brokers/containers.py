"""Brokers in Docker containers through testcontainers, where a Docker engine answers."""

from __future__ import annotations

import gc
import importlib
import secrets
import warnings
from typing import Any

from ..errors import BrokerUnavailableError
from ..redact import redact_text, redact_url
from . import probes
from .base import Broker, build_url, free_port, unavailable, wait_until_ready

__all__ = ["IMAGES", "container_class", "docker_status", "start_container"]

IMAGES = {
    "redis": "redis:7-alpine",
    "rabbitmq": "rabbitmq:3.13-alpine",
    "kafka": "confluentinc/cp-kafka:7.6.0",
}
READY_TIMEOUT = 120.0
# testcontainers 4.15 moved the modules under testcontainers.community; the old paths warn.
_CLASSES = {
    "redis": ("redis", "RedisContainer"),
    "rabbitmq": ("rabbitmq", "RabbitMqContainer"),
    "kafka": ("kafka", "KafkaContainer"),
}


def docker_status() -> tuple[bool, str]:
    """``(True, version)`` when a Docker engine answers a ping, else ``(False, why not)``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            import docker

            client = docker.from_env(timeout=5)
            try:
                client.ping()
                return True, f"Docker {client.version().get('Version', '?')} answers"
            finally:
                client.close()
        except Exception as e:  # any failure at all means: no usable Docker here
            reason = f"no Docker engine answered ({type(e).__name__}: {e})"
        gc.collect()  # docker-py leaves the failed socket in a cycle: close it while muted
    return False, reason


def container_class(kind: str) -> Any:
    """The testcontainers class for ``kind``; BrokerUnavailableError if it cannot be imported."""
    module, name = _CLASSES[kind]
    errors = []
    with warnings.catch_warnings():
        # testcontainers' own rabbitmq module still uses its deprecated wait decorator
        warnings.simplefilter("ignore", DeprecationWarning)
        for path in (f"testcontainers.community.{module}", f"testcontainers.{module}"):
            try:
                return getattr(importlib.import_module(path), name)
            except ImportError as e:
                errors.append(str(e))
    raise unavailable(
        kind,
        [
            f"container: testcontainers cannot be imported ({errors[0]}): pip install "
            f"'testcontainers[{module}]'"
        ],
    )


def start_container(kind: str) -> Broker:
    """Start a ``kind`` broker in a container published on 127.0.0.1; return once it answers."""
    ok, why = docker_status()
    if not ok:
        raise unavailable(kind, [f"container: {why}"])
    cls = container_class(kind)
    user, password = f"eslab-{secrets.token_hex(4)}", secrets.token_hex(12)
    if kind == "rabbitmq":
        container = cls(IMAGES[kind], username=user, password=password)
    else:
        container = cls(IMAGES[kind])
    # Publish on loopback only, on a port we pick: a restart then keeps the URL.
    container.ports[str(container.port)] = ("127.0.0.1", free_port())
    try:
        container.start()
        host = container.get_container_host_ip()
        port = int(container.get_exposed_port(container.port))
        login = (user, password) if kind == "rabbitmq" else (None, None)  # Redis: no password
        url = build_url(kind, host, port, *login)
        _wait(kind, url)
    except BaseException as e:
        _quietly_stop(container)
        if isinstance(e, BrokerUnavailableError) or not isinstance(e, Exception):
            raise
        reason = redact_text(f"container: {type(e).__name__}: {e}", [password])
        raise unavailable(kind, [reason]) from e
    return Broker(kind, "container", url, _ContainerRunner(kind, url, container))


def _wait(kind: str, url: str) -> None:
    wait_until_ready(
        kind, f"container at {redact_url(url)}", lambda: probes.check(kind, url), READY_TIMEOUT
    )


def _quietly_stop(container: Any) -> None:
    try:
        container.stop()
    except Exception:  # the container may never have started
        pass


class _ContainerRunner:
    """A started container: stop removes it; restart restarts it in place."""

    data_dir = None

    def __init__(self, kind: str, url: str, container: Any) -> None:
        self.kind = kind
        self.url = url
        self.container = container

    def stop(self) -> None:
        _quietly_stop(self.container)

    def restart(self) -> None:
        self.container.get_wrapped_container().restart()
        _wait(self.kind, self.url)

    def pids(self) -> list[int]:
        return []  # its processes live in the container
