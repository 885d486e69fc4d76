"""The conformance suite, unchanged, on RedisEventBus against a real Redis."""

from collections.abc import AsyncIterator
from uuid import uuid4

import pytest

from eventsource_lab.bus import RedisEventBus, RedisEventBusConfig

from .suite import BusConformance

pytestmark = pytest.mark.redis


class TestRedisConformance(BusConformance):
    @pytest.fixture
    async def bus(self, redis_broker) -> AsyncIterator[RedisEventBus]:
        config = RedisEventBusConfig(
            redis_url=redis_broker.url,
            stream_prefix=f"conf-{uuid4().hex[:8]}",
            block_ms=200,
            max_retries=0,
        )
        async with RedisEventBus(config) as bus:
            await bus.start_consuming()
            yield bus
