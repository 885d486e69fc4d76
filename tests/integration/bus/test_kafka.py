"""KafkaEventBus against a real Kafka-protocol broker: groups, rebalancing, a dead consumer,
retries, the DLQ, per-aggregate order, replay, metrics.

Every test says what happens to each message and checks that none is lost. Each consumer group
join costs about half the session timeout on tansu (the broker the tests start here), so the
tests keep the number of joins small.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from uuid import uuid4

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from eventsource_lab.bus.kafka import KafkaEventBus, KafkaEventBusConfig
from eventsource_lab.errors import BusConnectionError, BusError
from tests.support.events import OrderPlaced
from tests.support.scenarios import bus_maker, orders, poison_bus
from tests.support.waiting import Recorder, eventually

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parents[3]
JOIN_TIMEOUT = 30.0  # a group join plus a dead member's session timeout, with room to spare


@pytest.fixture
async def buses(kafka_broker) -> AsyncIterator[Callable[..., KafkaEventBus]]:
    """Make buses sharing one fresh topic prefix; all are shut down after the test.

    Group names get the prefix too: a Kafka group is one across topics, so a group name shared
    with another test would make the two tests' consumers rebalance together."""
    prefix = f"t-{uuid4().hex[:8]}"
    async with bus_maker(
        KafkaEventBus,
        KafkaEventBusConfig,
        bootstrap_servers=kafka_broker.url,
        topic_prefix=prefix,
        retry_delay=0.01,
    ) as make_bus:

        def make(consumer_group: str = "default", **overrides) -> KafkaEventBus:
            return make_bus(consumer_group=f"{prefix}-{consumer_group}", **overrides)

        yield make


async def committed(bus: KafkaEventBus, topic: str, partitions: int) -> dict[int, int | None]:
    """The group's committed offsets, read by a consumer that does not join the group."""
    config = bus.config
    reader = AIOKafkaConsumer(
        bootstrap_servers=config.bootstrap_servers,
        group_id=config.consumer_group,
        enable_auto_commit=False,
    )
    await reader.start()
    try:
        return {p: await reader.committed(TopicPartition(topic, p)) for p in range(partitions)}
    finally:
        await reader.stop()


async def test_each_group_receives_every_event(buses) -> None:
    recorders = {}
    started = []
    for group in ("projections", "notifications"):
        bus = buses(consumer_group=group)
        recorders[group] = Recorder(group)
        bus.subscribe(OrderPlaced, recorders[group])
        started.append(bus.start_consuming())
    await asyncio.gather(*started)  # groups join in parallel: each join takes seconds on tansu
    events = orders(200)
    publisher = buses()
    await publisher.publish(events)  # publishing connects first
    assert publisher.is_connected and not publisher.is_consuming
    for recorder in recorders.values():
        assert sorted(e.event_id for e in await recorder.wait_for(200)) == sorted(
            e.event_id for e in events
        )
        assert len(recorder.events) == 200


async def test_consumers_of_one_group_split_the_partitions_without_duplicates(buses) -> None:
    recorders = []
    started = []
    for name in ("a", "b"):
        bus = buses(consumer_name=name)
        recorder = Recorder(name)
        bus.subscribe(OrderPlaced, recorder)
        started.append(bus.start_consuming())
        recorders.append(recorder)
    await asyncio.gather(*started)  # both join one rebalance: 2 of the 4 partitions each
    events = orders(200)
    await buses().publish(events)
    await eventually(lambda: sum(len(r.events) for r in recorders) >= 200, what="200 events")
    ids = [i for r in recorders for i in r.ids]
    assert len(ids) == 200 and set(ids) == {e.event_id for e in events}
    assert all(r.events for r in recorders), "both consumers should own partitions"


# A consumer process whose handler never finishes: it prints what it receives, then hangs.
STUCK_CONSUMER = """
import asyncio, sys
from eventsource_lab.bus.kafka import KafkaEventBus, KafkaEventBusConfig
from tests.support.events import OrderPlaced

async def main():
    bus = KafkaEventBus(KafkaEventBusConfig.model_validate_json(sys.argv[1]))

    async def stuck(event):
        print(event.event_id, flush=True)
        await asyncio.Event().wait()

    bus.subscribe(OrderPlaced, stuck)
    await bus.start_consuming()
    print("ready", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


async def test_a_consumer_that_dies_before_committing_loses_nothing(buses) -> None:
    """Process A takes the events and is killed (SIGKILL) before it commits anything; once the
    group notices (session timeout), B gets A's partitions and handles every event. The ones A
    had started are delivered twice: allowed (at least once), and counted here."""
    config = buses().config.model_copy(update={"consumer_name": "a"})
    a = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        STUCK_CONSUMER,
        config.model_dump_json(),
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        line = await asyncio.wait_for(a.stdout.readline(), JOIN_TIMEOUT)
        assert line == b"ready\n", line
        events = orders(20)
        await buses().publish(events)
        first = await asyncio.wait_for(a.stdout.readline(), 10)
        assert first.strip(), "A should have started on an event"
    finally:
        a.kill()
        rest, _ = await a.communicate()
    started_by_a = {first.decode().strip(), *rest.decode().split()}

    b = buses(consumer_name="b")
    recorder = Recorder("b")
    b.subscribe(OrderPlaced, recorder)
    await asyncio.wait_for(b.start_consuming(), JOIN_TIMEOUT)  # the group gives up on A first
    await recorder.wait_for(20)
    assert sorted(recorder.ids) == sorted(e.event_id for e in events)
    redelivered = {str(i) for i in recorder.ids} & started_by_a
    assert redelivered == started_by_a and 1 <= len(redelivered) <= b.config.partitions
    await eventually(lambda: b.get_stats()["events_processed"] == 20)


async def test_poison_goes_to_the_dlq_after_max_retries_and_the_rest_flows(buses) -> None:
    calls: list[str] = []
    bus, recorder = poison_bus(buses, calls, {})
    await bus.start_consuming()
    aggregate = uuid4()  # poison between two events of its aggregate: the later one still comes
    before, after = (
        OrderPlaced(aggregate_id=aggregate, customer_name=name, total_amount=1, aggregate_version=v)
        for v, name in ((1, "before"), (3, "after"))
    )
    poison = OrderPlaced(
        aggregate_id=aggregate, customer_name="poison", total_amount=1, aggregate_version=2
    )
    others = orders(4, "ok")
    await bus.publish([*others[:2], before, poison, after, *others[2:]])
    await recorder.wait_for(6)
    await eventually(lambda: bus.get_stats()["messages_dead_lettered"] == 1)
    assert calls.count("poison") == 3  # first try + max_retries
    assert [e.customer_name for e in recorder.events if e.aggregate_id == aggregate] == [
        "before",
        "after",
    ]
    (letter,) = await bus.get_dlq_messages()
    assert (letter.event_type, letter.error_type, letter.retries) == (
        "OrderPlaced",
        "RuntimeError",
        2,
    )
    assert letter.error == "cannot handle poison"
    topic, partition, offset = letter.original_id.rsplit(":", 2)
    assert topic == bus.config.topic
    assert OrderPlaced.model_validate_json(letter.body) == poison
    stats = bus.get_stats()
    assert (stats["events_processed"], stats["events_failed"]) == (6, 1)
    offsets = await committed(bus, topic, bus.config.partitions)
    assert offsets[int(partition)] > int(offset)  # committed past the poison


async def test_replaying_a_dead_letter_after_a_fix_delivers_it_to_that_group_only(buses) -> None:
    calls: list[str] = []
    fixed: dict = {}
    bus, recorder = poison_bus(buses, calls, fixed, consumer_group="billing")
    other = buses(consumer_group="audit")
    audit = Recorder("audit")
    other.subscribe(OrderPlaced, audit)
    await asyncio.gather(bus.start_consuming(), other.start_consuming())
    poison = OrderPlaced(aggregate_id=uuid4(), customer_name="poison", total_amount=1)
    await bus.publish([poison])
    await eventually(lambda: bus.get_stats()["messages_dead_lettered"] == 1)
    await audit.wait_for(1)
    (letter,) = await bus.get_dlq_messages()

    fixed["yes"] = True
    assert await bus.replay_dlq_message(letter.id) is True
    (replayed,) = await recorder.wait_for(1)
    assert replayed == poison
    assert await bus.get_dlq_messages() == []
    assert await bus.replay_dlq_message(letter.id) is False
    assert await other.get_dlq_messages() == []
    witness = orders(1)
    await bus.publish(witness)
    await audit.wait_for(2)
    assert audit.ids == [poison.event_id, witness[0].event_id]  # no replay for the audit group


async def test_unknown_types_and_garbage_go_to_the_dlq_and_consuming_goes_on(
    buses, kafka_broker
) -> None:
    bus = buses()
    recorder = Recorder()
    bus.subscribe(OrderPlaced, recorder)
    await bus.start_consuming()
    topic = bus.config.topic
    producer = AIOKafkaProducer(bootstrap_servers=kafka_broker.url)
    await producer.start()
    try:
        for value, headers in [
            (b'{"event_type": "Refunded"}', [("event_type", b"Refunded")]),
            (b"\xff\x00\x13", []),
            (b"\xffnot json", [("event_type", b"OrderPlaced")]),
            (None, []),
        ]:
            await producer.send_and_wait(topic, value, key=b"k", partition=0, headers=headers)
        good = orders(1)[0]
        await producer.send_and_wait(
            topic, good.model_dump_json().encode(), partition=0, key=b"k"
        )  # no headers: the type is read from the body
    finally:
        await producer.stop()
    assert (await recorder.wait_for(1))[0] == good
    await eventually(lambda: bus.get_stats()["messages_dead_lettered"] == 4)
    letters = await bus.get_dlq_messages()
    assert [letter.error_type for letter in letters] == [
        "UnknownEventTypeError",
        "MalformedMessageError",
        "MalformedMessageError",
        "MalformedMessageError",
    ]
    assert "'Refunded'" in letters[0].error
    assert "not JSON" in letters[1].error and letters[1].body == b"\xff\x00\x13"
    assert "no value" in letters[3].error
    assert [letter.id for letter in letters] == [f"{topic}:0:{n}" for n in range(4)]
    assert bus.is_consuming
    assert (await committed(bus, topic, 1))[0] == 5


async def test_without_a_dlq_a_failing_message_is_not_committed_and_comes_again(buses) -> None:
    calls: list[str] = []
    bus, _ = poison_bus(buses, calls, {}, enable_dlq=False, max_retries=0)
    await bus.start_consuming()
    await bus.publish([OrderPlaced(aggregate_id=uuid4(), customer_name="poison", total_amount=1)])
    await eventually(lambda: calls.count("poison") >= 3, what="the message to come again")
    assert bus.get_stats()["messages_dead_lettered"] == 0
    assert await bus.get_dlq_messages() == []
    offsets = await committed(bus, bus.config.topic, bus.config.partitions)
    assert set(offsets.values()) == {0}  # nothing committed past the poison


async def test_each_aggregate_keeps_its_order_across_partitions(buses) -> None:
    bus = buses(partitions=6)
    recorder = Recorder()
    bus.subscribe_to_all_events(recorder)
    await bus.start_consuming()
    aggregates = [uuid4() for _ in range(30)]
    events = [
        OrderPlaced(aggregate_id=a, customer_name="c", total_amount=v, aggregate_version=v)
        for v in range(1, 11)
        for a in aggregates
    ]  # interleaved: version 1 of every aggregate, then version 2, ...
    for i in range(0, len(events), 50):
        await bus.publish(events[i : i + 50])
    await recorder.wait_for(300)
    for aggregate in aggregates:
        versions = [e.aggregate_version for e in recorder.events if e.aggregate_id == aggregate]
        assert versions == list(range(1, 11))
    offsets = await committed(bus, bus.config.topic, 6)
    assert sum(offsets.values()) == 300
    assert sum(1 for n in offsets.values() if n) >= 4, f"too few partitions used: {offsets}"


async def test_published_batches_put_each_event_where_a_keyed_send_would(buses) -> None:
    """The bus builds its own record batches; a producer anywhere else (aiokafka's send(),
    Kafka's Java client) must still put an aggregate's events on the same partition."""
    from aiokafka.partitioner import DefaultPartitioner

    bus = buses(partitions=5)
    events = orders(120)
    await bus.publish(events)
    reader = AIOKafkaConsumer(
        bus.config.topic,
        bootstrap_servers=bus.config.bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await reader.start()
    try:
        seen: dict[bytes, int] = {}
        while len(seen) < len(events):
            batches = await asyncio.wait_for(reader.getmany(timeout_ms=500), 10)
            seen.update({r.key: r.partition for rs in batches.values() for r in rs})
    finally:
        await reader.stop()
    partitions = list(range(5))
    expected = {
        key: DefaultPartitioner()(key, partitions, partitions)
        for key in (str(e.aggregate_id).encode() for e in events)
    }
    assert seen == expected
    assert len(set(seen.values())) == 5


async def test_an_event_too_large_for_a_kafka_request_is_a_clear_error(buses) -> None:
    bus = buses()
    huge = OrderPlaced(aggregate_id=uuid4(), customer_name="x" * 1_100_000, total_amount=1)
    with pytest.raises(BusError, match="bytes encoded; a Kafka request may carry 1,048,576"):
        await bus.publish([huge])
    await bus.publish(orders(1))  # the bus goes on


async def test_replay_from_the_beginning_delivers_everything_again_to_that_group_only(
    buses,
) -> None:
    bus, other = buses(consumer_group="projection"), buses(consumer_group="audit")
    recorder, audit = Recorder("projection"), Recorder("audit")
    bus.subscribe(OrderPlaced, recorder)
    other.subscribe(OrderPlaced, audit)
    await asyncio.gather(bus.start_consuming(), other.start_consuming())
    events = orders(50)
    await bus.publish(events)
    await recorder.wait_for(50)
    sought = await bus.replay(from_beginning=True)
    assert sought == dict.fromkeys(range(bus.config.partitions), 0)
    received = await recorder.wait_for(100)
    assert sorted(e.event_id for e in received[50:]) == sorted(e.event_id for e in events)
    witness = orders(1)
    await bus.publish(witness)
    await audit.wait_for(51)
    await recorder.wait_for(101)
    assert len(audit.events) == 51 and audit.ids[-1] == witness[0].event_id


async def test_replay_since_a_time_delivers_the_events_from_then_on(buses) -> None:
    bus = buses()
    recorder = Recorder()
    bus.subscribe(OrderPlaced, recorder)
    await bus.start_consuming()
    older, newer = orders(20, "old"), orders(20, "new")
    await bus.publish(older)
    await recorder.wait_for(20)
    await asyncio.sleep(0.02)  # separate the clock readings: timestamps are in milliseconds
    since = datetime.now(timezone.utc)
    await asyncio.sleep(0.02)
    await bus.publish(newer)
    await recorder.wait_for(40)

    assert await bus.replay(since=datetime.now(timezone.utc) + timedelta(hours=1)) == {}
    await bus.replay(since=since)
    received = await recorder.wait_for(60)
    assert sorted(e.event_id for e in received[40:]) == sorted(e.event_id for e in newer)
    witness = orders(1)
    await bus.publish(witness)
    await recorder.wait_for(61)
    assert recorder.ids[-1] == witness[0].event_id  # nothing older came again


async def test_replay_needs_a_running_consumer_and_one_starting_point(buses) -> None:
    bus = buses()
    with pytest.raises(ValueError, match="either from_beginning"):
        await bus.replay()
    with pytest.raises(ValueError, match="either from_beginning"):
        await bus.replay(from_beginning=True, since=datetime.now(timezone.utc))
    with pytest.raises(BusError, match="start_consuming"):
        await bus.replay(from_beginning=True)


async def test_metrics_count_and_time_what_the_bus_does(kafka_broker) -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    config = KafkaEventBusConfig(
        bootstrap_servers=kafka_broker.url,
        topic_prefix=f"m-{uuid4().hex[:8]}",
        enable_metrics=True,
        max_retries=0,
    )
    bus = KafkaEventBus(config, meter_provider=MeterProvider(metric_readers=[reader]))
    recorder = Recorder()

    async def handler(event: OrderPlaced) -> None:
        if event.customer_name == "poison":
            raise RuntimeError("poison")
        await recorder.handle(event)

    bus.subscribe(OrderPlaced, handler)
    async with bus:
        await bus.start_consuming()
        poison = OrderPlaced(aggregate_id=uuid4(), customer_name="poison", total_amount=1)
        await bus.publish([*orders(5), poison])
        await recorder.wait_for(5)
        await eventually(lambda: bus.get_stats()["messages_dead_lettered"] == 1)
    points = {
        metric.name: metric.data.data_points
        for resource in reader.get_metrics_data().resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }
    counts = {
        name.removeprefix("eventsource_lab.bus."): sum(p.value for p in found)
        for name, found in points.items()
        if not name.endswith(".duration")
    }
    assert counts == {
        "published": 6,
        "consumed": 6,
        "processed": 5,
        "failed": 1,
        "dead_lettered": 1,
    }
    (handler_time,) = points["eventsource_lab.bus.handler.duration"]
    assert handler_time.count == 6 and handler_time.sum > 0
    (publish_time,) = points["eventsource_lab.bus.publish.duration"]
    assert publish_time.count == 1
    assert handler_time.attributes["messaging.consumer.group.name"] == config.consumer_group


async def test_without_opentelemetry_metrics_are_off_and_the_bus_works(
    buses, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # the import fails
    bus = buses(enable_metrics=True)
    assert not bus._metrics.enabled
    recorder = Recorder()
    bus.subscribe(OrderPlaced, recorder)
    await bus.start_consuming()
    await bus.publish(orders(3))
    await recorder.wait_for(3)


async def test_an_unreachable_broker_is_a_clear_and_quick_error() -> None:
    bus = KafkaEventBus(KafkaEventBusConfig(bootstrap_servers="127.0.0.1:1"))
    loop = asyncio.get_running_loop()
    begin = loop.time()
    with pytest.raises(BusConnectionError, match=r"cannot reach Kafka at 127\.0\.0\.1:1"):
        await bus.connect()
    with pytest.raises(BusConnectionError):
        await bus.start_consuming()
    with pytest.raises(BusConnectionError):
        await bus.publish(orders(1))
    with pytest.raises(BusConnectionError):
        await bus.get_dlq_messages()
    assert loop.time() - begin < 5
    assert not bus.is_consuming and not bus.is_connected
