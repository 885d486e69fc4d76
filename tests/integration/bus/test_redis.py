"""RedisEventBus against a real Redis: groups, recovery, retries, the DLQ, a broker restart.

Every test says what happens to each message and checks that none is lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from uuid import uuid4

import pytest
from redis.asyncio import Redis

from eventsource_lab import DomainEvent
from eventsource_lab.brokers import start
from eventsource_lab.bus import RedisEventBus, RedisEventBusConfig
from eventsource_lab.errors import BusConnectionError
from tests.support.events import OrderPlaced
from tests.support.scenarios import bus_maker, eventually_async, orders, poison_bus
from tests.support.waiting import Recorder, eventually

pytestmark = pytest.mark.redis


@pytest.fixture
async def buses(redis_broker) -> AsyncIterator[Callable[..., RedisEventBus]]:
    """Make buses sharing one fresh stream prefix; all are shut down after the test."""
    async with bus_maker(
        RedisEventBus,
        RedisEventBusConfig,
        redis_url=redis_broker.url,
        stream_prefix=f"t-{uuid4().hex[:8]}",
        block_ms=100,
        retry_delay=0.01,
    ) as make:
        yield make


@pytest.fixture
async def redis(redis_broker) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_broker.url)
    yield client
    await client.aclose()


async def test_each_group_receives_every_event(buses) -> None:
    recorders = {}
    for group in ("projections", "notifications"):
        bus = buses(consumer_group=group)
        recorders[group] = Recorder(group)
        bus.subscribe(OrderPlaced, recorders[group])
        await bus.start_consuming()
    events = orders(200)
    await buses().publish(events)
    for recorder in recorders.values():
        assert sorted(e.event_id for e in await recorder.wait_for(200)) == sorted(
            e.event_id for e in events
        )
        assert len(recorder.events) == 200


async def test_consumers_of_one_group_share_the_work_without_duplicates(buses) -> None:
    recorders = []
    for name in ("a", "b"):
        bus = buses(consumer_name=name, batch_size=5)
        recorder = Recorder(name)

        async def handle(event: DomainEvent, recorder: Recorder = recorder) -> None:
            await asyncio.sleep(0.001)  # some work, so the other consumer gets a turn
            await recorder.handle(event)

        bus.subscribe(OrderPlaced, handle)
        await bus.start_consuming()
        recorders.append(recorder)
    events = orders(200)
    await buses().publish(events)
    await eventually(lambda: sum(len(r.events) for r in recorders) >= 200, what="200 events")
    ids = [i for r in recorders for i in r.ids]
    assert len(ids) == 200 and set(ids) == {e.event_id for e in events}
    assert all(r.events for r in recorders), "both consumers should have had a share"


async def test_a_consumer_killed_mid_batch_leaves_nothing_behind(buses, redis) -> None:
    """Consumer A takes a batch and dies before acknowledging; B takes over all of it."""
    first_seen = asyncio.Event()

    async def stuck(event: DomainEvent) -> None:
        first_seen.set()
        await asyncio.Event().wait()  # never finishes: A dies holding the batch

    a = buses(consumer_name="a", batch_size=50, pending_idle_ms=300)
    a.subscribe(OrderPlaced, stuck)
    await a.start_consuming()  # creates the group
    await a.stop_consuming()
    events = orders(20)
    await a.publish(events)
    await a.start_consuming()  # the first read takes all 20 as one batch
    await asyncio.wait_for(first_seen.wait(), timeout=10)
    a._consumer.cancel()  # a crash: no stop, no ack
    config = a.config
    pending = await redis.xpending(config.stream, config.consumer_group)
    assert pending["pending"] == 20

    b = buses(consumer_name="b", pending_idle_ms=300)
    recorder = Recorder("b")
    b.subscribe(OrderPlaced, recorder)
    await b.start_consuming()
    await recorder.wait_for(20)
    assert sorted(recorder.ids) == sorted(e.event_id for e in events)
    assert b.get_stats()["messages_recovered"] == 20
    await eventually(lambda: b.get_stats()["events_processed"] == 20)
    await eventually_async(
        lambda: redis.xpending(config.stream, config.consumer_group), lambda p: p["pending"] == 0
    )


async def test_poison_goes_to_the_dlq_after_max_retries_and_the_rest_flows(buses) -> None:
    calls: list[str] = []
    bus, recorder = poison_bus(buses, calls, {})
    await bus.start_consuming()
    events = orders(4, "ok")
    poison = OrderPlaced(aggregate_id=uuid4(), customer_name="poison", total_amount=1)
    await bus.publish([*events[:2], poison, *events[2:]])
    await recorder.wait_for(4)
    await eventually(lambda: bus.get_stats()["messages_dead_lettered"] == 1)
    assert calls.count("poison") == 3  # first try + max_retries
    (letter,) = await bus.get_dlq_messages()
    assert (letter.event_type, letter.error_type, letter.retries) == (
        "OrderPlaced",
        "RuntimeError",
        2,
    )
    assert letter.error == "cannot handle poison" and letter.original_id
    assert OrderPlaced.model_validate_json(letter.body) == poison
    stats = bus.get_stats()
    assert (stats["events_processed"], stats["events_failed"]) == (4, 1)


async def test_replaying_a_dead_letter_after_a_fix_delivers_it_to_that_group_only(buses) -> None:
    calls: list[str] = []
    fixed: dict = {}
    bus, recorder = poison_bus(buses, calls, fixed, consumer_group="billing")
    other = buses(consumer_group="audit")
    audit = Recorder("audit")
    other.subscribe(OrderPlaced, audit)
    await bus.start_consuming()
    await other.start_consuming()
    poison = OrderPlaced(aggregate_id=uuid4(), customer_name="poison", total_amount=1)
    await bus.publish([poison])
    await eventually(lambda: bus.get_stats()["messages_dead_lettered"] == 1)
    await audit.wait_for(1)
    (letter,) = await bus.get_dlq_messages()

    fixed["yes"] = True
    assert await bus.replay_dlq_message(letter.id) is True
    (replayed,) = await recorder.wait_for(1)
    assert replayed == poison
    assert await bus.get_dlq_messages() == []
    assert await bus.replay_dlq_message(letter.id) is False
    assert await other.get_dlq_messages() == []
    assert len(audit.events) == 1  # the audit group saw it once, not again on replay


async def test_unknown_types_and_garbage_go_to_the_dlq_and_consuming_goes_on(buses, redis) -> None:
    bus = buses()
    recorder = Recorder()
    bus.subscribe(OrderPlaced, recorder)
    await bus.start_consuming()
    stream = bus.config.stream
    await redis.xadd(stream, {"event_type": "Refunded", "data": b'{"event_type": "Refunded"}'})
    await redis.xadd(stream, {"garbage": b"\xff\x00\x13"})
    await redis.xadd(stream, {"event_type": "OrderPlaced", "data": b"\xffnot json"})
    good = orders(1)
    await bus.publish(good)
    await recorder.wait_for(1)
    await eventually(lambda: bus.get_stats()["messages_dead_lettered"] == 3)
    letters = await bus.get_dlq_messages()
    assert [letter.error_type for letter in letters] == [
        "UnknownEventTypeError",
        "MalformedMessageError",
        "MalformedMessageError",
    ]
    assert "'Refunded'" in letters[0].error
    assert "no data field" in letters[1].error
    assert bus.is_consuming
    assert (await redis.xpending(stream, bus.config.consumer_group))["pending"] == 0


async def test_without_a_dlq_a_failing_message_stays_pending(buses, redis) -> None:
    calls: list[str] = []
    bus, _ = poison_bus(buses, calls, {}, enable_dlq=False)
    await bus.start_consuming()
    await bus.publish([OrderPlaced(aggregate_id=uuid4(), customer_name="poison", total_amount=1)])
    await eventually(lambda: bus.get_stats()["events_failed"] == 1)
    assert (await redis.xpending(bus.config.stream, bus.config.consumer_group))["pending"] == 1
    assert await redis.exists(bus.config.dlq_stream) == 0


async def test_max_stream_length_trims_the_stream(buses, redis) -> None:
    bus = buses(max_stream_length=50)
    for _ in range(10):
        await bus.publish(orders(100))
    assert await redis.xlen(bus.config.stream) < 300  # approximate trimming, far below 1,000


async def test_an_unreachable_redis_is_a_clear_error() -> None:
    bus = RedisEventBus(RedisEventBusConfig(redis_url="redis://127.0.0.1:1/0"))
    with pytest.raises(BusConnectionError, match=r"cannot reach Redis at redis://127\.0\.0\.1:1/0"):
        await bus.connect()
    with pytest.raises(BusConnectionError):
        await bus.start_consuming()
    with pytest.raises(BusConnectionError):
        await bus.publish(orders(1))
    assert not bus.is_consuming


async def test_a_redis_restart_is_survived_and_later_events_arrive() -> None:

    with start("redis", mode="local") as broker:
        config = RedisEventBusConfig(redis_url=broker.url, block_ms=100, stream_prefix="restart")
        async with RedisEventBus(config) as bus:
            recorder = Recorder()
            bus.subscribe(OrderPlaced, recorder)
            await bus.start_consuming()
            await bus.publish(orders(3, "before"))
            await recorder.wait_for(3)

            await asyncio.to_thread(broker.restart)  # data is gone: Redis runs without persistence

            after = orders(5, "after")
            await bus.publish(after)  # the driver replaces the dead connections
            received = await recorder.wait_for(8)
            assert {e.event_id for e in received[3:]} == {e.event_id for e in after}
            assert bus.get_stats()["reconnections"] >= 1
            assert bus.is_consuming
