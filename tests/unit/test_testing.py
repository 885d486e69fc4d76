"""crash_consumer: a consumer killed mid-work on a real broker, and what its group does next."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from eventsource_lab.bus import BrokerEventBus, RedisEventBus, RedisEventBusConfig
from eventsource_lab.testing import Recorder, crash_consumer
from tests.support.events import OrderPlaced
from tests.support.scenarios import bus_factory, orders

KINDS = [
    pytest.param(kind, marks=getattr(pytest.mark, kind)) for kind in ("redis", "rabbitmq", "kafka")
]
PENDING_IDLE_MS = 300


class Hanging:
    """A handler that never returns; it notes when it starts and when it is cancelled."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.cancelled = False

    async def handle(self, event: OrderPlaced) -> None:
        self.started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise


@pytest.fixture(params=KINDS)
async def make(request: pytest.FixtureRequest) -> AsyncIterator[Callable[..., BrokerEventBus]]:
    """Buses of one kind on the session's broker, in a namespace of the test's own."""
    broker = request.getfixturevalue(f"{request.param}_broker")
    settings: dict[str, Any] = (
        {"pending_idle_ms": PENDING_IDLE_MS} if broker.kind == "redis" else {}
    )
    async with bus_factory(broker, **settings) as factory:
        yield factory


async def crashed_and_survivor(
    make: Callable[..., BrokerEventBus], count: int
) -> tuple[BrokerEventBus, Hanging, Recorder, list[OrderPlaced]]:
    """Two consumers of one group, the first stuck in a handler, then crashed; the events."""
    doomed, survivor = make("billing"), make("billing")
    hanging, recorder = Hanging(), Recorder("survivor")
    doomed.subscribe(OrderPlaced, hanging)
    survivor.subscribe(OrderPlaced, recorder)
    await asyncio.gather(doomed.start_consuming(), survivor.start_consuming())
    events = orders(count)
    await make("publisher").publish(events)
    await asyncio.wait_for(hanging.started.wait(), 10)
    await crash_consumer(doomed)
    return doomed, hanging, recorder, events


async def test_the_crashed_consumers_messages_go_to_the_survivor(make) -> None:
    doomed, hanging, recorder, events = await crashed_and_survivor(make, count=16)

    assert hanging.cancelled, "the handler in progress is cancelled with the loop"
    assert not doomed.is_consuming
    assert isinstance(doomed.consumer_error, asyncio.CancelledError)
    await recorder.wait_for(len(events), timeout=30)
    assert {e.event_id for e in recorder.events} == {e.event_id for e in events}


@pytest.mark.redis
async def test_on_redis_the_crashed_consumer_stays_in_its_group_holding_its_messages(
    redis_broker,
) -> None:
    async with bus_factory(redis_broker, pending_idle_ms=60_000) as make:
        doomed = make("billing")
        hanging = Hanging()
        doomed.subscribe(OrderPlaced, hanging)
        await doomed.start_consuming()
        await make("publisher").publish(orders(1))
        await asyncio.wait_for(hanging.started.wait(), 10)

        await crash_consumer(doomed)

        stream, group, name = doomed.config.stream, "billing", doomed.config.consumer_name
        redis = Redis.from_url(redis_broker.url)
        try:
            pending = await redis.xpending(stream, group)
            consumers = await redis.xinfo_consumers(stream, group)
        finally:
            await redis.aclose()
        assert pending["pending"] == 1
        assert [c["name"].decode() for c in pending["consumers"]] == [name]
        assert [c["name"].decode() for c in consumers] == [name]


@pytest.mark.redis
async def test_a_crashed_consumer_starts_again(redis_broker) -> None:
    async with bus_factory(redis_broker) as make:
        bus, recorder = make("billing"), Recorder()
        bus.subscribe(OrderPlaced, recorder)
        await bus.start_consuming()
        await crash_consumer(bus)
        await make("publisher").publish(orders(1))

        await bus.start_consuming()

        await recorder.wait_for(1)
        assert bus.is_consuming and bus.consumer_error is None


async def test_crashing_a_bus_that_is_not_consuming_is_an_error() -> None:
    bus = RedisEventBus(RedisEventBusConfig(redis_url="redis://127.0.0.1:1/0"))
    with pytest.raises(RuntimeError, match="not consuming"):
        await crash_consumer(bus)
    assert not bus.is_consuming, "the crash started no consumer"
