"""RabbitMQEventBus beside raw aio-pika on the same server, in one run.

N events are published in batches of 100 while one consumer group consumes them; the clock runs
from the first publish until the consumer has handled (bus) or acknowledged (raw) all N. The raw
baseline publishes the bus's own message bytes and properties to a durable topic exchange with
publisher confirms, awaiting each batch's confirms together, and consumes a durable queue with
prefetch 100, acknowledging each message; it takes the client's faster shape: consuming while
publishing (on a connection each), or publishing everything first. Run:
``python benchmarks/rabbitmq_bus.py`` (starts its own RabbitMQ unless
``EVENTSOURCE_LAB_RABBITMQ_URL`` is set).
"""

from __future__ import annotations

import asyncio
import time
from uuid import uuid4

import aio_pika
from aio_pika.abc import AbstractIncomingMessage
from harness import BATCH, best_rates, cli

from eventsource_lab import DomainEvent, register_event
from eventsource_lab.bus.rabbitmq import RabbitMQEventBus, RabbitMQEventBusConfig, _routing_key


@register_event
class BenchEvent(DomainEvent):
    event_type: str = "RabbitMQBenchEvent"
    aggregate_type: str = "Bench"
    n: int


async def run_bus(url: str, events: list[DomainEvent]) -> float:
    config = RabbitMQEventBusConfig(rabbitmq_url=url, exchange_name=f"bench-{uuid4().hex[:6]}")
    done = asyncio.Event()
    seen = 0

    async def handler(event: DomainEvent) -> None:
        nonlocal seen
        seen += 1
        if seen == len(events):
            done.set()

    async with RabbitMQEventBus(config) as bus:
        bus.subscribe(BenchEvent, handler)
        await bus.start_consuming()
        begin = time.perf_counter()
        for i in range(0, len(events), BATCH):
            await bus.publish(events[i : i + BATCH])
        await asyncio.wait_for(done.wait(), timeout=120)
        elapsed = time.perf_counter() - begin
    await _delete(config, url)
    return elapsed


async def run_raw(url: str, events: list[DomainEvent]) -> float:
    """The raw client in its best shape for moving N events: the faster of publishing and
    consuming at once (on two connections) and publishing everything, then consuming it."""
    return min([await _raw(url, events, at_once=True), await _raw(url, events, at_once=False)])


async def _raw(url: str, events: list[DomainEvent], *, at_once: bool) -> float:
    name = f"raw-{uuid4().hex[:6]}"
    encoder = RabbitMQEventBus(RabbitMQEventBusConfig(rabbitmq_url=url))  # never connected
    messages = [(encoder._message(e), _routing_key(e)) for e in events]
    async with await aio_pika.connect(url) as producer, await aio_pika.connect(url) as consumer:
        publishing = await producer.channel(publisher_confirms=True)
        consuming = await consumer.channel()
        await consuming.set_qos(prefetch_count=BATCH)
        exchange = await publishing.declare_exchange(name, "topic", durable=True)
        queue = await consuming.declare_queue(name, durable=True)
        await queue.bind(name, "#")
        done = asyncio.Event()
        acked = 0

        async def on_message(message: AbstractIncomingMessage) -> None:
            nonlocal acked
            await message.ack()
            acked += 1
            if acked == len(events):
                done.set()

        begin = time.perf_counter()
        tag = await queue.consume(on_message) if at_once else None
        for i in range(0, len(messages), BATCH):
            await asyncio.gather(
                *(exchange.publish(m, key, mandatory=False) for m, key in messages[i : i + BATCH])
            )
        tag = tag or await queue.consume(on_message)
        await asyncio.wait_for(done.wait(), timeout=120)
        elapsed = time.perf_counter() - begin
        await queue.cancel(tag)
        await queue.delete(if_unused=False)
        await exchange.delete()
        return elapsed


async def _delete(config: RabbitMQEventBusConfig, url: str) -> None:
    """Remove what a bus run declared, so repeated runs leave the broker as it was."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        for queue in (config.queue, config.retry_queue, config.dlq_queue):
            await channel.queue_delete(queue)
        await channel.exchange_delete(config.exchange_name)


async def main(url: str, count: int, repeats: int) -> tuple[float, float]:
    events: list[DomainEvent] = [BenchEvent(aggregate_id=uuid4(), n=i) for i in range(count)]
    return await best_rates(url, events, run_raw, run_bus, repeats)


if __name__ == "__main__":
    cli(__doc__, "rabbitmq", main, "raw aio-pika", "RabbitMQEventBus")
