"""A quorum-queue bus on a three-node RabbitMQ cluster while a node stops.

A publisher and a consumer run continuously with ``rabbitmq_url=cluster.url`` (every node's
URL). The node holding the queue's leader is stopped: in the first case it is also the node both
buses are connected to (what a user meets with the defaults: every client takes the first URL,
and a queue's leader goes to the node that declared it), in the second the leader is elsewhere
and the buses stay connected. One node at a time: two of three stopped would leave the quorum
queue without a majority, and it would stop taking and giving messages until one is back.

Every event confirmed to the publisher must be handled; a publish that fails during the failover
is retried with the same event, so a duplicate is possible, and counted. The numbers printed:
how long consuming paused, how many duplicates, how many publishes were retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import partial
from uuid import UUID, uuid4

import pytest

from eventsource_lab import DomainEvent
from eventsource_lab.brokers.cluster import ClusterNode, RabbitMQCluster
from eventsource_lab.bus.rabbitmq import RabbitMQEventBus, RabbitMQEventBusConfig
from eventsource_lab.errors import BusConnectionError
from eventsource_lab.redact import redact_url
from tests.support.events import OrderPlaced
from tests.support.waiting import eventually

pytestmark = [pytest.mark.rabbitmq, pytest.mark.timeout(240)]

#: Consuming may pause this long around a node's stop: the broker closes the connections of a
#: node that stops at once, the bus reconnects within a second per node it tries, and a quorum
#: queue elects a new leader within a few seconds (RabbitMQ's election timeout).
GAP_BOUND = 10.0
PUBLISH_EVERY = 0.01  # about 100 events a second


@pytest.fixture(scope="module")
def cluster(rabbitmq_cluster: RabbitMQCluster) -> RabbitMQCluster:
    return rabbitmq_cluster


@dataclass
class Run:
    """What one run saw: events confirmed, events handled (with when), publishes retried."""

    published: list[UUID] = field(default_factory=list)
    handled: list[tuple[float, UUID]] = field(default_factory=list)
    retried: int = 0

    async def handle(self, event: DomainEvent) -> None:
        self.handled.append((asyncio.get_running_loop().time(), event.event_id))

    def since(self, moment: float) -> int:
        return sum(1 for when, _ in self.handled if when > moment)

    def longest_pause(self) -> float:
        times = [when for when, _ in self.handled]
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


async def publish_continuously(bus: RabbitMQEventBus, run: Run, stop: asyncio.Event) -> None:
    """One event at a time until ``stop``; a publish that fails is sent again, same event."""
    while not stop.is_set():
        event = OrderPlaced(aggregate_id=uuid4(), customer_name="c", total_amount=1)
        while True:
            try:
                await bus.publish([event])
                break
            except BusConnectionError:
                run.retried += 1
                await asyncio.sleep(0.1)
        run.published.append(event.event_id)
        await asyncio.sleep(PUBLISH_EVERY)


@contextlib.asynccontextmanager
async def buses(
    cluster: RabbitMQCluster, exchange: str, urls: list[str]
) -> AsyncIterator[tuple[RabbitMQEventBus, RabbitMQEventBus]]:
    """A publisher and a consumer on ``urls``, quorum queues; both shut down at the end."""
    settings = {
        "rabbitmq_url": urls,
        "exchange_name": exchange,
        "queue_type": "quorum",
        "publish_timeout": 5,
        "heartbeat": 5,
    }
    publisher = RabbitMQEventBus(RabbitMQEventBusConfig(consumer_group="pub", **settings))
    consumer = RabbitMQEventBus(RabbitMQEventBusConfig(consumer_group="orders", **settings))
    try:
        yield publisher, consumer
    finally:
        for bus in (consumer, publisher):
            await bus.shutdown(5)


def kill(node: ClusterNode) -> None:
    """End ``node`` as a crash would (SIGKILL: no goodbye to clients or to the other nodes)."""
    for pid in node.pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    node.stop()  # reaps what was killed


@pytest.mark.parametrize(
    ("case", "end"),
    [
        ("leader on the buses' node", "stop"),
        ("leader on another node", "stop"),
        ("leader on the buses' node", "kill"),
    ],
)
async def test_stopping_the_queue_leaders_node_loses_nothing_and_consuming_resumes(
    cluster: RabbitMQCluster, case: str, end: str
) -> None:
    exchange = f"ha-{uuid4().hex[:8]}"
    queue = f"{exchange}.orders"
    if case == "leader on another node":  # the queue is declared through the last node first
        async with buses(cluster, exchange, cluster.urls[::-1]) as (_, declarer):
            await declarer.start_consuming()
    async with buses(cluster, exchange, cluster.urls) as (publisher, consumer):
        run = Run()
        consumer.subscribe(OrderPlaced, run.handle)
        await consumer.start_consuming()
        leader = await asyncio.to_thread(cluster.queue_leader, queue)
        assert leader is not None
        connected = consumer.connected_url
        assert connected == redact_url(cluster.urls[0])
        assert (leader.url == cluster.urls[0]) == (case == "leader on the buses' node")

        stop = asyncio.Event()
        publishing = asyncio.create_task(publish_continuously(publisher, run, stop))
        loop = asyncio.get_running_loop()
        try:
            await eventually(lambda: len(run.handled) >= 50, timeout=30, what="steady flow")
            stopping = loop.time()
            await asyncio.to_thread(leader.stop if end == "stop" else partial(kill, leader))
            stopped = loop.time()
            await eventually(lambda: run.since(stopped) >= 50, timeout=60, what="resumed")
            resumed = min(when for when, _ in run.handled if when > stopped)
        except BaseException:
            await asyncio.to_thread(leader.start)  # the next case needs all three
            raise
        finally:
            stop.set()
            await asyncio.wait_for(publishing, 30)
        published = set(run.published)
        await eventually(
            lambda: published <= {i for _, i in run.handled}, timeout=60, what="every event"
        )
        new_leader = await asyncio.to_thread(cluster.queue_leader, queue)
        handled = [i for _, i in run.handled]
        lost = published - set(handled)
        duplicates = len(handled) - len(set(handled))
        print(
            f"\n[{case}, {end}] leader {leader.name} down in {stopped - stopping:.1f}s; "
            f"consumer on {connected} -> {consumer.connected_url}; new leader "
            f"{new_leader.name if new_leader else None}; published {len(published)}, "
            f"handled {len(handled)}, lost {len(lost)}, duplicates {duplicates}, "
            f"publishes retried {run.retried}; first event handled {resumed - stopped:.2f}s "
            f"after the node was down; longest pause in consuming {run.longest_pause():.2f}s"
        )
        try:
            assert not lost
            assert run.longest_pause() < GAP_BOUND
            assert new_leader is not None and new_leader is not leader
            if case == "leader on the buses' node":
                assert consumer.connected_url not in (None, connected)
                assert consumer.get_stats()["reconnections"] >= 1
            else:
                assert consumer.connected_url == connected
        finally:
            await asyncio.to_thread(leader.start)
