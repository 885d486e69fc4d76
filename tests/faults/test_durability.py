"""Durable event storage: what is published while a group's consumers are stopped survives a
restart of the broker the kit started, and is delivered, exactly once each, afterwards.

Each kind gets a broker of its own (restarting the session's brokers would pull the ground from
under other tests). Where the broker is documented as not durable (tansu keeps topics in memory)
the test checks that fact instead: the events are gone after the restart.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any
from uuid import uuid4

import pytest

from eventsource_lab.brokers import Broker
from tests.faults._support import kafka_topics, own_broker
from tests.support.scenarios import bus_factory, orders
from tests.support.waiting import Recorder

WAIT = 60.0  # a tansu group join alone takes ~5 s; RabbitMQ's restart ~5 s
N = 25


@pytest.fixture
async def buses(broker: Broker) -> AsyncIterator[Callable[..., Any]]:
    """Buses of ``broker``'s kind in a namespace of this test's own, shut down at the end.

    Kafka gets one partition, read from its start: whatever survived would arrive before a later
    marker event."""
    kafka = {"partitions": 1, "auto_offset_reset": "earliest"} if broker.kind == "kafka" else {}
    async with bus_factory(broker, **kafka) as make:
        yield make


async def test_events_published_while_the_group_is_stopped_survive_a_restart(
    broker: Broker, buses: Callable[..., Any]
) -> None:
    group = f"projections-{uuid4().hex[:6]}"
    first = buses(consumer_group=group)
    await first.start_consuming()  # creates the group's stream group, queue or offsets
    await first.stop_consuming()
    await first.shutdown(5)

    publisher = buses(consumer_group=group)
    stored = orders(N, "while-stopped")
    await publisher.publish(stored)
    await publisher.shutdown(5)

    await asyncio.to_thread(broker.restart)  # returns once the broker answers again

    later = buses(consumer_group=group)
    recorder = Recorder(group)
    later.subscribe(type(stored[0]), recorder)
    await later.start_consuming()
    marker = orders(1, "after-restart")
    await buses(consumer_group=group).publish(marker)  # arrives after anything that survived
    if broker.durable:
        await recorder.wait_for(N + 1, timeout=WAIT)
        assert len(set(recorder.ids)) == len(recorder.ids) == N + 1  # each exactly once
        assert set(recorder.ids) == {e.event_id for e in [*stored, *marker]}
    else:
        assert (broker.kind, broker.durable) == ("kafka", False)  # tansu, local or stand-in
        await recorder.wait_for(1, timeout=WAIT)
        assert recorder.ids == [marker[0].event_id]  # all N were lost with the restart


@pytest.mark.kafka
async def test_local_tansu_loses_its_topics_on_restart_as_documented() -> None:
    async with own_broker("kafka", mode="local") as tansu:
        assert tansu.durable is False
        async with bus_factory(tansu) as make:
            bus = make()
            await bus.publish(orders(3))
            assert bus.config.topic in await kafka_topics(tansu.url)
            await asyncio.to_thread(tansu.restart)
            prefix = bus.config.topic_prefix
            assert not any(name.startswith(prefix) for name in await kafka_topics(tansu.url))
