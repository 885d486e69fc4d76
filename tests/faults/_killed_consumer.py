"""A consumer in a process of its own, for the test that kills it with SIGKILL mid-batch.

``python -m tests.faults._killed_consumer KIND CONFIG_JSON``: consumes with a slow handler and
prints ``ready`` once receiving, then ``handled <event_id>`` after each event it handled.
"""

from __future__ import annotations

import asyncio
import json
import sys

from eventsource_lab.bus import (
    KafkaEventBus,
    KafkaEventBusConfig,
    RabbitMQEventBus,
    RabbitMQEventBusConfig,
    RedisEventBus,
    RedisEventBusConfig,
)
from tests.support.events import OrderPlaced

BUSES = {
    "redis": (RedisEventBus, RedisEventBusConfig),
    "rabbitmq": (RabbitMQEventBus, RabbitMQEventBusConfig),
    "kafka": (KafkaEventBus, KafkaEventBusConfig),
}
HANDLING = 0.3  # seconds per event: slow enough to be killed in the middle of a batch


async def main(kind: str, config: dict[str, object]) -> None:
    bus_class, config_class = BUSES[kind]
    bus = bus_class(config_class(**config))

    async def slow(event: OrderPlaced) -> None:
        await asyncio.sleep(HANDLING)
        print(f"handled {event.event_id}", flush=True)

    bus.subscribe(OrderPlaced, slow)
    await bus.start_consuming()
    print("ready", flush=True)
    await asyncio.Event().wait()  # until killed


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], json.loads(sys.argv[2])))
