"""RedisEventBus beside raw redis-py on the same server, in one run.

N events are published in batches of 100 while one consumer group consumes them; the clock runs
from the first publish until the consumer has handled (bus) or acknowledged (raw) all N. The raw
baseline is raw redis-py's best shape, with the bus's stream layout and payload bytes: XADD
pipelined per batch, XREADGROUP of 100 with the last batch's XACK in the same round trip, and the
faster of producing all then consuming, or both at once on two connections.
Run: ``python benchmarks/redis_bus.py`` (starts its own redis-server unless
``EVENTSOURCE_LAB_REDIS_URL`` is set).
"""

from __future__ import annotations

import asyncio
import time
from uuid import uuid4

from harness import BATCH, best_rates, cli
from redis.asyncio import Redis

from eventsource_lab import DomainEvent, register_event
from eventsource_lab.bus import RedisEventBus, RedisEventBusConfig
from eventsource_lab.bus.redis import _fields


@register_event
class BenchEvent(DomainEvent):
    event_type: str = "RedisBenchEvent"
    n: int


async def run_bus(url: str, events: list[DomainEvent]) -> float:
    config = RedisEventBusConfig(redis_url=url, stream_prefix=f"bench-{uuid4().hex[:6]}")
    done = asyncio.Event()
    seen = 0

    async def handler(event: DomainEvent) -> None:
        nonlocal seen
        seen += 1
        if seen == len(events):
            done.set()

    async with RedisEventBus(config) as bus:
        bus.subscribe(BenchEvent, handler)
        await bus.start_consuming()
        begin = time.perf_counter()
        for i in range(0, len(events), BATCH):
            await bus.publish(events[i : i + BATCH])
        await asyncio.wait_for(done.wait(), timeout=120)
        return time.perf_counter() - begin


async def run_raw(url: str, events: list[DomainEvent]) -> float:
    """Raw redis-py's best way to move the events through: the faster of producing everything
    first and consuming after, or both at once on two connections."""
    return min(
        [await _raw(url, events, concurrent=False), await _raw(url, events, concurrent=True)]
    )


async def _raw(url: str, events: list[DomainEvent], concurrent: bool) -> float:
    """The bus's stream layout (an events stream and a replay stream read together, one group),
    XADD pipelined per batch, XREADGROUP with the previous batch's XACK in the same round trip."""
    prefix, group = f"raw-{uuid4().hex[:6]}", "bench"
    stream, replay = f"{prefix}:events", f"{prefix}:{group}:replay"
    payloads = [_fields(event) for event in events]
    producer, consumer = Redis.from_url(url), Redis.from_url(url)
    for key in (stream, replay):
        await consumer.xgroup_create(key, group, id="$", mkstream=True)

    async def produce() -> None:
        for i in range(0, len(payloads), BATCH):
            pipe = producer.pipeline(transaction=False)
            for fields in payloads[i : i + BATCH]:
                pipe.xadd(stream, fields)
            await pipe.execute()

    async def consume() -> None:
        acked, acks = 0, []
        while acked < len(events):
            pipe = consumer.pipeline(transaction=False)
            if acks:
                pipe.xack(stream, group, *acks)
            pipe.xreadgroup(group, "c", {stream: ">", replay: ">"}, count=BATCH, block=1000)
            *_, response = await pipe.execute()
            acks = [entry_id for _, entries in response or () for entry_id, _ in entries]
            acked += len(acks)
        await consumer.xack(stream, group, *acks)

    begin = time.perf_counter()
    if concurrent:
        await asyncio.wait_for(asyncio.gather(produce(), consume()), timeout=120)
    else:
        await produce()
        await asyncio.wait_for(consume(), timeout=120)
    elapsed = time.perf_counter() - begin
    await producer.aclose()
    await consumer.aclose()
    return elapsed


async def main(url: str, count: int, repeats: int) -> tuple[float, float]:
    events: list[DomainEvent] = [BenchEvent(aggregate_id=uuid4(), n=i) for i in range(count)]
    return await best_rates(url, events, run_raw, run_bus, repeats)


if __name__ == "__main__":
    cli(__doc__, "redis", main, "raw redis-py", "RedisEventBus")
