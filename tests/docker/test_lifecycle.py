"""Each kind started, restarted and stopped in a container of a real Docker engine, in both of
testcontainers' connection modes that reach containers from here: through the bridge gateway
(as this machine is: ``/.dockerenv``) and through the host (``docker_host``, as on a laptop).
"""

from __future__ import annotations

import time

import docker
import pytest

from eventsource_lab.brokers import start
from eventsource_lab.brokers.container_specs import PORTS
from eventsource_lab.brokers.images import DEFAULT_IMAGES
from eventsource_lab.brokers.probes import check
from tests.docker.conftest import DockerLab

pytestmark = pytest.mark.docker


def _published(client: docker.DockerClient, kind: str) -> tuple[str, tuple[str, int]]:
    """The id of the one container of ``kind``'s image, and the address its port is on."""
    (container,) = client.containers.list(filters={"ancestor": DEFAULT_IMAGES[kind]})
    (binding,) = container.attrs["NetworkSettings"]["Ports"][f"{PORTS[kind]}/tcp"]
    return container.id, (binding["HostIp"], int(binding["HostPort"]))


@pytest.mark.parametrize("kind", ["redis", "rabbitmq", "kafka"])
def test_start_restart_stop(
    kind: str,
    connection_mode: str | None,
    docker_engine: DockerLab,
    docker_client: docker.DockerClient,
) -> None:
    docker_engine.require(kind)
    mode = connection_mode or "as-is"
    began = time.monotonic()
    broker = start(kind, mode="container")
    docker_engine.timings[f"{kind} ({mode}) start"] = time.monotonic() - began
    try:
        assert broker.mode == "container"
        host = docker_engine.expected_host(connection_mode)
        assert broker.host == host
        container_id, address = _published(docker_client, kind)
        assert address == (host, broker.port)  # published where the client reaches it, only
        check(kind, broker.url)

        url, began = broker.url, time.monotonic()
        broker.restart()
        docker_engine.timings[f"{kind} ({mode}) restart"] = time.monotonic() - began
        assert broker.url == url
        assert _published(docker_client, kind) == (container_id, address)  # in place
        check(kind, broker.url)
    finally:
        began = time.monotonic()
        broker.stop()
        docker_engine.timings[f"{kind} ({mode}) stop"] = time.monotonic() - began
    assert docker_client.containers.list(all=True, filters={"id": container_id}) == []
    with pytest.raises(OSError):  # nothing answers there any more: the proxy went with it
        check(kind, url, timeout=1)
