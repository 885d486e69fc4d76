"""KafkaEventBus beside raw aiokafka on the same broker, in one run.

N events are published in batches of 100 while one consumer group consumes them; the clock
starts once the consumer has joined its group (a rebalance is not throughput) and runs from the
first publish until the consumer has handled (bus) or committed (raw) all N. The raw baseline
sends each batch and awaits its acknowledgements, and reads with ``getmany`` committing every
batch, with the bus's own payload bytes, key and headers. Run: ``python benchmarks/kafka_bus.py``
(starts its own broker unless ``EVENTSOURCE_LAB_KAFKA_BOOTSTRAP`` is set).
"""

from __future__ import annotations

import asyncio
import time
from uuid import uuid4

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from harness import BATCH, best_rates, cli

from eventsource_lab import DomainEvent, register_event
from eventsource_lab.bus import wire
from eventsource_lab.bus.kafka import _FETCH_WAIT_MS, KafkaEventBus, KafkaEventBusConfig, _headers

PARTITIONS = 4
SESSION_TIMEOUT_MS = 6_000  # tansu holds a group join for half of it


@register_event
class BenchEvent(DomainEvent):
    event_type: str = "KafkaBenchEvent"
    n: int


async def run_bus(url: str, events: list[DomainEvent]) -> float:
    config = KafkaEventBusConfig(
        bootstrap_servers=url,
        topic_prefix=f"bench-{uuid4().hex[:6]}",
        partitions=PARTITIONS,
        session_timeout_ms=SESSION_TIMEOUT_MS,
    )
    done = asyncio.Event()
    seen = 0

    async def handler(event: DomainEvent) -> None:
        nonlocal seen
        seen += 1
        if seen == len(events):
            done.set()

    async with KafkaEventBus(config) as bus:
        bus.subscribe(BenchEvent, handler)
        await bus.start_consuming()  # returns once the group has assigned the partitions
        begin = time.perf_counter()
        for i in range(0, len(events), BATCH):
            await bus.publish(events[i : i + BATCH])
        await asyncio.wait_for(done.wait(), timeout=120)
        return time.perf_counter() - begin


async def run_raw(url: str, events: list[DomainEvent]) -> float:
    topic = f"raw-{uuid4().hex[:6]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=url)
    await admin.start()
    await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    await admin.close()
    payloads = [(wire.encode(e), str(e.aggregate_id).encode(), _headers(e)) for e in events]
    producer = AIOKafkaProducer(bootstrap_servers=url, acks="all")
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=url,
        group_id="bench",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=500,
        session_timeout_ms=SESSION_TIMEOUT_MS,
        heartbeat_interval_ms=SESSION_TIMEOUT_MS // 10,
        fetch_max_wait_ms=_FETCH_WAIT_MS,  # as the bus: tansu holds fetches this long
    )
    await producer.start()
    await consumer.start()
    while not consumer.assignment():  # join the group before the clock starts
        await consumer.getmany(timeout_ms=100)

    async def consume() -> None:
        committed = 0
        while committed < len(events):
            batches = await consumer.getmany(timeout_ms=1000)
            if batches:
                await consumer.commit({tp: rs[-1].offset + 1 for tp, rs in batches.items()})
                committed += sum(len(rs) for rs in batches.values())

    reader = asyncio.create_task(consume())
    begin = time.perf_counter()
    for i in range(0, len(payloads), BATCH):
        sent = [
            await producer.send(topic, value, key=key, headers=headers)
            for value, key, headers in payloads[i : i + BATCH]
        ]
        await asyncio.gather(*sent)
    await asyncio.wait_for(reader, timeout=120)
    elapsed = time.perf_counter() - begin
    await producer.stop()
    await consumer.stop()
    return elapsed


async def main(url: str, count: int, repeats: int) -> tuple[float, float]:
    events: list[DomainEvent] = [BenchEvent(aggregate_id=uuid4(), n=i) for i in range(count)]
    return await best_rates(url, events, run_raw, run_bus, repeats)


if __name__ == "__main__":
    cli(__doc__, "kafka", main, "raw aiokafka", "KafkaEventBus", events=20_000)
