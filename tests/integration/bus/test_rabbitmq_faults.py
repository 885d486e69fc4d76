"""RabbitMQEventBus under faults: retries that cross processes, a broker that hangs or is down,
hostile messages, and a consumer channel the broker closes.

Each test says what happens to every message: handled (once, or at least once where the broker
redelivers), dead-lettered, or refused to the publisher with an error.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from unittest import mock
from uuid import uuid4

import aio_pika
import pamqp.encode
import pytest
from aio_pika.abc import AbstractChannel
from aiormq.abc import AbstractChannel as UnderlayChannel
from aiormq.exceptions import ChannelNotFoundEntity, ChannelPreconditionFailed

from eventsource_lab import DomainEvent
from eventsource_lab.brokers import Broker, start
from eventsource_lab.bus import wire
from eventsource_lab.bus.rabbitmq import RabbitMQEventBus
from eventsource_lab.errors import BusConnectionError
from tests.support.events import OrderPlaced
from tests.support.scenarios import bus_factory, eventually_async, orders
from tests.support.waiting import Recorder, eventually

pytestmark = pytest.mark.rabbitmq


@pytest.fixture
async def buses(rabbitmq_broker: Broker) -> AsyncIterator[Callable[..., RabbitMQEventBus]]:
    """Make buses sharing one fresh exchange; all are shut down after the test."""
    async with bus_factory(rabbitmq_broker) as make:
        yield make


@pytest.fixture
async def amqp(rabbitmq_broker: Broker) -> AsyncIterator[AbstractChannel]:
    """A raw aio-pika channel on the same broker, to publish bytes and look into queues."""
    connection = await aio_pika.connect(rabbitmq_broker.url)
    async with connection:
        yield await connection.channel()


@pytest.fixture(scope="module")
def own_broker() -> Iterator[Broker]:
    """A RabbitMQ of this module's own, to freeze and stop without disturbing other tests."""
    with start("rabbitmq", mode="local") as broker:
        yield broker


async def depth(channel: AbstractChannel, queue: str) -> int:
    """Messages ready in ``queue`` (not counting those delivered and unacknowledged)."""
    declared = await channel.declare_queue(queue, passive=True)
    return declared.declaration_result.message_count or 0


# -- retries run again only the subscribers that failed ------------------------------------------


class Counting:
    """A handler class: each instance counts its own calls; one can be told to fail once."""

    def __init__(self, fail_once: bool = False) -> None:
        self.calls = 0
        self.fail_once = fail_once

    async def handle(self, event: DomainEvent) -> None:
        self.calls += 1
        if self.fail_once and self.calls == 1:
            raise RuntimeError("first call fails")


def same_named_handlers(fails: int | None) -> tuple[list[Any], list[Counting]]:
    """Two instances of one class, then two lambdas (each counted by a ``Counting`` of its
    own); the one at index ``fails`` fails on its first call. Returns handlers and counters."""
    counters = [Counting(fail_once=i == fails) for i in range(4)]
    first, second = counters[2], counters[3]
    handlers = [counters[0], counters[1], lambda e: first.handle(e), lambda e: second.handle(e)]
    return handlers, counters


@pytest.mark.parametrize("fails", [1, 2], ids=["an instance", "a lambda"])
async def test_a_retry_runs_again_only_the_subscriber_that_failed(buses, fails: int) -> None:
    bus = buses()
    handlers, counters = same_named_handlers(fails)
    for handler in handlers:
        bus.subscribe(OrderPlaced, handler)
    await bus.start_consuming()
    await bus.publish(orders(1))
    await eventually(lambda: bus.get_stats()["events_processed"] == 1, what="the retry")
    assert [c.calls for c in counters] == [2 if i == fails else 1 for i in range(4)]
    assert bus.get_stats()["events_consumed"] == 2  # the first delivery and one retry


async def test_a_retry_taken_by_another_consumer_runs_its_matching_subscriber(buses) -> None:
    """Consumer A fails on its second instance and stops; the retry comes back to B, which
    subscribed the same handlers in the same order: only B's second instance runs."""
    a, b = buses(consumer_name="a", retry_delay=1.0), buses(consumer_name="b")
    a_handlers, a_counters = same_named_handlers(fails=1)
    b_handlers, b_counters = same_named_handlers(fails=None)
    for handler in a_handlers:
        a.subscribe(OrderPlaced, handler)
    for handler in b_handlers:
        b.subscribe(OrderPlaced, handler)
    await a.start_consuming()
    await a.publish(orders(1))
    await eventually(lambda: a_counters[1].calls == 1, what="the first failure")
    await a.stop_consuming()
    await b.start_consuming()
    await eventually(lambda: b.get_stats()["events_processed"] == 1, what="the retry on B")
    assert [c.calls for c in a_counters] == [1, 1, 1, 1]
    assert [c.calls for c in b_counters] == [0, 1, 0, 0]


# -- publishing while the broker is down or hung -------------------------------------------------


def freeze(broker: Broker, sig: signal.Signals) -> None:
    """SIGSTOP (hung: connections stay open, nothing answers) or SIGCONT every broker process."""
    for pid in broker.pids:
        os.kill(pid, sig)


async def timed_publish(bus: RabbitMQEventBus, events: list[OrderPlaced]) -> float:
    """Seconds ``publish`` took to raise ``BusConnectionError``."""
    began = time.monotonic()
    with pytest.raises(BusConnectionError, match="publish_timeout=1s"):
        await bus.publish(events)
    return time.monotonic() - began


async def test_publish_gives_up_while_the_broker_hangs_and_works_once_it_answers(
    own_broker: Broker,
) -> None:
    async with bus_factory(own_broker) as make:
        connected, fresh = make(publish_timeout=1), make(publish_timeout=1)
        recorder = Recorder()
        connected.subscribe(OrderPlaced, recorder)
        await connected.start_consuming()
        freeze(own_broker, signal.SIGSTOP)
        try:
            assert await timed_publish(connected, orders(1, "hung")) < 3  # no confirm comes
            assert await timed_publish(fresh, orders(1, "hung")) < 3  # no handshake either
        finally:
            freeze(own_broker, signal.SIGCONT)
        after = orders(2, "after")
        await connected.publish(after[:1])
        await fresh.publish(after[1:])
        await eventually(lambda: {e.event_id for e in after} <= set(recorder.ids), what="both")
        assert connected.is_consuming and connected.consumer_error is None


async def test_publish_gives_up_while_the_broker_is_down_and_works_once_it_is_back(
    own_broker: Broker,
) -> None:
    async with bus_factory(own_broker) as make:
        bus = make(publish_timeout=1)
        recorder = Recorder()
        bus.subscribe(OrderPlaced, recorder)
        await bus.start_consuming()
        restarting = asyncio.ensure_future(asyncio.to_thread(own_broker.restart))
        await eventually(lambda: not bus._connection.connected.is_set(), what="the drop")
        assert await timed_publish(bus, orders(1, "down")) < 3
        await asyncio.wait_for(restarting, timeout=60)
        after = orders(1, "after")
        await bus.publish(after)  # the robust connection is back, or publish waits for it
        await eventually(lambda: after[0].event_id in recorder.ids, timeout=30, what="after")
        assert bus.is_consuming and bus.consumer_error is None


# -- hostile messages -----------------------------------------------------------------------------


def deeply_nested(depth: int = 100_000) -> bytes:
    return b'{"event_type": "OrderPlaced", "x": ' + b"[" * depth + b"]" * depth + b"}"


async def test_hostile_bodies_and_headers_are_dead_lettered_or_handled_never_redelivered(
    buses, amqp
) -> None:
    """Bad bodies go to the DLQ; good bodies with headers of the wrong types are handled once
    by every handler; all are acknowledged and the consumer goes on."""
    bus = buses(max_retries=1)
    recorder, second = Recorder("first"), Recorder("second")
    bus.subscribe(OrderPlaced, recorder)
    bus.subscribe(OrderPlaced, second)
    await bus.start_consuming()
    exchange = await amqp.get_exchange(bus.config.exchange_name)
    good = orders(7, "odd-headers")
    body = wire.encode(good[0])
    shipped = body.replace(b'"OrderPlaced"', b'"OrderShipped"')
    bad = [
        aio_pika.Message(deeply_nested(), type="OrderPlaced"),
        aio_pika.Message(deeply_nested()),
        aio_pika.Message(body, type="OrderShipped"),  # the property disagrees with the body
        aio_pika.Message(shipped, type="OrderPlaced"),
        aio_pika.Message(b"\xff\xfe\x00 not utf-8", type="OrderPlaced"),
        aio_pika.Message(b"\xff\xfe\x00 not utf-8"),
        aio_pika.Message(b"", type="\u00e9\u00e9"),
    ]
    odd_headers: list[dict[str, Any]] = [
        {"x-retry-count": "3", "x-failed-handlers": "Recorder"},
        {"x-retry-count": -5, "x-failed-handlers": {"a": 1}},
        {"x-retry-count": 2.5, "x-failed-handlers": [1, bytearray(b"x"), {"y": [None]}]},
        {"x-retry-count": None, "x-failed-handlers": None},
        {"x-retry-count": [1], "x-failed-handlers": 7, "x-death": "nonsense"},
        {"x-retry-count": True, "x-failed-handlers": ["nobody#0"]},
        {f"h{i}": "v" * 100 for i in range(500)},
    ]
    for message in bad:
        await exchange.publish(message, "Order.OrderPlaced")
    for event, headers in zip(good, odd_headers, strict=True):
        message = aio_pika.Message(wire.encode(event), type="OrderPlaced", headers=headers)
        await exchange.publish(message, "Order.OrderPlaced")
    marker = orders(1, "marker")
    await bus.publish(marker)
    expected = {e.event_id for e in good + marker}
    for handler in (recorder, second):
        await handler.wait_for(len(expected))
        assert set(handler.ids) == expected and len(handler.events) == len(expected)
    await eventually(lambda: bus.get_stats()["messages_dead_lettered"] == len(bad))
    letters = await bus.get_dlq_messages()
    assert [letter.body for letter in letters] == [m.body for m in bad]
    assert {letter.error_type for letter in letters} <= {
        "MalformedMessageError",
        "UnknownEventTypeError",
    }
    assert bus.is_consuming and bus.consumer_error is None
    for queue in (bus.config.queue, bus.config.retry_queue):
        assert await depth(amqp, queue) == 0
    assert bus.get_stats()["messages_recovered"] == 0  # nothing came twice


async def queue_exists(connection: aio_pika.abc.AbstractConnection, name: str) -> bool:
    """Whether queue ``name`` exists (a passive declare on a channel of its own)."""
    async with await connection.channel() as channel:
        try:
            await channel.declare_queue(name, passive=True)
        except ChannelNotFoundEntity:
            return False
    return True


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text for you")


async def test_a_handler_error_that_cannot_be_printed_is_dead_lettered_and_consuming_goes_on(
    buses,
) -> None:
    bus = buses(max_retries=0)
    recorder = Recorder()

    async def handler(event: OrderPlaced) -> None:
        if event.customer_name == "bad0":
            raise Unprintable
        await recorder.handle(event)

    bus.subscribe(OrderPlaced, handler)
    await bus.start_consuming()
    await bus.publish(orders(1, "bad"))
    await eventually(lambda: bus.get_stats()["messages_dead_lettered"] == 1)
    good = orders(1, "good")
    await bus.publish(good)
    assert [e.event_id for e in await recorder.wait_for(1)] == [good[0].event_id]
    (letter,) = await bus.get_dlq_messages()
    assert (letter.error_type, letter.error) == ("Unprintable", "<Unprintable: unprintable>")
    assert bus.is_consuming and bus.consumer_error is None


# -- the broker closes the consumer's channel ----------------------------------------------------


def consumer_channels(bus: RabbitMQEventBus) -> list[UnderlayChannel]:
    """The open AMQP channels of ``bus`` that consume (what the broker would close)."""
    assert bus._connection is not None and bus._connection.transport is not None
    channels = bus._connection.transport.connection.channels.values()
    return [c for c in channels if c.consumers and not c.is_closed]


async def test_a_consumer_channel_closed_by_the_broker_is_reopened_and_nothing_is_lost(
    buses,
) -> None:
    """With a message in hand, the consumer's channel is closed by the broker (a declare that
    conflicts with the queue: PRECONDITION_FAILED). The loop goes on on a new channel; the
    message in hand comes again and is handled, and so is everything published later."""
    bus = buses()
    recorder = Recorder()
    in_hand, release = asyncio.Event(), asyncio.Event()

    async def handler(event: OrderPlaced) -> None:
        if event.customer_name == "first0" and not release.is_set():
            in_hand.set()
            await release.wait()
        await recorder.handle(event)

    bus.subscribe(OrderPlaced, handler)
    await bus.start_consuming()
    first = orders(1, "first")
    await bus.publish(first)
    await asyncio.wait_for(in_hand.wait(), timeout=10)
    (channel,) = consumer_channels(bus)
    with pytest.raises(ChannelPreconditionFailed):
        await channel.queue_declare(bus.config.queue, durable=False)  # it is durable
    assert channel.is_closed
    release.set()

    later = orders(3, "later")
    await bus.publish(later)
    expected = {e.event_id for e in first + later}
    await eventually(lambda: expected <= set(recorder.ids), what="the first and the later ones")
    assert recorder.ids.count(first[0].event_id) >= 1  # at least once, same event_id
    assert bus.is_consuming and bus.consumer_error is None
    await eventually_async(lambda: asyncio.sleep(0, consumer_channels(bus)), lambda c: len(c) == 1)


async def test_a_queue_deleted_under_the_consumer_is_declared_again_and_consuming_goes_on(
    buses, rabbitmq_broker: Broker
) -> None:
    """The broker cancels the consumer of a deleted queue; the loop starts again, declares
    the queue and its bindings anew, and handles what is published afterwards."""
    bus = buses()
    recorder = Recorder()
    bus.subscribe(OrderPlaced, recorder)
    await bus.start_consuming()
    await bus.publish(orders(1, "before"))
    await recorder.wait_for(1)
    async with await aio_pika.connect(rabbitmq_broker.url) as connection:
        await (await connection.channel()).queue_delete(bus.config.queue)
        await eventually(lambda: queue_exists(connection, bus.config.queue), timeout=15)
    later = orders(3, "later")
    await bus.publish(later)
    await recorder.wait_for(4, timeout=15)
    assert {e.event_id for e in later} <= set(recorder.ids)
    assert bus.is_consuming and bus.consumer_error is None


# -- properties no AMQP client can read -----------------------------------------------------------

NOT_UTF8 = b"Order\xff\xfePlaced"
PAST_9999 = 2**63 - 1  # pamqp reads it as milliseconds: still some 292 million years too late


async def publish_unreadable(
    exchange: aio_pika.abc.AbstractExchange, body: bytes, **raw: bytes | int
) -> None:
    """Publish ``body`` with raw property values pamqp would refuse to encode: short strings
    (``type=b"..."``) byte for byte, a ``timestamp`` as the integer sent."""

    def shortstr(value: str) -> bytes:
        data = value.encode("utf-8", "surrogateescape")
        return len(data).to_bytes(1, "big") + data

    message = aio_pika.Message(body, message_id=uuid4().hex)
    for name, value in raw.items():
        text = value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value
        setattr(message, name, text)  # after aio-pika converted what it was given
    encoders = {"shortstr": shortstr, "timestamp": lambda value: value.to_bytes(8, "big")}
    with mock.patch.dict(pamqp.encode.METHODS, encoders):
        await exchange.publish(message, "Raw.unreadable")


async def test_a_non_utf8_type_or_a_year_past_9999_is_dead_lettered_and_the_connection_stays(
    buses, amqp
) -> None:
    """Before, the client failed to read such a message, dropped its connection and reconnected
    to be sent the same message again, forever; now each is filed as malformed, once, and
    the events around them are handled."""
    bus = buses(max_retries=1)
    recorder = Recorder()
    bus.subscribe(OrderPlaced, recorder)
    await bus.start_consuming()
    exchange = await amqp.get_exchange(bus.config.exchange_name)
    valid, bad = orders(3, "valid"), orders(2, "unreadable")
    bodies = [wire.encode(e) for e in bad]
    await bus.publish(valid[:1])
    await publish_unreadable(exchange, bodies[0], type=NOT_UTF8, message_id=b"id-\xc3")
    await bus.publish(valid[1:2])
    await publish_unreadable(exchange, bodies[1], type=b"OrderPlaced", timestamp=PAST_9999)
    await bus.publish(valid[2:])

    await recorder.wait_for(3, timeout=20)
    await eventually(lambda: bus.get_stats()["messages_dead_lettered"] == 2, timeout=10)
    assert recorder.ids == [e.event_id for e in valid]
    stats = bus.get_stats()
    assert (stats["reconnections"], stats["messages_recovered"], stats["events_failed"]) == (
        0,
        0,
        2,
    )
    assert bus.is_consuming and bus.consumer_error is None

    letters = await bus.get_dlq_messages()
    assert [(letter.body, letter.error_type) for letter in letters] == [
        (bodies[0], "MalformedMessageError"),
        (bodies[1], "MalformedMessageError"),
    ]
    assert "Order\\xff\\xfePlaced" in letters[0].error and letters[0].event_type is None
    assert letters[0].original_id == "id-\\xc3"
    assert str(PAST_9999) in letters[1].error and letters[1].event_type == "OrderPlaced"

    assert await bus.replay_dlq_message(letters[0].id)  # still malformed: filed again
    await eventually(lambda: bus.get_stats()["messages_dead_lettered"] == 3, timeout=10)
    assert [letter.body for letter in await bus.get_dlq_messages()] == [bodies[1], bodies[0]]
    later = orders(1, "later")
    await bus.publish(later)
    await recorder.wait_for(4, timeout=10)
    assert bus.get_stats()["reconnections"] == 0 and bus.consumer_error is None


async def test_without_a_dlq_an_unreadable_message_stays_malformed_on_every_retry(
    buses, amqp
) -> None:
    """The retry copy cannot carry the unreadable property, so it carries why in a header."""
    bus = buses(max_retries=0, enable_dlq=False)
    recorder = Recorder()
    bus.subscribe(OrderPlaced, recorder)
    await bus.start_consuming()
    exchange = await amqp.get_exchange(bus.config.exchange_name)
    await publish_unreadable(exchange, wire.encode(orders(1)[0]), type=NOT_UTF8)
    await eventually(lambda: bus.get_stats()["events_failed"] >= 3, timeout=15)
    valid = orders(1, "valid")
    await bus.publish(valid)
    await recorder.wait_for(1, timeout=10)
    assert recorder.ids == [valid[0].event_id]
    assert bus.get_stats()["reconnections"] == 0 and bus.consumer_error is None
