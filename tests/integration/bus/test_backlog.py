"""``get_backlog()`` against real brokers: what waits for a group, and how deep its DLQ is.

Redis counts delivered-but-unacknowledged plus not-yet-delivered messages; RabbitMQ counts ready
messages in the group's queue and its retry queue; the default (Kafka) counts dead letters only.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from uuid import uuid4

import pytest

from eventsource_lab import DomainEvent
from eventsource_lab.bus import BrokerEventBus, DeadLetter
from eventsource_lab.bus.broker import BrokerBusConfig
from eventsource_lab.bus.rabbitmq import RabbitMQEventBus, RabbitMQEventBusConfig
from eventsource_lab.bus.redis import RedisEventBus, RedisEventBusConfig
from tests.support.events import OrderPlaced
from tests.support.waiting import Recorder, eventually


def orders(n: int) -> list[OrderPlaced]:
    return [
        OrderPlaced(aggregate_id=uuid4(), customer_name=f"c{i}", total_amount=i) for i in range(n)
    ]


def fail(event: DomainEvent) -> None:
    raise RuntimeError("broken handler")


class Gate:
    """A handler that holds every event until ``open`` is set."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.entered = 0

    async def handle(self, event: DomainEvent) -> None:
        self.entered += 1
        await self.open.wait()


async def backlog_is(bus: BrokerEventBus, pending: int | None, dlq: int | None) -> None:
    async def check() -> bool:
        return await bus.get_backlog() == {"pending": pending, "dlq": dlq}

    await eventually(check, what=f"backlog pending={pending} dlq={dlq}")


@pytest.fixture
async def redis_bus(redis_broker) -> AsyncIterator[Callable[..., RedisEventBus]]:
    prefix = f"t-{uuid4().hex[:8]}"
    async with AsyncExitStack() as stack:

        def make(**overrides) -> RedisEventBus:
            settings = {"redis_url": redis_broker.url, "stream_prefix": prefix, "block_ms": 100}
            bus = RedisEventBus(RedisEventBusConfig(**settings, retry_delay=0.01, **overrides))
            stack.push_async_callback(bus.shutdown, 5)
            return bus

        yield make


@pytest.fixture
async def rabbitmq_bus(rabbitmq_broker) -> AsyncIterator[Callable[..., RabbitMQEventBus]]:
    exchange = f"t-{uuid4().hex[:8]}"
    async with AsyncExitStack() as stack:

        def make(**overrides) -> RabbitMQEventBus:
            settings = {"rabbitmq_url": rabbitmq_broker.url, "exchange_name": exchange}
            bus = RabbitMQEventBus(RabbitMQEventBusConfig(**settings, **overrides))
            stack.push_async_callback(bus.shutdown, 5)
            return bus

        yield make


@pytest.mark.redis
async def test_redis_counts_unacknowledged_undelivered_and_dead_messages(redis_bus) -> None:
    bus = redis_bus(max_retries=0)
    assert await bus.get_backlog() == {"pending": 0, "dlq": 0}  # no stream, no group yet
    gate = Gate()
    bus.subscribe(OrderPlaced, gate)
    await bus.start_consuming()
    await bus.publish(orders(3))
    await eventually(lambda: gate.entered == 1)
    await backlog_is(bus, pending=3, dlq=0)  # one batch in hand, none acknowledged
    gate.open.set()
    await backlog_is(bus, pending=0, dlq=0)

    await bus.stop_consuming()
    await bus.publish(orders(2))
    await backlog_is(bus, pending=2, dlq=0)  # not delivered yet: the group's lag

    bus.unsubscribe(OrderPlaced, gate)
    bus.subscribe(OrderPlaced, fail)
    await bus.start_consuming()
    await backlog_is(bus, pending=0, dlq=2)


@pytest.mark.redis
async def test_redis_counts_only_its_own_group(redis_bus) -> None:
    mine, other = redis_bus(consumer_group="mine"), redis_bus(consumer_group="other")
    for bus in (mine, other):
        await bus.start_consuming()
        await bus.stop_consuming()
    await mine.publish(orders(2))
    await mine.start_consuming()
    await backlog_is(mine, pending=0, dlq=0)
    await backlog_is(other, pending=2, dlq=0)


@pytest.mark.rabbitmq
async def test_rabbitmq_counts_ready_retrying_and_dead_messages(rabbitmq_bus) -> None:
    bus = rabbitmq_bus(max_retries=1, retry_delay=30)
    assert await bus.get_backlog() == {"pending": 0, "dlq": 0}  # no queues yet
    await bus.start_consuming()
    await bus.stop_consuming()
    await bus.publish(orders(2))
    await backlog_is(bus, pending=2, dlq=0)  # ready in the group's queue

    recorder = Recorder()
    bus.subscribe(OrderPlaced, recorder)
    await bus.start_consuming()
    await recorder.wait_for(2)
    await backlog_is(bus, pending=0, dlq=0)

    bus.unsubscribe(OrderPlaced, recorder)
    bus.subscribe(OrderPlaced, fail)
    await bus.publish(orders(1))
    await backlog_is(bus, pending=1, dlq=0)  # waiting out its 30 s backoff in the retry queue


@pytest.mark.rabbitmq
async def test_rabbitmq_counts_the_dlq(rabbitmq_bus) -> None:
    bus = rabbitmq_bus(max_retries=0)
    bus.subscribe(OrderPlaced, fail)
    await bus.start_consuming()
    await bus.publish(orders(2))
    await backlog_is(bus, pending=0, dlq=2)
    letters = await bus.get_dlq_messages()
    assert len(letters) == 2
    assert await bus.get_backlog() == {"pending": 0, "dlq": 2}  # browsing put them back


class Letters(BrokerEventBus):
    """A broker bus with only a DLQ of ``n`` letters: what the default ``get_backlog`` sees."""

    def __init__(self, n: int) -> None:
        super().__init__(BrokerBusConfig())
        self.n = n
        self.limits: list[int] = []

    async def _send(self, events: list[DomainEvent]) -> None: ...

    async def _consume(self) -> None: ...

    async def get_dlq_messages(self, limit: int = 100) -> list[DeadLetter]:
        self.limits.append(limit)
        letter = DeadLetter("1", "1", "OrderPlaced", "RuntimeError", "boom", 0, b"")
        return [letter] * min(self.n, limit)

    async def replay_dlq_message(self, message_id: str) -> bool:
        return False


async def test_the_default_backlog_counts_dead_letters_and_knows_no_pending() -> None:
    bus = Letters(3)
    assert await bus.get_backlog() == {"pending": None, "dlq": 3}
    assert bus.limits == [10_000]
