"""The RabbitMQ bus on a cluster the way users get it wrong: odd URL lists, a password with a
comma, a node with the wrong credentials, every node down at once.

One three-node cluster serves the module (a quorum queue keeps its majority while one of three
nodes is down); every test leaves all three running.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import time
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID, uuid4

import pytest
from yarl import URL

from eventsource_lab import DomainEvent
from eventsource_lab.brokers.cluster import RabbitMQCluster
from eventsource_lab.bus.rabbitmq import RabbitMQEventBus, RabbitMQEventBusConfig
from eventsource_lab.errors import BusConnectionError
from eventsource_lab.redact import redact_url
from tests.support.events import OrderPlaced
from tests.support.waiting import eventually

pytestmark = [pytest.mark.rabbitmq, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def cluster(rabbitmq_cluster: RabbitMQCluster) -> RabbitMQCluster:
    return rabbitmq_cluster


def _order() -> OrderPlaced:
    return OrderPlaced(aggregate_id=uuid4(), customer_name="c", total_amount=1)


@contextlib.asynccontextmanager
async def _bus(
    urls: str | list[str], group: str, **settings: Any
) -> AsyncIterator[RabbitMQEventBus]:
    config = {"exchange_name": f"adv-{uuid4().hex[:8]}", "publish_timeout": 3, **settings}
    bus = RabbitMQEventBus(
        RabbitMQEventBusConfig(rabbitmq_url=urls, consumer_group=group, heartbeat=5, **config)
    )
    try:
        yield bus
    finally:
        await bus.shutdown(5)


async def _publish_until_taken(bus: RabbitMQEventBus, event: DomainEvent, timeout: float) -> int:
    """Publish ``event`` until the broker confirms it; how many attempts failed first."""
    deadline = time.monotonic() + timeout
    failed = 0
    while True:
        try:
            await bus.publish([event])
            return failed
        except BusConnectionError:
            failed += 1
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def test_a_password_with_a_comma_and_an_at_sign_works_as_text_and_in_a_list(
    cluster: RabbitMQCluster,
) -> None:
    """Such a password was cut at its comma: the bus tried a URL ``amqp://user:first-half``,
    and the error showed that half of the password."""
    user, password = f"adv-{secrets.token_hex(3)}", f"{secrets.token_hex(4)},x@y"
    runner = cluster._cluster_runner
    await asyncio.to_thread(runner.query, "add_user", user, password)
    await asyncio.to_thread(runner.query, "set_permissions", "-p", "/", user, ".*", ".*", ".*")
    urls = [f"amqp://{user}:{password}@127.0.0.1:{URL(url).port}/" for url in cluster.urls]
    for given in (", ".join(urls), urls):
        config = RabbitMQEventBusConfig(rabbitmq_url=given)
        assert config.urls == urls
        assert password.split(",")[0] not in repr(config)
        async with _bus(given, "orders") as bus:
            assert await _round_trip(bus) and bus.connected_url == redact_url(urls[0])


async def _round_trip(bus: RabbitMQEventBus) -> bool:
    """Whether an event ``bus`` publishes reaches its own consumer."""
    seen: list[UUID] = []
    bus.subscribe(OrderPlaced, lambda e: seen.append(e.event_id))
    await bus.start_consuming()
    event = _order()
    await bus.publish([event])
    await eventually(lambda: event.event_id in seen, timeout=10, what="the event")
    return True


async def test_credentials_refused_by_every_node_are_a_prompt_error_without_the_password(
    cluster: RabbitMQCluster,
) -> None:
    urls = [str(URL(url).with_password("wr0ng,pass")) for url in cluster.urls]
    began = time.monotonic()
    async with _bus(urls, "orders") as bus:
        with pytest.raises(BusConnectionError) as caught:
            await bus.connect()
    message = str(caught.value)
    assert time.monotonic() - began < 10
    assert "wr0ng" not in message and message.count("ACCESS_REFUSED") == len(urls)
    assert all(redact_url(url) in message for url in urls)


async def test_every_node_down_past_publish_timeout_then_back_loses_nothing(
    cluster: RabbitMQCluster,
) -> None:
    """Publishing fails within ``publish_timeout`` while no node runs, with a clear error; once
    the cluster is back the same buses publish and consume again, and shut down promptly. Node
    2's URL has a wrong password: reconnecting must pass over its refusal, not stay on it."""
    node_1, node_2, node_3 = cluster.nodes
    urls = [node_1.url, str(URL(node_2.url).with_password("wrong")), node_3.url]
    async with (
        _bus(urls, "pub", queue_type="quorum", publish_timeout=2) as publisher,
        _bus(
            urls, "orders", queue_type="quorum", exchange_name=publisher.config.exchange_name
        ) as consumer,
    ):
        seen: list[UUID] = []
        consumer.subscribe(OrderPlaced, lambda e: seen.append(e.event_id))
        await consumer.start_consuming()
        before = _order()
        await publisher.publish([before])
        async with _bus(cluster.url, "idle") as idle:
            await idle.connect()
            await asyncio.gather(*(node.astop() for node in cluster.nodes))
            try:
                began = time.monotonic()
                with pytest.raises(BusConnectionError, match="publish_timeout=2s"):
                    await publisher.publish([_order()])
                assert time.monotonic() - began < 4
                began = time.monotonic()
                await idle.shutdown(5)  # while no node answers
                assert time.monotonic() - began < 2 and not idle.is_connected
            finally:
                await asyncio.to_thread(cluster.restart)
        after = _order()
        await _publish_until_taken(publisher, after, timeout=30)
        await eventually(
            lambda: {before.event_id, after.event_id} <= set(seen), timeout=30, what="both"
        )
        assert consumer.is_consuming
        assert consumer.connected_url in (redact_url(node_1.url), redact_url(node_3.url))
    began = time.monotonic()
    await asyncio.gather(publisher.shutdown(5), consumer.shutdown(5))
    assert time.monotonic() - began < 2


async def test_a_node_that_hangs_first_in_the_list_leaves_time_to_publish_through_the_next(
    cluster: RabbitMQCluster,
) -> None:
    """Node 1 frozen (SIGSTOP: its port still accepts, nothing answers), as a node in a long GC
    pause or a paused VM is. Each URL was given 10 s to answer, so with ``publish_timeout=3``
    every publish of a new bus failed although nodes 2 and 3 were fine."""
    node_1 = cluster.nodes[0]
    async with _bus(cluster.url, "pub", publish_timeout=3) as publisher:
        await publisher.connect()  # the exchange exists before node 1 freezes
        await publisher.disconnect()
        pids = node_1.pids
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        try:
            began = time.monotonic()
            await publisher.publish([_order()])
            assert time.monotonic() - began < 3
            assert publisher.connected_url == redact_url(cluster.urls[1])
        finally:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)


async def test_a_publish_whose_timeout_ends_the_connect_leaves_no_connection_reconnecting() -> None:
    """Two nodes that accept and never answer (hung): ``publish_timeout`` cancels the connect
    under way, and that connection kept reconnecting in the background for ever, after
    ``shutdown()`` too, as nothing owned it."""
    listeners = [socket.create_server(("127.0.0.1", 0)) for _ in range(2)]
    with contextlib.ExitStack() as stack:
        for listener in listeners:
            stack.enter_context(listener)
        urls = [f"amqp://u:p@127.0.0.1:{s.getsockname()[1]}/" for s in listeners]
        before = asyncio.all_tasks()
        async with _bus(urls, "pub", publish_timeout=1) as bus:
            with pytest.raises(BusConnectionError, match="publish_timeout=1s"):
                await bus.publish([_order()])
        await asyncio.sleep(0.1)  # a cancelled task ends on the loop's next passes
        assert [t for t in asyncio.all_tasks() - before if not t.done()] == []
