"""The fault suite's durability test against brokers in containers: what is published while a
group's consumers are stopped survives ``broker.restart()`` (a ``docker restart``).

The Kafka stand-in is tansu, which keeps topics in memory: its image says so
(``org.eventsource-lab.durable=false``), the launcher believes it, and the same test then checks
that fact instead: the events are gone after the restart. The real apache/kafka image keeps its
log and is durable; it cannot be had here (no registry).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from eventsource_lab.brokers import Broker, start
from tests.docker.conftest import DockerLab
from tests.faults import test_durability

pytestmark = pytest.mark.docker

buses = test_durability.buses  # the fixture the fault suite's check takes


@pytest.fixture(scope="module", params=["redis", "rabbitmq", "kafka"])
def broker(docker_engine: DockerLab, request: pytest.FixtureRequest) -> Iterator[Broker]:
    """A container broker of the module's own, which the test restarts."""
    docker_engine.require(request.param)
    with docker_engine.pointed_at():
        started = start(request.param, mode="container")
    try:
        yield started
    finally:
        with docker_engine.pointed_at():
            started.stop()


async def test_what_is_published_while_the_group_is_stopped_is_kept_as_the_image_says(
    broker: Broker, buses: Callable[..., Any], docker_engine: DockerLab
) -> None:
    assert (broker.mode, broker.durable) == ("container", broker.kind != "kafka")
    if broker.kind == "kafka":
        assert "org.eventsource-lab.durable=false" in broker.traits.durability
    with docker_engine.pointed_at():  # restart() talks to the engine
        await test_durability.test_events_published_while_the_group_is_stopped_survive_a_restart(
            broker, buses
        )
