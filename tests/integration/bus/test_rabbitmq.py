"""RabbitMQEventBus against a real RabbitMQ: groups, a dying consumer, retries through the delay
queue, the DLQ, exchange types and bindings, a broker restart.

Every test says what happens to each message and checks that none is lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from uuid import uuid4

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel

from eventsource_lab import DomainEvent
from eventsource_lab.brokers import start
from eventsource_lab.bus.rabbitmq import RabbitMQEventBus, RabbitMQEventBusConfig
from eventsource_lab.errors import BusConnectionError
from eventsource_lab.redact import redact_url
from tests.support.events import OrderPlaced, OrderShipped
from tests.support.scenarios import bus_maker, eventually_async, orders, poison_bus
from tests.support.waiting import Recorder, eventually

pytestmark = pytest.mark.rabbitmq


def ids(events: list[DomainEvent]) -> list:
    return sorted(e.event_id for e in events)


@pytest.fixture
async def buses(request, rabbitmq_broker) -> AsyncIterator[Callable[..., RabbitMQEventBus]]:
    """Make buses sharing one fresh exchange; all are shut down after the test. Their queues
    are classic unless the test parametrizes ``buses`` (indirectly) with ``"quorum"``."""
    async with bus_maker(
        RabbitMQEventBus,
        RabbitMQEventBusConfig,
        rabbitmq_url=rabbitmq_broker.url,
        exchange_name=f"t-{uuid4().hex[:8]}",
        retry_delay=0.01,
        queue_type=getattr(request, "param", "classic"),
    ) as make:
        yield make


# Quorum queues (one node is enough for them) must keep what classic ones do: ordered groups,
# retries through the delay queue, the DLQ browsed in order and replayed.
both_queue_types = pytest.mark.parametrize("buses", ["classic", "quorum"], indirect=True)


@pytest.fixture
async def amqp(rabbitmq_broker) -> AsyncIterator[AbstractChannel]:
    """A raw aio-pika channel on the same broker, to publish bytes and look into queues."""
    connection = await aio_pika.connect(rabbitmq_broker.url)
    async with connection:
        yield await connection.channel()


async def depth(channel: AbstractChannel, queue: str) -> int:
    """Messages ready in ``queue`` (not counting those delivered and unacknowledged)."""
    declared = await channel.declare_queue(queue, passive=True)
    return declared.declaration_result.message_count or 0


@both_queue_types
async def test_each_group_receives_every_event(buses) -> None:
    recorders = {}
    for group in ("projections", "notifications"):
        bus = buses(consumer_group=group)
        recorders[group] = Recorder(group)
        bus.subscribe(OrderPlaced, recorders[group])
        await bus.start_consuming()
    events = orders(200)
    await buses().publish(events)
    for recorder in recorders.values():
        assert ids(await recorder.wait_for(200)) == ids(events)
        assert len(recorder.events) == 200


async def test_consumers_of_one_group_share_the_work_without_duplicates(buses) -> None:
    recorders = []
    for name in ("a", "b"):
        bus = buses(consumer_name=name, prefetch_count=5)
        recorder = Recorder(name)

        async def handle(event: DomainEvent, recorder: Recorder = recorder) -> None:
            await asyncio.sleep(0.001)  # some work, so the other consumer gets a turn
            await recorder.handle(event)

        bus.subscribe(OrderPlaced, handle)
        await bus.start_consuming()
        recorders.append(recorder)
    events = orders(200)
    await buses().publish(events)
    await eventually(lambda: sum(len(r.events) for r in recorders) >= 200, what="200 events")
    handled = [i for r in recorders for i in r.ids]
    assert len(handled) == 200 and set(handled) == {e.event_id for e in events}
    assert all(r.events for r in recorders), "both consumers should have had a share"


@pytest.mark.parametrize("death", ["task cancelled", "connection closed"])
async def test_a_consumer_that_dies_before_acking_leaves_nothing_behind(
    buses, amqp, death: str
) -> None:
    """Consumer A holds 20 unacknowledged messages and dies; B, same group, handles all 20."""
    first_seen, released = asyncio.Event(), asyncio.Event()

    async def stuck(event: DomainEvent) -> None:
        first_seen.set()
        await released.wait()  # A dies before this returns, holding its messages

    a = buses(consumer_name="a", prefetch_count=50)
    a.subscribe(OrderPlaced, stuck)
    await a.start_consuming()
    events = orders(20)
    await a.publish(events)
    await asyncio.wait_for(first_seen.wait(), timeout=10)
    queue = a.config.queue
    await eventually_async(lambda: depth(amqp, queue), lambda n: n == 0)  # all 20 are with A
    if death == "task cancelled":
        a._consumer.cancel()  # a crash: no stop, no ack
    else:
        await a._connection.close()  # the broker sees the connection go away

    b = buses(consumer_name="b")
    recorder = Recorder("b")
    b.subscribe(OrderPlaced, recorder)
    await b.start_consuming()
    assert ids(await recorder.wait_for(20)) == ids(events)
    assert b.get_stats()["messages_recovered"] == 20  # all redelivered, none lost
    await eventually(lambda: b.get_stats()["events_processed"] == 20)
    assert len(recorder.events) == 20
    assert await depth(amqp, queue) == 0
    released.set()  # lets a closed-connection A end its handler (its ack goes nowhere)


async def test_stop_consuming_finishes_the_message_in_hand_and_requeues_the_rest(
    buses, amqp
) -> None:
    started, release = asyncio.Event(), asyncio.Event()
    a_done: list[DomainEvent] = []

    async def slow(event: DomainEvent) -> None:
        started.set()
        await release.wait()
        a_done.append(event)

    a = buses(consumer_name="a", prefetch_count=50)
    a.subscribe(OrderPlaced, slow)
    await a.start_consuming()
    events = orders(10)
    await a.publish(events)
    await asyncio.wait_for(started.wait(), timeout=10)
    stopping = asyncio.create_task(a.stop_consuming())
    await asyncio.sleep(0.05)
    assert not stopping.done()  # it waits for the handler in progress
    release.set()
    await asyncio.wait_for(stopping, timeout=10)
    assert len(a_done) == 1 and not a.is_consuming
    await eventually_async(lambda: depth(amqp, a.config.queue), lambda n: n == 9)

    b = buses(consumer_name="b")
    recorder = Recorder("b")
    b.subscribe(OrderPlaced, recorder)
    await b.start_consuming()
    await recorder.wait_for(9)
    assert ids(a_done + recorder.events) == ids(events)


async def test_acks_sent_without_waiting_all_reach_the_broker_before_a_stop(buses, amqp) -> None:
    # The bus queues each ack and goes on; the channel's close follows them in the same frame
    # queue, so stopping the moment the last event is handled leaves nothing to redeliver.
    a = buses(consumer_name="a", prefetch_count=200)
    recorder = Recorder("a")
    a.subscribe(OrderPlaced, recorder)
    await a.start_consuming()
    events = orders(300)
    await a.publish(events)
    await recorder.wait_for(300)
    await asyncio.wait_for(a.stop_consuming(), timeout=10)
    assert await depth(amqp, a.config.queue) == 0
    assert a.get_stats()["messages_recovered"] == 0
    assert ids(recorder.events) == ids(events)


def poisoned() -> OrderPlaced:
    return OrderPlaced(aggregate_id=uuid4(), customer_name="poison", total_amount=1)


@both_queue_types
async def test_poison_is_retried_via_the_delay_queue_then_dead_lettered(buses, amqp) -> None:
    """The poison fails 3 times (first try + 2 retries, 0.5 s then 1 s apart) and lands in the
    DLQ; a good event published after it is handled while the poison still waits to be retried,
    and a second handler that succeeded on the poison is not called again."""
    calls: list[str] = []
    bus, recorder = poison_bus(buses, calls, {}, retry_delay=0.5)
    steady = Recorder("steady")
    bus.subscribe(OrderPlaced, steady)
    await bus.start_consuming()
    poison = poisoned()
    await bus.publish([poison])
    await eventually(lambda: calls.count("poison") == 1, what="the first failure")
    good = orders(1, "ok")
    await bus.publish(good)
    await recorder.wait_for(1)
    assert calls.count("poison") == 1, "the good event waited for the poison's retries"

    await eventually(lambda: bus.get_stats()["messages_dead_lettered"] == 1, timeout=15)
    assert calls.count("poison") == 3
    assert [e.customer_name for e in steady.events] == ["poison", "ok0"]
    (letter,) = await bus.get_dlq_messages()
    assert (letter.event_type, letter.error_type, letter.retries) == (
        "OrderPlaced",
        "RuntimeError",
        2,
    )
    assert letter.error == "cannot handle poison"
    assert letter.original_id == str(poison.event_id)
    assert OrderPlaced.model_validate_json(letter.body) == poison
    stats = bus.get_stats()
    assert (stats["events_processed"], stats["events_failed"]) == (1, 1)
    assert stats["events_consumed"] == 4  # the good one, the poison and its 2 retries
    for queue in (bus.config.queue, bus.config.retry_queue):
        assert await depth(amqp, queue) == 0
    assert await depth(amqp, bus.config.dlq_queue) == 1


@both_queue_types
async def test_listing_the_dlq_leaves_it_as_it_was(buses, amqp) -> None:
    calls: list[str] = []
    bus, _ = poison_bus(buses, calls, {}, max_retries=0)
    await bus.start_consuming()
    events = [poisoned() for _ in range(3)]
    await bus.publish(events)
    await eventually(lambda: bus.get_stats()["messages_dead_lettered"] == 3)
    first = await bus.get_dlq_messages()
    assert [letter.original_id for letter in first] == [str(e.event_id) for e in events]
    assert len(await bus.get_dlq_messages(limit=2)) == 2
    assert await bus.get_dlq_messages() == first  # same letters, same order
    assert await depth(amqp, bus.config.dlq_queue) == 3


@both_queue_types
async def test_replaying_a_dead_letter_after_a_fix_delivers_it_to_that_group_only(buses) -> None:
    calls: list[str] = []
    fixed: dict = {}
    bus, recorder = poison_bus(buses, calls, fixed, consumer_group="billing")
    other = buses(consumer_group="audit")
    audit = Recorder("audit")
    other.subscribe(OrderPlaced, audit)
    await bus.start_consuming()
    await other.start_consuming()
    poison, kept = poisoned(), poisoned()
    await bus.publish([poison, kept])
    await eventually(lambda: bus.get_stats()["messages_dead_lettered"] == 2)
    await audit.wait_for(2)
    letters = await bus.get_dlq_messages()
    letter = next(x for x in letters if x.original_id == str(poison.event_id))

    fixed["yes"] = True
    assert await bus.replay_dlq_message(letter.id) is True
    (replayed,) = await recorder.wait_for(1)
    assert replayed == poison
    assert [x.original_id for x in await bus.get_dlq_messages()] == [str(kept.event_id)]
    assert await bus.replay_dlq_message(letter.id) is False
    assert await other.get_dlq_messages() == []
    marker = orders(1, "marker")
    await bus.publish(marker)
    await audit.wait_for(3)  # the marker came after the replay: audit would have had it by now
    assert [e.event_id for e in audit.events] == [
        poison.event_id,
        kept.event_id,
        marker[0].event_id,
    ]


async def test_unknown_types_and_garbage_go_to_the_dlq_and_consuming_goes_on(buses, amqp) -> None:
    bus = buses()
    recorder = Recorder()
    bus.subscribe(OrderPlaced, recorder)
    await bus.start_consuming()
    exchange = await amqp.get_exchange(bus.config.exchange_name)
    raw = [
        aio_pika.Message(b'{"event_type": "Refunded"}', type="Refunded"),
        aio_pika.Message(b"\xff\x00\x13"),
        aio_pika.Message(b"\xffnot json", type="OrderPlaced"),
    ]
    for message in raw:
        await exchange.publish(message, "Order.whatever")
    good = orders(1)
    await bus.publish(good)
    await recorder.wait_for(1)
    await eventually(lambda: bus.get_stats()["messages_dead_lettered"] == 3)
    letters = await bus.get_dlq_messages()
    assert [letter.error_type for letter in letters] == [
        "UnknownEventTypeError",
        "MalformedMessageError",
        "MalformedMessageError",
    ]
    assert "'Refunded'" in letters[0].error
    assert [letter.body for letter in letters] == [m.body for m in raw]
    assert bus.is_consuming
    assert await depth(amqp, bus.config.queue) == 0


@both_queue_types
async def test_without_a_dlq_a_failing_message_keeps_coming_back(buses, amqp) -> None:
    calls: list[str] = []
    bus, recorder = poison_bus(buses, calls, {}, enable_dlq=False, max_retries=1)
    await bus.start_consuming()
    await bus.publish([poisoned(), *orders(2, "ok")])
    await recorder.wait_for(2)
    await eventually(lambda: calls.count("poison") >= 4, what="retries past max_retries")
    assert bus.get_stats()["messages_dead_lettered"] == 0
    assert await depth(amqp, bus.config.dlq_queue) == 0
    assert bus.is_consuming


@pytest.mark.parametrize("exchange_type", ["topic", "fanout", "direct"])
async def test_every_exchange_type_delivers_everything_to_every_group(
    buses, exchange_type: str
) -> None:
    recorders = []
    for group in ("one", "two"):
        bus = buses(consumer_group=group, exchange_type=exchange_type)
        recorder = Recorder(group)
        bus.subscribe_to_all_events(recorder)
        await bus.start_consuming()
        recorders.append(recorder)
    events = [*orders(3), OrderShipped(aggregate_id=uuid4(), tracking_number="T")]
    await buses(exchange_type=exchange_type).publish(events)
    for recorder in recorders:
        assert ids(await recorder.wait_for(4)) == ids(events)


@pytest.mark.parametrize("exchange_type", ["topic", "direct"])
@pytest.mark.parametrize("when", ["before consuming", "while consuming"])
async def test_bind_event_type_narrows_a_group_to_its_types(
    buses, amqp, exchange_type: str, when: str
) -> None:
    everything = buses(consumer_group="all", exchange_type=exchange_type)
    all_recorder = Recorder("all")
    everything.subscribe_to_all_events(all_recorder)
    await everything.start_consuming()
    narrow = buses(consumer_group="placed", exchange_type=exchange_type)
    placed_recorder = Recorder("placed")
    narrow.subscribe_to_all_events(placed_recorder)
    if when == "before consuming":
        await narrow.bind_event_type(OrderPlaced)
        await narrow.start_consuming()
    else:
        await narrow.start_consuming()
        await narrow.bind_event_type(OrderPlaced)

    ship = OrderShipped(aggregate_id=uuid4(), tracking_number="T")
    placed = orders(2)
    await everything.publish([ship, placed[0], ship.model_copy(update={"event_id": uuid4()})])
    await everything.publish(placed[1:])
    await all_recorder.wait_for(4)
    assert ids(await placed_recorder.wait_for(2)) == ids(placed)
    await narrow.stop_consuming()
    assert len(placed_recorder.events) == 2
    assert await depth(amqp, narrow.config.queue) == 0  # the shipments never reached it


async def test_a_fanout_exchange_cannot_bind_single_types(buses) -> None:
    with pytest.raises(ValueError, match="fanout"):
        await buses(exchange_type="fanout").bind_event_type(OrderPlaced)


async def test_an_unreachable_rabbitmq_is_a_clear_error_without_the_password() -> None:
    bus = RabbitMQEventBus(RabbitMQEventBusConfig(rabbitmq_url="amqp://u:s3cret@127.0.0.1:1/"))
    with pytest.raises(
        BusConnectionError, match=r"cannot reach RabbitMQ at amqp://\*\*\*@127"
    ) as e:
        await bus.connect()
    assert "s3cret" not in str(e.value)
    with pytest.raises(BusConnectionError):
        await bus.start_consuming()
    with pytest.raises(BusConnectionError):
        await bus.publish(orders(1))
    assert not bus.is_consuming and not bus.is_connected


async def test_a_nacked_publish_is_a_connection_error_and_the_next_one_goes_through(
    buses, amqp
) -> None:
    """A queue that refuses messages makes RabbitMQ nack the publish: the bus raises
    BusConnectionError (publish again, as during a failover) and publishes on a new channel."""
    bus = buses()
    recorder = Recorder()
    bus.subscribe(OrderPlaced, recorder)
    await bus.start_consuming()
    exchange = await amqp.get_exchange(bus.config.exchange_name)
    full = await amqp.declare_queue(
        "", exclusive=True, arguments={"x-max-length": 0, "x-overflow": "reject-publish"}
    )
    await full.bind(exchange, "#")
    with pytest.raises(BusConnectionError, match="did not confirm 1 of 1 events"):
        await bus.publish(orders(1))
    await full.delete(if_unused=False, if_empty=False)
    events = orders(2, "after")
    await bus.publish(events)
    received = await recorder.wait_for(3)  # the refused one reached the group's queue too
    assert set(ids(events)) <= set(ids(received))
    assert len(received) == 3


async def test_a_url_list_connects_to_the_first_url_that_answers(rabbitmq_broker) -> None:
    dead = "amqp://u:s3cret@127.0.0.1:1/"
    bus = RabbitMQEventBus(
        RabbitMQEventBusConfig(
            rabbitmq_url=[dead, rabbitmq_broker.url],
            exchange_name=f"t-{uuid4().hex[:8]}",
            queue_type="quorum",
        )
    )
    try:
        recorder = Recorder()
        bus.subscribe(OrderPlaced, recorder)
        await bus.start_consuming()
        assert bus.connected_url == redact_url(rabbitmq_broker.url)
        events = orders(3)
        await bus.publish(events)
        assert ids(await recorder.wait_for(3)) == ids(events)
    finally:
        await bus.shutdown(5)
    assert bus.connected_url is None


async def test_a_url_list_where_none_answers_names_every_url_without_the_passwords() -> None:
    urls = ["amqp://u:s3cret-a@127.0.0.1:1/", "amqp://u:s3cret-b@127.0.0.1:2/vh"]
    bus = RabbitMQEventBus(RabbitMQEventBusConfig(rabbitmq_url=urls))
    with pytest.raises(BusConnectionError) as e:
        await bus.connect()
    message = str(e.value)
    assert message.startswith("cannot reach RabbitMQ at amqp://***@127.0.0.1:1/: ")
    assert "; amqp://***@127.0.0.1:2/vh: " in message
    assert "s3cret" not in message and "s3cret" not in repr(e.value.__cause__)
    assert not bus.is_connected


async def test_a_rabbitmq_restart_is_survived_and_nothing_is_lost() -> None:
    """Group "live" consumes across the restart, and what it publishes while the broker is down
    is sent once it is back; group "later" was not consuming, so its durable queue kept the
    events from before the restart and gets them all afterwards."""
    with start("rabbitmq", mode="local") as broker:
        settings = {"rabbitmq_url": broker.url, "exchange_name": "restart"}
        async with AsyncExitStack() as stack:
            live = RabbitMQEventBus(  # publish may wait out the whole restart
                RabbitMQEventBusConfig(consumer_group="live", publish_timeout=60, **settings)
            )
            later = RabbitMQEventBus(RabbitMQEventBusConfig(consumer_group="later", **settings))
            for bus in (live, later):
                stack.push_async_callback(bus.shutdown, 5)
            recorder, later_recorder = Recorder("live"), Recorder("later")
            live.subscribe(OrderPlaced, recorder)
            later.subscribe(OrderPlaced, later_recorder)
            await later.start_consuming()  # declares its queue
            await later.stop_consuming()
            await live.start_consuming()
            before = orders(3, "before")
            await live.publish(before)
            await recorder.wait_for(3)

            restarting = asyncio.create_task(asyncio.to_thread(broker.restart))
            await eventually(lambda: not live._connection.connected.is_set(), what="the drop")
            during = orders(2, "during")
            await live.publish(during)  # waits (up to publish_timeout) for the connection
            await restarting
            after = orders(5, "after")
            await live.publish(after)
            expected = {e.event_id for e in before + during + after}
            await eventually(lambda: expected <= set(recorder.ids), timeout=30, what="all 10")
            # At least once: an ack still on its way when the broker stopped makes its message
            # come again, flagged as redelivered; nothing else may be extra.
            assert len(recorder.events) == 10 + live.get_stats()["messages_recovered"]
            await eventually(lambda: live.get_stats()["reconnections"] >= 1, what="reconnection")
            assert live.is_consuming
            await later.start_consuming()
            assert ids(await later_recorder.wait_for(10)) == ids(before + during + after)


async def test_start_consuming_while_the_connection_is_down_waits_then_says_why() -> None:
    """A bus connected before its broker went away holds a connection that is reconnecting:
    starting to consume waits for it (up to publish_timeout) and then fails with a connection
    error, not aio-pika's "Connection was not opened"."""
    with start("rabbitmq", mode="local") as broker:
        bus = RabbitMQEventBus(
            RabbitMQEventBusConfig(
                rabbitmq_url=broker.url, exchange_name="gone", publish_timeout=1.0
            )
        )
        try:
            await bus.connect()
            await broker.astop()
            await eventually(lambda: not bus._connection.connected.is_set(), what="the drop")
            with pytest.raises(BusConnectionError, match="did not come back within 1s"):
                await bus.start_consuming()
        finally:
            await bus.shutdown(2)


# Acks go out with basic_ack(wait=False): a failed-then-retried message, a stop with acks still
# queued and a broker restart just after handling must neither lose a message nor ack one twice
# (a second ack of a delivery tag is a PRECONDITION_FAILED that closes the consumer's channel).


async def test_a_retried_message_is_acked_once_and_a_stop_right_after_leaves_nothing(
    buses, amqp
) -> None:
    failed_once: set = set()
    handled: list = []

    async def flaky(event: OrderPlaced) -> None:
        if event.event_id not in failed_once:
            failed_once.add(event.event_id)
            raise RuntimeError("first try fails")
        handled.append(event.event_id)

    a = buses(consumer_name="a", prefetch_count=100, max_retries=3)
    a.subscribe(OrderPlaced, flaky)
    await a.start_consuming()
    events = orders(50)
    await a.publish(events)
    await eventually(lambda: len(handled) >= 50, timeout=20, what="every retry handled")
    await asyncio.wait_for(a.stop_consuming(), timeout=10)
    assert sorted(handled) == ids(events)  # each once: no ack went missing or came twice
    stats = a.get_stats()
    assert stats["messages_recovered"] == 0 and stats["messages_dead_lettered"] == 0
    assert stats["events_consumed"] == 100 and stats["events_processed"] == 50
    for queue in (a.config.queue, a.config.retry_queue, a.config.dlq_queue):
        assert await depth(amqp, queue) == 0, queue

    # The channel survived every ack: a second round on a fresh start is handled exactly once.
    await a.start_consuming()
    more = orders(20, "more")
    await a.publish(more)
    await eventually(lambda: len(handled) >= 70, timeout=20, what="the second round")
    await asyncio.wait_for(a.stop_consuming(), timeout=10)
    assert sorted(handled) == ids(events + more)
    assert a.get_stats()["messages_recovered"] == 0
    assert await depth(amqp, a.config.queue) == 0


async def test_stopping_from_inside_handlers_with_acks_queued_loses_nothing(buses, amqp) -> None:
    # stop_consuming is requested while the consumer is mid-stream with acks queued behind it:
    # what was handled is acked (not redelivered), the rest is requeued for the next consumer.
    a_seen: list = []
    a = buses(consumer_name="a", prefetch_count=200)
    stop: asyncio.Task | None = None

    async def handler(event: OrderPlaced) -> None:
        nonlocal stop
        a_seen.append(event.event_id)
        if len(a_seen) == 150 and stop is None:
            stop = asyncio.create_task(a.stop_consuming())

    a.subscribe(OrderPlaced, handler)
    await a.start_consuming()
    events = orders(300)
    await a.publish(events)
    await eventually(lambda: stop is not None, timeout=20, what="the stop request")
    assert stop is not None
    await asyncio.wait_for(stop, timeout=10)
    assert len(set(a_seen)) == len(a_seen)

    b = buses(consumer_name="b")
    recorder = Recorder("b")
    b.subscribe(OrderPlaced, recorder)
    await b.start_consuming()
    rest = len(events) - len(a_seen)
    assert len(await recorder.wait_for(rest)) == rest
    # Not one of A's handled messages came back: B gets exactly the ones A never handled.
    await eventually(lambda: b.get_stats()["events_processed"] == rest)
    assert not set(a_seen) & set(recorder.ids)
    assert sorted(a_seen + recorder.ids) == ids(events)
    assert await depth(amqp, b.config.queue) == 0


async def test_a_restart_right_after_handling_redelivers_unsent_acks_and_acks_each_once() -> None:
    with start("rabbitmq", mode="local") as broker:
        settings = {"rabbitmq_url": broker.url, "exchange_name": "ack-restart"}
        async with AsyncExitStack() as stack:
            bus = RabbitMQEventBus(
                RabbitMQEventBusConfig(consumer_group="g", publish_timeout=60, **settings)
            )
            stack.push_async_callback(bus.shutdown, 5)
            restarting: list[asyncio.Task] = []
            recorder = Recorder("g")
            published = asyncio.Event()  # the restart must not meet the publish's confirms

            async def handler(event: OrderPlaced) -> None:
                await published.wait()
                await recorder.handle(event)
                if len(recorder.events) == 40 and not restarting:  # acks still queued
                    restarting.append(asyncio.create_task(asyncio.to_thread(broker.restart)))

            bus.subscribe(OrderPlaced, handler)
            await bus.start_consuming()
            events = orders(80)
            await bus.publish(events)
            published.set()
            await eventually(lambda: bool(restarting), timeout=20, what="the restart")
            await asyncio.wait_for(restarting[0], timeout=120)
            after = orders(10, "after")
            await bus.publish(after)
            expected = {e.event_id for e in events + after}
            await eventually(lambda: expected <= set(recorder.ids), timeout=60, what="all 90")
            # At least once, and the only extras are redeliveries the broker flagged.
            assert len(recorder.events) == 90 + bus.get_stats()["messages_recovered"]
            assert bus.is_consuming
            await asyncio.wait_for(bus.stop_consuming(), timeout=10)
            async with await aio_pika.connect(broker.url) as connection:
                channel = await connection.channel()
                assert await depth(channel, bus.config.queue) == 0


async def test_a_channel_closed_by_the_broker_mid_handler_loses_no_message_and_acks_none_twice(
    buses, amqp
) -> None:
    # A channel error (a passive declare of a missing queue) closes the consumer's channel while
    # a handler holds a message: its ack cannot go out, the stale prefetched ones are skipped,
    # and the robust channel comes back to get them all redelivered, each handled to the end.
    a = buses(consumer_name="a", prefetch_count=50)
    recorder = Recorder("a")
    broken: list = []  # the event in hand when the channel broke

    async def handler(event: OrderPlaced) -> None:
        if len(recorder.events) == 10 and not broken:
            broken.append(event.event_id)
            transport = a._connection.transport
            assert transport is not None
            (channel,) = [
                ch
                for ch in transport.connection.channels.values()
                if ch is not None and "a" in ch.consumers
            ]
            with pytest.raises(aio_pika.exceptions.ChannelNotFoundEntity):
                await channel.queue_declare(f"missing-{uuid4().hex}", passive=True)
        await recorder.handle(event)

    a.subscribe(OrderPlaced, handler)
    await a.start_consuming()
    events = orders(60)
    await a.publish(events)
    expected = {e.event_id for e in events}
    await eventually(lambda: expected <= set(recorder.ids), timeout=30, what="all 60")
    await eventually(lambda: a.get_stats()["events_consumed"] == len(recorder.events))
    assert broken and a.is_consuming
    # Only the event in hand comes twice: the 10 acks queued before the channel error reached
    # the broker (they precede it in the frame queue), the prefetched rest came back unhandled.
    twice = [i for i in set(recorder.ids) if recorder.ids.count(i) > 1]
    assert twice == broken and len(recorder.events) == 61
    assert a.get_stats()["messages_recovered"] >= 1
    await asyncio.wait_for(a.stop_consuming(), timeout=10)
    assert await depth(amqp, a.config.queue) == 0
