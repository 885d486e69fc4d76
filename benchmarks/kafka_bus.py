"""KafkaEventBus beside raw aiokafka on the same broker, in one run.

N events are published in batches of 100 while one consumer group consumes them; the clock
starts once the consumer has joined its group (a rebalance is not throughput) and runs from the
first publish until the consumer has handled (bus) or committed (raw) all N. The raw baseline
is raw aiokafka's best shape, with the bus's topic layout, partitions, payload bytes, key and
headers: each batch sent as one record batch per partition (``send_batch``) and its
acknowledgements awaited, ``getmany`` committing every batch,
and the faster of producing all then consuming, or both at once.
Run: ``python benchmarks/kafka_bus.py`` (starts its own broker unless
``EVENTSOURCE_LAB_KAFKA_BOOTSTRAP`` is set).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from uuid import uuid4

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.partitioner import DefaultPartitioner
from harness import BATCH, best_rates, cli

from eventsource_lab import DomainEvent, register_event
from eventsource_lab.bus import wire
from eventsource_lab.bus.kafka import _FETCH_WAIT_MS, KafkaEventBus, KafkaEventBusConfig, _headers

PARTITIONS = 4
PARTITIONER = DefaultPartitioner()
Headers = list[tuple[str, bytes]]
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
    """Raw aiokafka's best way to move the events through: the faster of producing everything
    first and consuming after, or both at once."""
    return min(
        [await _raw(url, events, concurrent=False), await _raw(url, events, concurrent=True)]
    )


async def _raw(url: str, events: list[DomainEvent], concurrent: bool) -> float:
    """The bus's topic layout (an events topic of ``PARTITIONS`` partitions and a replay topic
    read together, one group), each batch sent and acknowledged, ``getmany`` committing each
    batch; the consumer has joined its group before the clock starts."""
    prefix = f"raw-{uuid4().hex[:6]}"
    topic, replay = f"{prefix}.events", f"{prefix}.bench.replay"
    admin = AIOKafkaAdminClient(bootstrap_servers=url)
    await admin.start()
    await admin.create_topics([NewTopic(topic, PARTITIONS, 1), NewTopic(replay, 1, 1)])
    await admin.close()
    payloads = [(wire.encode(e), str(e.aggregate_id).encode(), _headers(e)) for e in events]
    producer = AIOKafkaProducer(bootstrap_servers=url, acks="all")
    consumer = AIOKafkaConsumer(
        topic,
        replay,
        bootstrap_servers=url,
        group_id="bench",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=KafkaEventBusConfig().batch_size,
        session_timeout_ms=SESSION_TIMEOUT_MS,
        heartbeat_interval_ms=SESSION_TIMEOUT_MS // 10,
        fetch_max_wait_ms=_FETCH_WAIT_MS,  # as the bus: tansu holds fetches this long
    )
    await producer.start()
    await consumer.start()
    while not consumer.assignment():  # join the group before the clock starts
        await consumer.getmany(timeout_ms=100)

    async def produce() -> None:
        for i in range(0, len(payloads), BATCH):
            await asyncio.gather(*await _send_batches(producer, topic, payloads[i : i + BATCH]))

    async def consume() -> None:
        committed = 0
        while committed < len(events):
            batches = await consumer.getmany(timeout_ms=1000)
            if batches:
                await consumer.commit({tp: rs[-1].offset + 1 for tp, rs in batches.items()})
                committed += sum(len(rs) for rs in batches.values())

    begin = time.perf_counter()
    if concurrent:
        await asyncio.wait_for(asyncio.gather(produce(), consume()), timeout=120)
    else:
        await produce()
        await asyncio.wait_for(consume(), timeout=120)
    elapsed = time.perf_counter() - begin
    await producer.stop()
    await consumer.stop()
    return elapsed


async def _send_batches(
    producer: AIOKafkaProducer, topic: str, payloads: list[tuple[bytes, bytes, Headers]]
) -> list[asyncio.Future[Any]]:
    """aiokafka's fastest way to send: one record batch per partition (``send_batch``), each
    message where ``send(key=...)`` would put it; ``send()`` per message is ~30% slower here."""
    partitions = sorted(await producer.partitions_for(topic))
    batches: dict[int, Any] = {}
    sent = []
    for value, key, headers in payloads:
        partition = PARTITIONER(key, partitions, partitions)
        batch = batches.get(partition)
        if (
            batch is None
            or batch.append(key=key, value=value, timestamp=None, headers=headers) is None
        ):
            if batch is not None:
                sent.append(await producer.send_batch(batch, topic, partition=partition))
            batch = batches[partition] = producer.create_batch()
            batch.append(key=key, value=value, timestamp=None, headers=headers)
    for partition, batch in batches.items():
        sent.append(await producer.send_batch(batch, topic, partition=partition))
    return sent


async def main(url: str, count: int, repeats: int) -> tuple[float, float]:
    events: list[DomainEvent] = [BenchEvent(aggregate_id=uuid4(), n=i) for i in range(count)]
    return await best_rates(url, events, run_raw, run_bus, repeats)


if __name__ == "__main__":
    cli(__doc__, "kafka", main, "raw aiokafka", "KafkaEventBus", events=20_000)
