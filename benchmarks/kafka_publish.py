"""KafkaEventBus.publish beside raw aiokafka's producer on the same broker, publishing only.

N events (100,000 by default) are published in batches of 1,000, each batch's acknowledgements
awaited before the next, as ``await bus.publish(batch)`` does; nobody consumes. Producers are
started, topics created and partition metadata fetched (one warm-up batch a side) before the
clock starts. The raw side is aiokafka's best shape with the bus's topic layout, payload bytes,
key and headers, encoded before the clock starts: one record batch per partition
(``send_batch``). Raw and bus runs alternate and each side gets the same number of timed runs;
each reports its fastest.

``--curve`` also measures events/s against the publish batch size and ``linger_ms`` (raw and
bus alike), which shows where the broker caps when neither side reaches 100,000/s.
Run: ``python benchmarks/kafka_publish.py [--curve]`` (starts its own broker unless
``EVENTSOURCE_LAB_KAFKA_BOOTSTRAP`` is set).
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import time
from dataclasses import dataclass
from uuid import uuid4

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from kafka_bus import PARTITIONS, BenchEvent, _send_batches

from eventsource_lab import DomainEvent
from eventsource_lab.brokers import start
from eventsource_lab.bus import wire
from eventsource_lab.bus.kafka import KafkaEventBus, KafkaEventBusConfig, _headers

MAX_BATCH_SIZE = 1_048_576
"""Bytes per record batch on both sides: one publish of 1,000 events fits one batch per
partition (aiokafka's default, 16,384, makes several that wait for each other)."""


@dataclass(frozen=True)
class Setting:
    """One point of the benchmark: events per publish, the producer's linger and batch bytes."""

    batch: int = 1_000
    linger_ms: int = 0
    max_batch_size: int = MAX_BATCH_SIZE


async def run_raw(url: str, events: list[DomainEvent], setting: Setting) -> float:
    """Seconds raw aiokafka takes to publish the pre-encoded events, batch by batch."""
    topic = f"raw-{uuid4().hex[:6]}.events"
    admin = AIOKafkaAdminClient(bootstrap_servers=url)
    await admin.start()
    await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    await admin.close()
    payloads = [(wire.encode(e), str(e.aggregate_id).encode(), _headers(e)) for e in events]
    producer = AIOKafkaProducer(
        bootstrap_servers=url,
        acks="all",
        linger_ms=setting.linger_ms,
        max_batch_size=setting.max_batch_size,
        max_request_size=MAX_BATCH_SIZE,
    )
    await producer.start()
    try:
        await asyncio.gather(*await _send_batches(producer, topic, payloads[: setting.batch]))
        begin = time.perf_counter()
        for i in range(0, len(payloads), setting.batch):
            chunk = payloads[i : i + setting.batch]
            await asyncio.gather(*await _send_batches(producer, topic, chunk))
        return time.perf_counter() - begin
    finally:
        await producer.stop()


async def run_bus(url: str, events: list[DomainEvent], setting: Setting) -> float:
    """Seconds ``KafkaEventBus.publish`` takes to publish the events, batch by batch."""
    config = KafkaEventBusConfig(
        bootstrap_servers=url,
        topic_prefix=f"bus-{uuid4().hex[:6]}",
        partitions=PARTITIONS,
        linger_ms=setting.linger_ms,
        max_batch_size=setting.max_batch_size,
        publish_timeout=60,
    )
    async with KafkaEventBus(config) as bus:
        await bus.publish(events[: setting.batch])
        begin = time.perf_counter()
        for i in range(0, len(events), setting.batch):
            await bus.publish(events[i : i + setting.batch])
        return time.perf_counter() - begin


async def rates(
    url: str, events: list[DomainEvent], setting: Setting, repeats: int
) -> tuple[float, float]:
    """Events/s of raw and bus at ``setting``: the best of ``repeats`` alternating runs a side."""
    raw, bus = [], []
    for _ in range(repeats):
        raw.append(await run_raw(url, events, setting))
        bus.append(await run_bus(url, events, setting))
    return len(events) / min(raw), len(events) / min(bus)


def row(label: str, raw: float, bus: float) -> str:
    return f"{label:<34} {raw:>10,.0f} {bus:>10,.0f} {bus / raw:>6.2f}"


HEADER = f"{'setting':<34} {'raw ev/s':>10} {'bus ev/s':>10} {'ratio':>6}"

CURVE = [Setting(batch, linger) for batch in (100, 1_000, 10_000) for linger in (0, 5, 20)]


async def main(url: str, count: int, repeats: int, curve: bool) -> None:
    """Print a row per setting: aiokafka's default batch bytes, then the larger ones."""
    events: list[DomainEvent] = [BenchEvent(aggregate_id=uuid4(), n=i) for i in range(count)]
    for setting in [Setting(max_batch_size=16_384), Setting(), *(CURVE if curve else [])]:
        raw, bus = await rates(url, events, setting, repeats)
        label = (
            f"batch {setting.batch:>6,} linger {setting.linger_ms:>2} ms "
            f"max {setting.max_batch_size // 1024:>4} KiB"
        )
        print(row(label, raw, bus), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--curve", action="store_true", help="also batch size x linger_ms")
    args = parser.parse_args()
    print(
        f"Python {platform.python_version()}, {args.events:,} events, best of "
        f"{args.repeats} timed runs a side"
    )
    print(HEADER)
    with start("kafka") as broker:
        asyncio.run(main(broker.url, args.events, args.repeats, args.curve))
