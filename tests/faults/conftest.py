"""The fault suite's kit: one real broker bus of each kind, and the raw client beside it.

A scenario takes ``kit`` and runs once per broker bus (``kit.kind`` says which). ``kit.make()``
builds buses in a namespace of the test's own (stream prefix, exchange, topic prefix and group
names), all shut down at the end; ``kit.inject(bus, body, event_type)`` puts raw bytes straight
onto the stream, queue or topic ``bus`` consumes, as a hostile or broken producer would.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

import aio_pika
import pytest
from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis

from eventsource_lab.brokers import Broker
from eventsource_lab.bus import (
    BrokerEventBus,
    KafkaEventBus,
    KafkaEventBusConfig,
    RabbitMQEventBus,
    RabbitMQEventBusConfig,
    RedisEventBus,
    RedisEventBusConfig,
)
from tests.support.scenarios import bus_maker

KINDS = [
    pytest.param("redis", marks=pytest.mark.redis),
    pytest.param("rabbitmq", marks=pytest.mark.rabbitmq),
    pytest.param("kafka", marks=pytest.mark.kafka),
]


@dataclass
class Kit:
    """What a fault scenario needs of one broker bus kind."""

    kind: str
    broker: Broker
    make: Callable[..., BrokerEventBus]
    inject: Callable[[BrokerEventBus, bytes, str | None], Awaitable[None]]


@pytest.fixture(params=KINDS)
async def kit(request: pytest.FixtureRequest) -> AsyncIterator[Kit]:
    kind: str = request.param
    broker: Broker = request.getfixturevalue(f"{kind}_broker")
    prefix = f"f-{uuid4().hex[:8]}"
    common: dict[str, Any] = {"retry_delay": 0.01}
    if kind == "redis":
        factory = bus_maker(
            RedisEventBus,
            RedisEventBusConfig,
            redis_url=broker.url,
            stream_prefix=prefix,
            block_ms=100,
            **common,
        )
    elif kind == "rabbitmq":
        factory = bus_maker(
            RabbitMQEventBus,
            RabbitMQEventBusConfig,
            rabbitmq_url=broker.url,
            exchange_name=prefix,
            **common,
        )
    else:
        factory = bus_maker(
            KafkaEventBus,
            KafkaEventBusConfig,
            bootstrap_servers=broker.url,
            topic_prefix=prefix,
            **common,
        )
    async with factory as make_bus:

        def make(consumer_group: str = "default", **overrides: Any) -> BrokerEventBus:
            # A Kafka group spans topics: a name of this test's own keeps others out of it.
            group = f"{prefix}-{consumer_group}" if kind == "kafka" else consumer_group
            return make_bus(consumer_group=group, **overrides)

        yield Kit(kind, broker, make, _INJECTORS[kind])


async def _inject_redis(bus: BrokerEventBus, body: bytes, event_type: str | None) -> None:
    assert isinstance(bus, RedisEventBus)
    fields: dict[str, bytes | str] = {"data": body}
    if event_type is not None:
        fields["event_type"] = event_type
    client = Redis.from_url(bus.config.redis_url)
    try:
        await client.xadd(bus.config.stream, fields)
    finally:
        await client.aclose()


async def _inject_rabbitmq(bus: BrokerEventBus, body: bytes, event_type: str | None) -> None:
    assert isinstance(bus, RabbitMQEventBus)
    cfg = bus.config
    connection = await aio_pika.connect(cfg.rabbitmq_url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(
            cfg.exchange_name, cfg.exchange_type, durable=cfg.durable
        )
        message = aio_pika.Message(body, type=event_type, message_id=uuid4().hex)
        await exchange.publish(message, f"Raw.{event_type or 'none'}")


async def _inject_kafka(bus: BrokerEventBus, body: bytes, event_type: str | None) -> None:
    assert isinstance(bus, KafkaEventBus)
    producer = AIOKafkaProducer(bootstrap_servers=bus.config.bootstrap_servers)
    await producer.start()
    try:
        headers = [("event_type", event_type.encode())] if event_type is not None else []
        await producer.send_and_wait(bus.config.topic, body, key=b"raw", headers=headers)
    finally:
        await producer.stop()


_INJECTORS: dict[str, Callable[[BrokerEventBus, bytes, str | None], Awaitable[None]]] = {
    "redis": _inject_redis,
    "rabbitmq": _inject_rabbitmq,
    "kafka": _inject_kafka,
}
