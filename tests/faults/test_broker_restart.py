"""The broker restarts while a bus consumes: the consumer resumes by itself and handles every
event published after the restart, and (where the broker keeps them) every one published before.

Each kind gets a broker of its own, restarted in the middle of the test (the session's brokers
stay untouched). Redis (append-only file) and RabbitMQ (durable queues, persistent messages) keep
what was published before the restart, so those events must all arrive, duplicates allowed with
the same event_id. Local tansu keeps topics in memory only: a restart loses the topics, their
events and the group's offsets. There the test lets the events from before arrive first, then
shows what the bus does after the restart: the consumer finds its topics gone, creates them
again with the bus's settings and starts over from the new log's beginning (a reconnection).
On tansu an event produced before its topic is created again is lost when it is (tansu accepts
the produce, then drops the data on CreateTopics), so there the test publishes once the consumer
has recovered: a broker that loses its log cannot promise more, and ``broker.durable`` says so.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from eventsource_lab.brokers import Broker
from tests.faults._support import (
    assert_alive,
    assert_at_least_once,
    assert_counted,
    bring_up,
    kafka_topics,
)
from tests.support.events import OrderPlaced
from tests.support.scenarios import bus_factory, orders
from tests.support.waiting import Recorder, eventually

N = 10
WAIT = 30.0  # RabbitMQ restarts in ~5 s and its client reconnects each second; a tansu join ~5 s


@pytest.fixture
async def buses(broker: Broker) -> AsyncIterator[Callable[..., Any]]:
    async with bus_factory(broker) as make:
        yield make


async def test_the_consumer_resumes_after_a_broker_restart(
    broker: Broker, buses: Callable[..., Any]
) -> None:
    consumer = buses(consumer_group="projection")
    recorder = Recorder()
    consumer.subscribe(OrderPlaced, recorder)
    await consumer.start_consuming()
    publisher = buses(consumer_group="publisher")

    before = orders(N, "before")
    await publisher.publish(before)
    if broker.durable:
        await recorder.wait_for(1, timeout=WAIT)  # restart while the rest may be in flight
    else:  # tansu would lose what was not yet consumed: let it all arrive first
        await recorder.wait_for(N, timeout=WAIT)

    reconnections = consumer.get_stats()["reconnections"]
    await bring_up(broker)  # stop, start on the same port and data; returns once it answers
    if not broker.durable:  # the log is gone: wait until the consumer made its topics again
        await eventually(
            lambda: consumer.get_stats()["reconnections"] > reconnections, timeout=WAIT
        )

    after = orders(N, "after")
    await asyncio.wait_for(publisher.publish(after), WAIT)
    await eventually(
        lambda: {e.event_id for e in after} <= set(recorder.ids) or not consumer.is_consuming,
        timeout=WAIT,
        what="the events published after the restart",
    )
    assert_alive(consumer)
    assert_at_least_once(recorder.ids, [e.event_id for e in [*before, *after]])
    await assert_counted(
        consumer,
        {
            "events_consumed": len(recorder.ids),
            "events_processed": len(recorder.ids),
            "events_failed": 0,
            "messages_dead_lettered": 0,
            "handler_errors": 0,
        },
    )
    assert consumer.get_stats()["reconnections"] >= 1
    if broker.kind == "kafka":  # the topics are back: created again by the clients' requests
        assert publisher.config.topic in await kafka_topics(broker.url)
