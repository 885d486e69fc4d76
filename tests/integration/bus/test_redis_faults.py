"""RedisEventBus under faults: slow handlers, hostile bytes, a full or restarted or frozen Redis.

Each test says what happens to every message: none is lost, none is handled twice at once.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Callable, Iterator
from uuid import uuid4

import pytest
from redis.asyncio import Redis

from eventsource_lab import DomainEvent
from eventsource_lab.brokers import Broker, start
from eventsource_lab.bus import RedisEventBus
from eventsource_lab.errors import BusConnectionError
from tests.support.events import OrderPlaced
from tests.support.scenarios import bus_factory, eventually_async, orders
from tests.support.waiting import Recorder, eventually

pytestmark = pytest.mark.redis


@pytest.fixture
async def buses(redis_broker: Broker) -> AsyncIterator[Callable[..., RedisEventBus]]:
    """Buses on the session's Redis sharing one fresh stream prefix; all shut down after."""
    async with bus_factory(redis_broker) as make:
        yield make


@pytest.fixture
def own_broker() -> Iterator[Broker]:
    """A local Redis of this test's own, to restart, freeze or fill up without harming others."""
    with start("redis", "local") as broker:
        yield broker


@pytest.fixture
async def own_buses(own_broker: Broker) -> AsyncIterator[Callable[..., RedisEventBus]]:
    async with bus_factory(own_broker) as make:
        yield make


@pytest.fixture
async def raw(own_broker: Broker) -> AsyncIterator[Redis]:
    client = Redis.from_url(own_broker.url)
    yield client
    await client.aclose()


async def _pending(client: Redis, bus: RedisEventBus) -> int:
    info = await client.xpending(bus.config.stream, bus.config.consumer_group)
    return int(info["pending"])


async def test_a_live_consumer_keeps_a_batch_that_takes_longer_than_pending_idle_ms(
    own_buses, raw
) -> None:
    """Handlers of 2.5 s per event and pending_idle_ms=1000: nobody takes over live work.

    (With a much shorter idle time the test would hang on the machine's load: a loop stalled
    past pending_idle_ms is exactly what the setting has to outlast.)"""
    handled: list[tuple[str, object]] = []
    consumers = []
    for name in ("a", "b"):
        bus = own_buses(consumer_name=name, batch_size=2, pending_idle_ms=1000)

        async def slow(event: DomainEvent, name: str = name) -> None:
            handled.append((name, event.event_id))
            await asyncio.sleep(2.5)

        bus.subscribe(OrderPlaced, slow)
        await bus.start_consuming()
        consumers.append(bus)
    events = orders(4)
    await own_buses().publish(events)
    await eventually(lambda: len(handled) >= 4, timeout=30, what="4 events handled")
    await eventually_async(lambda: _pending(raw, consumers[0]), lambda n: n == 0, timeout=15)
    assert sorted(str(i) for _, i in handled) == sorted(str(e.event_id) for e in events)
    for bus in consumers:
        stats = bus.get_stats()
        assert (stats["messages_recovered"], stats["messages_dead_lettered"]) == (0, 0)
        assert stats["events_processed"] == sum(
            1 for n, _ in handled if n == bus.config.consumer_name
        )
    assert await consumers[0].get_dlq_messages() == []


async def test_a_killed_consumer_that_held_its_batch_for_long_is_taken_over(buses) -> None:
    """The batch was kept alive past pending_idle_ms; once its consumer dies, another takes it."""
    started = asyncio.Event()

    async def stuck(event: DomainEvent) -> None:
        started.set()
        await asyncio.Event().wait()

    a = buses(consumer_name="a", pending_idle_ms=300)
    a.subscribe(OrderPlaced, stuck)
    await a.start_consuming()
    events = orders(5)
    await a.publish(events)
    await asyncio.wait_for(started.wait(), timeout=10)
    await asyncio.sleep(0.6)  # holding on past pending_idle_ms, while alive
    assert a._consumer is not None
    a._consumer.cancel()  # a crash: no stop, no ack

    b = buses(consumer_name="b", pending_idle_ms=300)
    recorder = Recorder("b")
    b.subscribe(OrderPlaced, recorder)
    await b.start_consuming()
    await recorder.wait_for(5)
    assert sorted(recorder.ids) == sorted(e.event_id for e in events)
    assert b.get_stats()["messages_recovered"] >= 1  # at least the one a was stuck on


async def test_hostile_messages_go_to_the_dlq_and_consuming_goes_on(buses) -> None:
    bus = buses()
    recorder = Recorder()
    bus.subscribe(OrderPlaced, recorder)
    await bus.start_consuming()
    client = Redis.from_url(bus.config.redis_url)
    try:
        stream = bus.config.stream
        await client.xadd(stream, {"event_type": "OrderPlaced", "data": b"[" * 200_000})
        await client.xadd(stream, {"event_type": b"\xff\xfe", "data": b"{}"})
        await client.xadd(stream, {"event_type": "OrderPlaced"})
        await client.xadd(stream, {b"\xff": b"\x00", "data": b'{"event_type": 1}'})
        good = orders(1)
        await bus.publish(good)
        await recorder.wait_for(1)
        await eventually(lambda: bus.get_stats()["messages_dead_lettered"] == 4)
        letters = await bus.get_dlq_messages()
        assert {letter.error_type for letter in letters} == {"MalformedMessageError"}
        assert bus.is_consuming and bus.consumer_error is None
        assert (await client.xpending(stream, bus.config.consumer_group))["pending"] == 0
    finally:
        await client.aclose()


async def test_a_full_redis_is_waited_out_and_no_message_is_lost(
    own_buses, raw, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis out of memory refuses the DLQ write: the poison is kept in hand and written later."""
    gate = asyncio.Event()
    recorder = Recorder()

    async def handler(event: OrderPlaced) -> None:
        await gate.wait()
        if event.customer_name == "poison":
            raise RuntimeError("cannot handle poison")
        await recorder.handle(event)

    bus = own_buses(pending_idle_ms=300, max_retries=0)
    bus.subscribe(OrderPlaced, handler)
    await bus.start_consuming()
    good = orders(6)
    poison = OrderPlaced(aggregate_id=uuid4(), customer_name="poison", total_amount=1)
    await bus.publish([*good[:3], poison, *good[3:]])
    await raw.config_set("maxmemory-policy", "noeviction")
    await raw.config_set("maxmemory", "1")
    try:
        gate.set()
        await recorder.wait_for(3)
        await eventually(
            lambda: caplog.text.count("OutOfMemoryError") >= 3, what="failed DLQ writes"
        )
        assert bus.is_consuming and bus.consumer_error is None
        assert await raw.xlen(bus.config.dlq_stream) == 0
    finally:
        await raw.config_set("maxmemory", "0")
    await eventually(lambda: bus.get_stats()["messages_dead_lettered"] == 1, timeout=15)
    (letter,) = await bus.get_dlq_messages()
    assert (letter.error_type, OrderPlaced.model_validate_json(letter.body)) == (
        "RuntimeError",
        poison,
    )
    await recorder.wait_for(6)
    await eventually_async(lambda: _pending(raw, bus), lambda n: n == 0)
    assert sorted(recorder.ids) == sorted(e.event_id for e in good)
    stats = bus.get_stats()
    assert (stats["messages_recovered"], stats["events_processed"]) == (0, 6)
    assert bus.is_consuming and bus.consumer_error is None


async def test_a_deleted_stream_is_recreated_and_later_events_arrive(own_buses, raw) -> None:
    """Deleting the stream (and so its groups) under a blocked read is survived."""
    bus = own_buses()
    recorder = Recorder()
    bus.subscribe(OrderPlaced, recorder)
    await bus.start_consuming()
    await bus.publish(orders(1, "before"))
    await recorder.wait_for(1)
    await raw.delete(bus.config.stream)
    await eventually(lambda: raw.exists(bus.config.stream), what="the stream recreated")
    after = orders(2, "after")
    await bus.publish(after)
    received = await recorder.wait_for(3)
    assert {e.event_id for e in received[1:]} == {e.event_id for e in after}
    assert bus.is_consuming and bus.consumer_error is None


async def test_a_wrong_key_type_ends_the_loop_with_the_reason(own_buses, raw) -> None:
    """A permanent error (the stream replaced by a string) stops the loop and says why."""
    bus = own_buses()
    await bus.start_consuming()
    async with raw.pipeline(transaction=True) as pipe:
        pipe.delete(bus.config.stream)
        pipe.set(bus.config.stream, "not a stream")
        await pipe.execute()
    await eventually(lambda: not bus.is_consuming, timeout=10)
    assert "WRONGTYPE" in str(bus.consumer_error)


async def test_publishing_right_after_a_restart_succeeds(own_broker, own_buses) -> None:
    """The publisher's pooled connection died with the old server: publish() replaces it."""
    consumer = own_buses()
    recorder = Recorder()
    consumer.subscribe(OrderPlaced, recorder)
    await consumer.start_consuming()
    publisher = own_buses(publish_timeout=5)
    await publisher.publish(orders(1, "before"))
    await recorder.wait_for(1)

    await asyncio.to_thread(own_broker.restart)

    after = orders(1, "after")
    await publisher.publish(after)
    received = await recorder.wait_for(2, timeout=15)
    assert received[-1].event_id == after[0].event_id


async def test_publishing_to_a_frozen_redis_fails_in_time_and_works_once_it_is_back(
    own_broker, own_buses
) -> None:
    consumer = own_buses()
    recorder = Recorder()
    consumer.subscribe(OrderPlaced, recorder)
    await consumer.start_consuming()
    publisher = own_buses(publish_timeout=1)
    await publisher.publish(orders(1, "before"))
    await recorder.wait_for(1)
    (pid,) = own_broker.pids
    os.kill(pid, signal.SIGSTOP)
    try:
        loop = asyncio.get_running_loop()
        began = loop.time()
        with pytest.raises(BusConnectionError, match="publish_timeout"):
            await publisher.publish(orders(1, "lost"))
        assert loop.time() - began < 3
    finally:
        os.kill(pid, signal.SIGCONT)
    after = orders(3, "after")
    await publisher.publish(after)  # the "lost" event may arrive too: Redis had its bytes
    wanted = {e.event_id for e in after}
    await eventually(lambda: wanted <= set(recorder.ids), timeout=15, what="the later events")
    assert consumer.is_consuming and consumer.consumer_error is None
