"""Durable event storage: what is published while a group's consumers are stopped survives a
restart of the broker the kit started, and is delivered, exactly once each, afterwards.

Each kind gets a broker of its own (restarting the session's brokers would pull the ground from
under other tests). Where the broker is documented as not durable (tansu keeps topics in memory)
the test checks that fact instead: the events are gone after the restart.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from uuid import uuid4

import pytest
from aiokafka import AIOKafkaConsumer

from eventsource_lab.brokers import ENV_VARS, Broker
from eventsource_lab.bus import (
    KafkaEventBus,
    KafkaEventBusConfig,
    RabbitMQEventBus,
    RabbitMQEventBusConfig,
    RedisEventBus,
    RedisEventBusConfig,
)
from tests.conftest import broker_or_skip
from tests.support.scenarios import bus_maker, orders
from tests.support.waiting import Recorder

KINDS = [
    pytest.param("redis", marks=pytest.mark.redis),
    pytest.param("rabbitmq", marks=pytest.mark.rabbitmq),
    pytest.param("kafka", marks=pytest.mark.kafka),
]
WAIT = 60.0  # a tansu group join alone takes ~5 s; RabbitMQ's restart ~5 s
N = 25


@pytest.fixture(scope="module", params=KINDS)
def broker(request: pytest.FixtureRequest) -> Iterator[Broker]:
    """A broker of our own that we may restart: a container or a local process, never a URL."""
    kind: str = request.param
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv(ENV_VARS[kind], raising=False)
        started = broker_or_skip(kind)
    with started:
        yield started


@pytest.fixture
async def buses(broker: Broker) -> AsyncIterator[Callable[..., Any]]:
    """Buses of ``broker``'s kind in a namespace of this test's own, shut down at the end."""
    prefix = f"durable-{uuid4().hex[:8]}"
    if broker.kind == "redis":
        maker = bus_maker(
            RedisEventBus,
            RedisEventBusConfig,
            redis_url=broker.url,
            stream_prefix=prefix,
            block_ms=100,
        )
    elif broker.kind == "rabbitmq":
        maker = bus_maker(
            RabbitMQEventBus, RabbitMQEventBusConfig, rabbitmq_url=broker.url, exchange_name=prefix
        )
    else:  # one partition: whatever survived would arrive before a later marker event
        maker = bus_maker(
            KafkaEventBus,
            KafkaEventBusConfig,
            bootstrap_servers=broker.url,
            topic_prefix=prefix,
            partitions=1,
            auto_offset_reset="earliest",
        )
    async with maker as make:
        yield make


async def _kafka_topics(bootstrap: str) -> set[str]:
    """The topics the Kafka broker knows (a metadata request creates none)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        return await consumer.topics()
    finally:
        await consumer.stop()


async def test_events_published_while_the_group_is_stopped_survive_a_restart(
    broker: Broker, buses: Callable[..., Any]
) -> None:
    group = f"projections-{uuid4().hex[:6]}"
    first = buses(consumer_group=group)
    await first.start_consuming()  # creates the group's stream group, queue or offsets
    await first.stop_consuming()
    await first.shutdown(5)

    publisher = buses(consumer_group=group)
    stored = orders(N, "while-stopped")
    await publisher.publish(stored)
    await publisher.shutdown(5)

    await asyncio.to_thread(broker.restart)  # returns once the broker answers again

    later = buses(consumer_group=group)
    recorder = Recorder(group)
    later.subscribe(type(stored[0]), recorder)
    await later.start_consuming()
    marker = orders(1, "after-restart")
    await buses(consumer_group=group).publish(marker)  # arrives after anything that survived
    if broker.durable:
        await recorder.wait_for(N + 1, timeout=WAIT)
        assert len(set(recorder.ids)) == len(recorder.ids) == N + 1  # each exactly once
        assert set(recorder.ids) == {e.event_id for e in [*stored, *marker]}
    else:
        assert (broker.kind, broker.mode, broker.durable) == ("kafka", "local", False)
        await recorder.wait_for(1, timeout=WAIT)
        assert recorder.ids == [marker[0].event_id]  # all N were lost with the restart


@pytest.mark.kafka
async def test_local_tansu_loses_its_topics_on_restart_as_documented() -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv(ENV_VARS["kafka"], raising=False)
        tansu = broker_or_skip("kafka", mode="local")
    async with tansu:
        assert tansu.durable is False
        topic = f"kept-{uuid4().hex[:8]}"
        async with bus_maker(
            KafkaEventBus, KafkaEventBusConfig, bootstrap_servers=tansu.url, topic_prefix=topic
        ) as make:
            await make().publish(orders(3))
            assert f"{topic}.events" in await _kafka_topics(tansu.url)
            await asyncio.to_thread(tansu.restart)
            assert not any(name.startswith(topic) for name in await _kafka_topics(tansu.url))
