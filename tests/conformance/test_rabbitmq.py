"""The conformance suite, unchanged, on RabbitMQEventBus against a real RabbitMQ."""

from collections.abc import AsyncIterator
from uuid import uuid4

import pytest

from eventsource_lab.bus.rabbitmq import RabbitMQEventBus, RabbitMQEventBusConfig

from .suite import BusConformance

pytestmark = pytest.mark.rabbitmq


class TestRabbitMQConformance(BusConformance):
    @pytest.fixture
    async def bus(self, rabbitmq_broker) -> AsyncIterator[RabbitMQEventBus]:
        config = RabbitMQEventBusConfig(
            rabbitmq_url=rabbitmq_broker.url,
            exchange_name=f"conf-{uuid4().hex[:8]}",
            durable=False,
            max_retries=0,
        )
        async with RabbitMQEventBus(config) as bus:
            await bus.start_consuming()
            yield bus
