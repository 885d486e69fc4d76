"""The conformance suite, unchanged, on KafkaEventBus against a real Kafka-protocol broker."""

from collections.abc import AsyncIterator
from uuid import uuid4

import pytest

from eventsource_lab.bus.kafka import KafkaEventBus, KafkaEventBusConfig
from tests.support.scenarios import KAFKA_SESSION_MS

from .suite import BusConformance

pytestmark = pytest.mark.kafka

REAL_KAFKA_SESSION_MS = 6_000
"""Kafka's smallest session timeout by default: a broker we did not start may be a real Kafka."""


class TestKafkaConformance(BusConformance):
    @pytest.fixture
    async def bus(self, kafka_broker) -> AsyncIterator[KafkaEventBus]:
        config = KafkaEventBusConfig(
            bootstrap_servers=kafka_broker.url,
            topic_prefix=f"conf-{uuid4().hex[:8]}",
            consumer_group=f"g-{uuid4().hex[:8]}",
            # tansu (local mode) holds each group join for half the session timeout
            session_timeout_ms=(
                KAFKA_SESSION_MS if kafka_broker.mode == "local" else REAL_KAFKA_SESSION_MS
            ),
            max_retries=0,
        )
        async with KafkaEventBus(config) as bus:
            await bus.start_consuming()
            yield bus
