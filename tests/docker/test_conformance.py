"""The conformance suite, unchanged, on RedisEventBus against Redis in a container."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from uuid import uuid4

import pytest

from eventsource_lab.brokers import Broker, start
from eventsource_lab.bus import RedisEventBus, RedisEventBusConfig
from tests.conformance.suite import BusConformance
from tests.docker.conftest import DockerLab

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def container_redis(docker_engine: DockerLab) -> Iterator[Broker]:
    """One Redis container for the module: the suite only reads and writes its own streams."""
    docker_engine.require("redis")
    with docker_engine.pointed_at():
        broker = start("redis", mode="container")
    try:
        yield broker
    finally:
        with docker_engine.pointed_at():
            broker.stop()


class TestRedisContainerConformance(BusConformance):
    @pytest.fixture
    async def bus(self, container_redis: Broker) -> AsyncIterator[RedisEventBus]:
        assert container_redis.mode == "container"
        config = RedisEventBusConfig(
            redis_url=container_redis.url,
            stream_prefix=f"conf-{uuid4().hex[:8]}",
            block_ms=200,
            max_retries=0,
        )
        async with RedisEventBus(config) as bus:
            await bus.start_consuming()
            yield bus
