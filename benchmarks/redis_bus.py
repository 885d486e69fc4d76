"""RedisEventBus beside raw redis-py on the same server, in one run.

N events are published in batches of 100 while one consumer group consumes them; the clock runs
from the first publish until the consumer has handled (bus) or acknowledged (raw) all N. The raw
baseline pipelines XADD and reads with XREADGROUP/XACK in batches of 100, with the bus's own
payload bytes. Run: ``python benchmarks/redis_bus.py`` (starts its own redis-server unless
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
    stream, group = f"raw-{uuid4().hex[:6]}:events", "bench"
    payloads = [_fields(event) for event in events]
    client = Redis.from_url(url)
    await client.xgroup_create(stream, group, id="$", mkstream=True)

    async def consume() -> None:
        acked = 0
        while acked < len(events):
            response = await client.xreadgroup(group, "c", {stream: ">"}, count=BATCH, block=1000)
            for _, entries in response or ():
                await client.xack(stream, group, *(entry_id for entry_id, _ in entries))
                acked += len(entries)

    consumer = asyncio.create_task(consume())
    begin = time.perf_counter()
    for i in range(0, len(payloads), BATCH):
        pipe = client.pipeline(transaction=False)
        for fields in payloads[i : i + BATCH]:
            pipe.xadd(stream, fields)
        await pipe.execute()
    await asyncio.wait_for(consumer, timeout=120)
    elapsed = time.perf_counter() - begin
    await client.aclose()
    return elapsed


async def main(url: str, count: int, repeats: int) -> tuple[float, float]:
    events: list[DomainEvent] = [BenchEvent(aggregate_id=uuid4(), n=i) for i in range(count)]
    return await best_rates(url, events, run_raw, run_bus, repeats)


if __name__ == "__main__":
    cli(__doc__, "redis", main, "raw redis-py", "RedisEventBus")
