"""Building blocks the broker-bus tests share: batches of orders, a poisonable handler, polling,
and buses on a broker in a namespace of the test's own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any
from uuid import uuid4

from eventsource_lab.brokers import Broker
from eventsource_lab.bus import (
    BrokerEventBus,
    EventBus,
    KafkaEventBus,
    KafkaEventBusConfig,
    RabbitMQEventBus,
    RabbitMQEventBusConfig,
    RedisEventBus,
    RedisEventBusConfig,
)
from eventsource_lab.testing import Recorder
from tests.support.events import OrderPlaced


def orders(n: int, customer: str = "c") -> list[OrderPlaced]:
    """``n`` orders of ``n`` different aggregates, customers ``{customer}0`` …"""
    return [
        OrderPlaced(aggregate_id=uuid4(), customer_name=f"{customer}{i}", total_amount=i)
        for i in range(n)
    ]


def poison_bus(
    buses: Callable[..., EventBus], calls: list[str], fixed: dict, **overrides: Any
) -> tuple[Any, Recorder]:
    """A bus whose handler fails on customer 'poison' until ``fixed['yes']`` is set."""
    bus = buses(**{"max_retries": 2, **overrides})
    recorder = Recorder()

    async def handler(event: OrderPlaced) -> None:
        calls.append(event.customer_name)
        if event.customer_name == "poison" and not fixed.get("yes"):
            raise RuntimeError("cannot handle poison")
        await recorder.handle(event)

    bus.subscribe(OrderPlaced, handler)
    return bus, recorder


async def eventually_async(
    fetch: Callable[[], Awaitable[Any]], check: Callable[[Any], bool], timeout: float = 10.0
) -> None:
    """Poll an async ``fetch()`` until ``check(result)``; fail after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check(result := await fetch()):
        assert loop.time() < deadline, f"timed out; last result {result!r}"
        await asyncio.sleep(0.02)


@asynccontextmanager
async def bus_maker(
    bus_class: Callable[[Any], Any], config_class: Callable[..., Any], **defaults: Any
) -> AsyncIterator[Callable[..., Any]]:
    """Make buses with ``defaults`` (each call may override them); all shut down at the end."""
    async with AsyncExitStack() as stack:

        def make(**overrides: Any) -> Any:
            bus = bus_class(config_class(**{**defaults, **overrides}))
            stack.push_async_callback(bus.shutdown, 5)
            return bus

        yield make


@asynccontextmanager
async def bus_factory(broker: Broker, **defaults: Any) -> AsyncIterator[Callable[..., Any]]:
    """Buses on ``broker`` in a namespace of this call's own (retry_delay small), shut down at
    the end; ``make(consumer_group=..., **overrides)`` as with the kit."""
    prefix = f"f-{uuid4().hex[:8]}"
    common: dict[str, Any] = {"retry_delay": 0.01, **defaults}
    if broker.kind == "redis":
        maker = bus_maker(
            RedisEventBus,
            RedisEventBusConfig,
            redis_url=broker.url,
            stream_prefix=prefix,
            block_ms=100,
            **common,
        )
    elif broker.kind == "rabbitmq":
        maker = bus_maker(
            RabbitMQEventBus,
            RabbitMQEventBusConfig,
            rabbitmq_url=broker.url,
            exchange_name=prefix,
            **common,
        )
    else:
        maker = bus_maker(
            KafkaEventBus,
            KafkaEventBusConfig,
            bootstrap_servers=broker.url,
            topic_prefix=prefix,
            **{"session_timeout_ms": KAFKA_SESSION_MS, **common},
        )
    made: list[BrokerEventBus] = []
    async with maker as make_bus:

        def make(consumer_group: str = "default", **overrides: Any) -> Any:
            group = f"{prefix}-{consumer_group}" if broker.kind == "kafka" else consumer_group
            bus = make_bus(consumer_group=group, **overrides)
            made.append(bus)
            return bus

        try:
            yield make
        finally:
            hung = [bus for bus in made if not await _stops_within(bus, STOP_LIMIT)]
    assert not hung, f"stop_consuming() hung for over {STOP_LIMIT:g}s on {len(hung)} bus(es)"


STOP_LIMIT = 20.0
KAFKA_SESSION_MS = 2_000
"""Kafka buses here notice a dead member within 2 s (tansu holds each group join for half of
it): loopback heartbeats need no more, and each rebalance costs 1 s instead of 3."""


async def _stops_within(bus: BrokerEventBus, seconds: float) -> bool:
    """Stop the bus's consumer loop, but give up waiting after ``seconds``: a bus whose stop
    hangs fails its test instead of holding up the whole session."""
    try:
        await asyncio.wait_for(bus.stop_consuming(timeout=seconds / 2), seconds)
    except asyncio.TimeoutError:
        return False
    return True
