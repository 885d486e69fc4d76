"""KafkaEventBus under faults, on a real Kafka-protocol broker: failed and cancelled commits,
leaving the group after a failure, hostile records, a DLQ written while it is read, and a
broker that goes down and comes back.

A broker cannot be made to fail exactly one commit, so the commit tests wrap the aiokafka
consumer's ``commit`` to raise once (or to wait for the test): the one driver call faked here.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Callable, Iterator
from uuid import uuid4

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import ConsumerStoppedError, KafkaError

from eventsource_lab.brokers import Broker, start
from eventsource_lab.bus.kafka import KafkaEventBus, KafkaEventBusConfig
from eventsource_lab.errors import BusConnectionError
from tests.integration.bus.test_kafka import committed
from tests.support.events import OrderPlaced
from tests.support.scenarios import bus_factory, orders
from tests.support.waiting import Recorder, eventually

pytestmark = pytest.mark.kafka


@pytest.fixture
async def buses(kafka_broker) -> AsyncIterator[Callable[..., KafkaEventBus]]:
    """Buses on one fresh topic prefix (and group names of their own), shut down after."""
    async with bus_factory(kafka_broker) as make:
        yield make


@pytest.fixture
def own_broker() -> Iterator[Broker]:
    """A tansu of this test's own, to stop, pause and restart."""
    broker = start("kafka", "local")
    try:
        yield broker
    finally:
        for pid in broker.pids:
            os.kill(pid, signal.SIGCONT)  # a paused broker must be able to stop
        broker.stop()


async def consuming(bus: KafkaEventBus) -> Recorder:
    """Start ``bus`` consuming into a new Recorder."""
    recorder = Recorder()
    bus.subscribe(OrderPlaced, recorder)
    await bus.start_consuming()
    return recorder


def fail_commits(bus: KafkaEventBus, times: int) -> list[dict]:
    """Make the next ``times`` commits of the bus's consumer raise; return the refused offsets."""
    consumer = bus._kafka_consumer
    real = consumer.commit
    refused: list[dict] = []

    async def commit(offsets: dict | None = None) -> None:
        if len(refused) < times:
            refused.append(offsets)
            raise KafkaError("injected commit failure")
        await real(offsets)

    consumer.commit = commit
    return refused


# -- commits ----------------------------------------------------------------------------------


async def test_commits_go_on_after_one_fails(buses) -> None:
    """The refused commit is logged; its offset is committed by the next commit."""
    bus = buses(partitions=1)
    recorder = await consuming(bus)
    refused = fail_commits(bus, times=1)
    await bus.publish(orders(3))
    await recorder.wait_for(3)
    await eventually(lambda: refused, what="the commit to be refused")
    await bus.publish(orders(2))
    await recorder.wait_for(5)
    await eventually(
        lambda: _committed_is(bus, 5), timeout=10, what="offset 5 committed after the failure"
    )
    assert bus.is_consuming and bus.consumer_error is None


async def test_a_refused_commit_is_retried_without_new_events(buses) -> None:
    bus = buses(partitions=1)
    recorder = await consuming(bus)
    fail_commits(bus, times=1)
    await bus.publish(orders(3))
    await recorder.wait_for(3)
    await eventually(lambda: _committed_is(bus, 3), timeout=10, what="the commit to be retried")


async def _committed_is(bus: KafkaEventBus, offset: int) -> bool:
    return (await committed(bus, bus.config.topic, 1))[0] == offset


async def test_a_replay_caller_cancelled_while_it_waits_for_a_commit_leaves_the_loop_alive(
    buses,
) -> None:
    bus = buses(partitions=1)
    recorder = await consuming(bus)
    consumer = bus._kafka_consumer
    gate, entered, sought = asyncio.Event(), asyncio.Event(), asyncio.Event()
    real_commit, real_seek = consumer.commit, consumer.seek

    async def slow_commit(offsets: dict | None = None) -> None:
        entered.set()
        await asyncio.wait_for(gate.wait(), 10)
        await real_commit(offsets)

    def seek(tp: TopicPartition, offset: int) -> None:
        real_seek(tp, offset)
        sought.set()  # replay() seeks, then waits for the commit in flight

    consumer.commit, consumer.seek = slow_commit, seek
    await bus.publish(orders(2))
    await recorder.wait_for(2)
    await asyncio.wait_for(entered.wait(), 10)
    replay = asyncio.ensure_future(bus.replay(from_beginning=True))
    await asyncio.wait_for(sought.wait(), 10)
    replay.cancel()
    with pytest.raises(asyncio.CancelledError):
        await replay
    gate.set()
    await recorder.wait_for(4)  # the replayed two
    await bus.publish(orders(1))
    await recorder.wait_for(5)
    assert bus.is_consuming and bus.consumer_error is None


async def test_stopping_after_a_failed_commit_still_stops_the_consumer(buses) -> None:
    bus = buses(partitions=1)
    recorder = await consuming(bus)
    consumer = bus._kafka_consumer
    refused = fail_commits(bus, times=1_000)
    await bus.publish(orders(2))
    await recorder.wait_for(2)
    await eventually(lambda: refused, what="a commit to be refused")
    await bus.stop_consuming()
    assert not bus.is_consuming
    with pytest.raises(ConsumerStoppedError):
        await asyncio.wait_for(consumer.getmany(timeout_ms=0), 5)


# -- hostile records --------------------------------------------------------------------------


async def test_any_record_is_dead_lettered_committed_and_passed(buses, kafka_broker) -> None:
    bus = buses(partitions=1)
    recorder = await consuming(bus)
    topic = bus.config.topic
    hostile = [
        (b"[" * 100_000 + b"]" * 100_000, []),  # deeper than any JSON parser's recursion
        (b'{"a":' * 50_000 + b"1" + b"}" * 50_000, [("event_type", b"OrderPlaced")]),
        (None, [("event_type", b"OrderPlaced")]),
        (orders(1)[0].model_dump_json().encode(), [("event_type", b"\xff\xfeOrder")]),
    ]
    producer = AIOKafkaProducer(bootstrap_servers=kafka_broker.url)
    await producer.start()
    try:
        for value, headers in hostile:
            await producer.send_and_wait(topic, value, key=b"k", partition=0, headers=headers)
    finally:
        await producer.stop()
    good = orders(1)
    await bus.publish(good)
    assert (await recorder.wait_for(1)) == good
    await eventually(lambda: bus.get_stats()["messages_dead_lettered"] == 4)
    letters = await bus.get_dlq_messages()
    assert [letter.id for letter in letters] == [f"{topic}:0:{n}" for n in range(4)]
    assert letters[3].event_type == "\ufffd\ufffdOrder"  # the header, shown as best it can be
    assert letters[3].error_type == "MalformedMessageError"
    await eventually(lambda: _committed_is(bus, 5), what="committed past all of them")
    assert bus.is_consuming and bus.consumer_error is None


# -- the dead-letter queue --------------------------------------------------------------------


async def write_letters(bus: KafkaEventBus, producer: AIOKafkaProducer, n: int) -> list[str]:
    """Write ``n`` dead letters straight to the bus's DLQ, as its consumer would; their ids."""
    ids = [f"{bus.config.topic}:0:{uuid4().int % 10**9}" for _ in range(n)]
    for letter_id in ids:
        await producer.send_and_wait(
            bus.config.dlq_topic,
            b"{}",
            key=letter_id.encode(),
            headers=[("dlq.error_type", b"RuntimeError"), ("dlq.error", b"boom")],
        )
    return ids


@pytest.fixture
async def dlq_writer(kafka_broker) -> AsyncIterator[AIOKafkaProducer]:
    producer = AIOKafkaProducer(bootstrap_servers=kafka_broker.url)
    await producer.start()
    yield producer
    await producer.stop()


async def test_an_empty_dlq_lists_nothing_promptly(buses) -> None:
    bus = buses()
    await bus.connect()
    loop = asyncio.get_running_loop()
    begin = loop.time()
    assert await bus.get_dlq_messages() == []
    assert loop.time() - begin < 2


async def test_the_listing_has_every_letter_written_before_it_even_while_more_come(
    buses, dlq_writer
) -> None:
    """Letters arrive slowly (one every 0.2 s) all through: each listing right after a write
    shows every letter so far, in order, and returns promptly instead of waiting for a lull."""
    bus = buses()
    await bus.connect()
    written: list[str] = []
    more = asyncio.Event()

    async def trickle() -> None:
        while True:
            written.extend(await write_letters(bus, dlq_writer, 1))
            more.set()
            await asyncio.sleep(0.2)

    writer = asyncio.ensure_future(trickle())
    loop = asyncio.get_running_loop()
    try:
        for _ in range(5):
            more.clear()
            await asyncio.wait_for(more.wait(), 5)
            so_far = list(written)
            begin = loop.time()
            letters = await bus.get_dlq_messages(limit=1_000)
            assert loop.time() - begin < 2
            assert [letter.id for letter in letters][: len(so_far)] == so_far
    finally:
        writer.cancel()


async def test_the_listing_keeps_to_the_limit_and_replay_takes_one_letter_out(
    buses, dlq_writer
) -> None:
    bus = buses()
    await bus.connect()
    ids = await write_letters(bus, dlq_writer, 30)
    assert [letter.id for letter in await bus.get_dlq_messages(limit=10)] == ids[:10]
    assert await bus.replay_dlq_message(ids[3]) is True
    assert await bus.replay_dlq_message(ids[3]) is False
    assert [letter.id for letter in await bus.get_dlq_messages(limit=10)] == [
        *ids[:3],
        *ids[4:11],
    ]
    fresh = buses()  # another process: it knows nothing of what this bus listed
    assert await fresh.replay_dlq_message(ids[3]) is False
    assert await fresh.replay_dlq_message(ids[20]) is True
    listed = [letter.id for letter in await bus.get_dlq_messages()]
    assert listed == [i for n, i in enumerate(ids) if n not in (3, 20)]
    assert await bus.get_backlog() == {"pending": None, "dlq": 28}


async def test_replaying_a_letter_while_more_come_returns_promptly(buses, dlq_writer) -> None:
    bus = buses()
    recorder = await consuming(bus)
    ids = await write_letters(bus, dlq_writer, 20)
    letters = await bus.get_dlq_messages(limit=100)
    event = orders(1)[0]
    await dlq_writer.send_and_wait(
        bus.config.dlq_topic,
        event.model_dump_json().encode(),
        key=b"events:0:12345",
        headers=[("event_type", b"OrderPlaced"), ("dlq.original_key", b"k")],
    )

    async def trickle() -> None:
        while True:
            await write_letters(bus, dlq_writer, 1)
            await asyncio.sleep(0.2)

    writer = asyncio.ensure_future(trickle())
    loop = asyncio.get_running_loop()
    try:
        begin = loop.time()
        assert await bus.replay_dlq_message("events:0:12345") is True
        assert loop.time() - begin < 2
    finally:
        writer.cancel()
    assert await recorder.wait_for(1) == [event]
    listed = [letter.id for letter in await bus.get_dlq_messages(limit=1_000)]
    assert "events:0:12345" not in listed and listed[:20] == ids == [x.id for x in letters]


# -- the broker goes away ---------------------------------------------------------------------


async def test_publish_while_the_broker_hangs_fails_within_the_timeout_and_works_after(
    own_broker,
) -> None:
    bus = KafkaEventBus(
        KafkaEventBusConfig(
            bootstrap_servers=own_broker.url, topic_prefix="hang", publish_timeout=1.0
        )
    )
    async with bus:
        await bus.publish(orders(1))
        pids = own_broker.pids
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        loop = asyncio.get_running_loop()
        begin = loop.time()
        with pytest.raises(BusConnectionError, match="publish_timeout"):
            await bus.publish(orders(1))
        assert loop.time() - begin < 3
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
        await bus.publish(orders(1))


async def test_publish_while_the_broker_is_down_fails_within_the_timeout_and_works_after(
    own_broker,
) -> None:
    """tansu forgets every topic when it stops; on its metadata requests the clients make it
    create them again, with its own settings (the bus's partitions and compaction are lost)."""
    bus = KafkaEventBus(
        KafkaEventBusConfig(
            bootstrap_servers=own_broker.url, topic_prefix="down", publish_timeout=2.0
        )
    )
    async with bus:
        await bus.publish(orders(1))
        for pid in own_broker.pids:
            os.kill(pid, signal.SIGKILL)
        await eventually(lambda: not own_broker.pids, what="the broker to die")
        loop = asyncio.get_running_loop()
        begin = loop.time()
        with pytest.raises(BusConnectionError):
            await bus.publish(orders(1))
        assert loop.time() - begin < 4
        own_broker.restart()
        for event in orders(5):
            await bus.publish([event])


async def test_after_a_restart_that_loses_the_log_the_consumer_resumes_on_recreated_topics(
    own_broker,
) -> None:
    """tansu keeps topics in memory: a restart loses topics, events and the group's offsets.
    The consumer must see that, recreate the topics with the bus's settings and consume again
    from their start (its ``latest`` would skip what came before it joined), then stop at once.

    tansu drops what was written to a topic it lost once that topic is created again, so the
    events are published after the consumer has recovered."""
    config = KafkaEventBusConfig(
        bootstrap_servers=own_broker.url, topic_prefix="lost", consumer_group="g", partitions=3
    )
    consumer, publisher = KafkaEventBus(config), KafkaEventBus(config.model_copy())
    async with consumer, publisher:
        recorder = await consuming(consumer)
        await publisher.publish(orders(2, "before"))
        await recorder.wait_for(2, timeout=15)
        await asyncio.to_thread(own_broker.restart)
        await eventually(
            lambda: consumer.get_stats()["reconnections"] >= 1,
            timeout=30,
            what="the consumer to recover",
        )
        after = orders(6, "after")
        await asyncio.wait_for(publisher.publish(after), 15)
        await eventually(
            lambda: {e.event_id for e in after} <= set(recorder.ids),
            timeout=30,
            what="the events published after the restart",
        )
        assert consumer.is_consuming and consumer.consumer_error is None
        assert consumer.get_stats()["reconnections"] >= 1
        probe = AIOKafkaProducer(bootstrap_servers=own_broker.url)
        await probe.start()
        try:
            assert len(await probe.partitions_for(config.topic)) == 3
        finally:
            await probe.stop()
        loop = asyncio.get_running_loop()
        begin = loop.time()
        await consumer.stop_consuming()
        assert loop.time() - begin < config.session_timeout_ms / 1000 + 2
