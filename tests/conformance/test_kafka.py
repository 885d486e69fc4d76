"""The conformance suite, unchanged, on KafkaEventBus against a real Kafka-protocol broker."""

from collections.abc import AsyncIterator
from uuid import uuid4

import pytest

from eventsource_lab.bus.kafka import KafkaEventBus, KafkaEventBusConfig

from .suite import BusConformance

pytestmark = pytest.mark.kafka


class TestKafkaConformance(BusConformance):
    @pytest.fixture
    async def bus(self, kafka_broker) -> AsyncIterator[KafkaEventBus]:
        config = KafkaEventBusConfig(
            bootstrap_servers=kafka_broker.url,
            topic_prefix=f"conf-{uuid4().hex[:8]}",
            consumer_group=f"g-{uuid4().hex[:8]}",
            session_timeout_ms=6_000,  # Kafka's smallest by default; tansu joins in half of it
            max_retries=0,
        )
        async with KafkaEventBus(config) as bus:
            await bus.start_consuming()
            yield bus
