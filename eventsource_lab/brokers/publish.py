"""Where a container's port is published: on the one address this process will reach it by.

testcontainers reaches a container in one of its connection modes: through the Docker host
(``docker_host``: outside a container, or with a remote engine) or, inside a container
(``/.dockerenv``: devcontainers, Codespaces, JupyterHub-in-Docker, these lab machines), through
the bridge network's gateway (``gateway_ip``). The launcher follows the same rule, reading
``TESTCONTAINERS_CONNECTION_MODE`` each time it starts a container (testcontainers reads it
once, at import), and publishes the port on that address only: loopback for a local engine in
``docker_host`` mode, else the gateway. ``bridge_ip`` is served as ``gateway_ip`` is: the host
port is picked before the start (Kafka must advertise it), when no container address exists yet.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from . import base

__all__ = ["CONNECTION_MODES", "MODE_ENV", "Publish", "connection_mode", "free_port", "plan"]

MODE_ENV = "TESTCONTAINERS_CONNECTION_MODE"
CONNECTION_MODES = ("docker_host", "gateway_ip", "bridge_ip")
_HOST_ENVS = ("TC_HOST", "TESTCONTAINERS_HOST_OVERRIDE")
_LOOPBACK = {"localhost", "127.0.0.1", "::1"}


@dataclass(frozen=True)
class Publish:
    """How a container is reached: the connection ``mode``, the ``host`` in the broker's URL,
    and the host address Docker publishes its port on (``bind``)."""

    mode: str
    host: str
    bind: str

    def __str__(self) -> str:
        return f"published on {self.bind} ({self.mode})"


def inside_container() -> bool:
    """Whether this process runs in a container: testcontainers' own test (``/.dockerenv``)."""
    return Path("/.dockerenv").exists()


def engine_host() -> str:
    """The Docker host as testcontainers names it: ``TC_HOST``, a remote ``DOCKER_HOST``, or
    ``localhost`` for a local socket."""
    for name in _HOST_ENVS:
        if os.environ.get(name):
            return os.environ[name]
    docker_host = os.environ.get("DOCKER_HOST", "")
    if docker_host.startswith(("tcp://", "ssh://", "http://", "https://")):
        return urlsplit(docker_host).hostname or "localhost"
    return "localhost"


def connection_mode(host: str) -> str:
    """``TESTCONTAINERS_CONNECTION_MODE`` as it is set now, else what testcontainers would pick
    for an engine at ``host``; ValueError for a value testcontainers does not know."""
    value = os.environ.get(MODE_ENV)
    if value:
        if value not in CONNECTION_MODES:
            raise ValueError(f"{MODE_ENV}={value!r} is none of {', '.join(CONNECTION_MODES)}")
        return value
    return "gateway_ip" if inside_container() and host in _LOOPBACK else "docker_host"


def plan(client: Any) -> Publish:
    """Where to publish a container of the engine behind ``client`` (a docker-py client)."""
    host = engine_host()
    mode = connection_mode(host)
    if mode != "docker_host":
        gateway = bridge_gateway(client)
        return Publish(mode, gateway, gateway)
    if host in _LOOPBACK:
        return Publish(mode, "127.0.0.1", "127.0.0.1")
    return Publish(mode, host, socket.gethostbyname(host))  # a remote engine: on its address


def bridge_gateway(client: Any) -> str:
    """The IPv4 gateway of Docker's ``bridge`` network (its subnet's first address if unnamed)."""
    ipam = client.networks.get("bridge").attrs.get("IPAM") or {}
    for config in ipam.get("Config") or []:
        gateway = (config.get("Gateway") or "").split("/")[0]
        if gateway and ":" not in gateway:
            return gateway
        subnet = config.get("Subnet") or ""
        if subnet and ":" not in subnet:
            return str(next(ipaddress.ip_network(subnet, strict=False).hosts()))
    raise LookupError("Docker's bridge network names no IPv4 gateway")


def free_port(bind: str) -> int:
    """A port free on ``bind`` a moment ago (on loopback if ``bind`` is not this machine's)."""
    try:
        with socket.socket() as sock:
            sock.bind((bind, 0))
            return sock.getsockname()[1]
    except OSError:
        return base.free_port()
