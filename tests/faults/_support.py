"""What several fault scenarios share: exact checks of a bus's end state, brokers of a test's own
(paused, stopped, restarted at will), and raw injection of bytes the kit's injector cannot send."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Iterator, Sequence
from unittest import mock
from uuid import UUID, uuid4

import aio_pika
import pamqp.encode
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from redis.asyncio import Redis

from eventsource_lab.brokers import ENV_VARS, Broker
from eventsource_lab.bus import (
    BrokerEventBus,
    KafkaEventBus,
    RabbitMQEventBus,
    RabbitMQEventBusConfig,
    RedisEventBus,
)
from tests.conftest import broker_or_skip
from tests.support.waiting import eventually

KINDS = [
    pytest.param("redis", marks=pytest.mark.redis),
    pytest.param("rabbitmq", marks=pytest.mark.rabbitmq),
    pytest.param("kafka", marks=pytest.mark.kafka),
]

COUNTED = (
    "events_consumed",
    "events_processed",
    "events_failed",
    "messages_dead_lettered",
    "handler_errors",
)


def counted(bus: BrokerEventBus) -> dict[str, int]:
    """The stats every scenario asserts exactly, by name."""
    stats = bus.get_stats()
    return {name: stats[name] for name in COUNTED}


async def assert_counted(bus: BrokerEventBus, want: dict[str, int], timeout: float = 10.0) -> None:
    """The counters come to exactly ``want``: an event is counted as processed just after its
    handler returns, so right after the handler saw the last event they may be a step behind."""
    with contextlib.suppress(AssertionError):
        await eventually(lambda: counted(bus) == want, timeout=timeout, what=f"the counters {want}")
    assert counted(bus) == want


def assert_alive(bus: BrokerEventBus) -> None:
    """The consumer loop still runs and has not recorded an error."""
    assert bus.consumer_error is None, f"consumer stopped: {bus.consumer_error!r}"
    assert bus.is_consuming


def assert_each_once(received: Sequence[UUID], expected: Sequence[UUID]) -> None:
    """Exactly the expected event ids arrived, none twice, none missing, none extra."""
    duplicates = sorted({str(i) for i in received if list(received).count(i) > 1})
    assert not duplicates, f"delivered more than once: {duplicates}"
    assert set(received) == set(expected), _difference(received, expected)


def assert_at_least_once(received: Sequence[UUID], expected: Sequence[UUID]) -> None:
    """Every expected event id arrived (duplicates allowed: same id), nothing else did."""
    assert set(received) == set(expected), _difference(received, expected)


def _difference(received: Sequence[UUID], expected: Sequence[UUID]) -> str:
    missing = set(expected) - set(received)
    extra = set(received) - set(expected)
    return f"{len(missing)} missing ({sorted(map(str, missing))[:5]}), {len(extra)} unexpected"


# -- raw injection --------------------------------------------------------------------------


async def inject_raw_type(bus: BrokerEventBus, body: bytes, raw_type: bytes) -> None:
    """Put ``body`` on what ``bus`` consumes with ``raw_type`` as its event type header or
    field, byte for byte (not UTF-8, say): what a broken producer in another language sends."""
    await inject_many(bus, [(body, raw_type)])


async def inject_many(bus: BrokerEventBus, messages: Sequence[tuple[bytes, bytes | None]]) -> None:
    """Put ``(body, type)`` messages, in order and over one connection, on what ``bus``
    consumes; the type (header, field or AMQP ``type``) goes byte for byte, or not at all."""
    if isinstance(bus, RedisEventBus):
        client = Redis.from_url(bus.config.redis_url)
        try:
            pipe = client.pipeline(transaction=False)
            for body, raw_type in messages:
                fields = (
                    {"data": body} if raw_type is None else {"data": body, "event_type": raw_type}
                )
                pipe.xadd(bus.config.stream, fields)
            await pipe.execute()
        finally:
            await client.aclose()
    elif isinstance(bus, KafkaEventBus):
        producer = AIOKafkaProducer(bootstrap_servers=bus.config.bootstrap_servers)
        await producer.start()
        try:
            for body, raw_type in messages:
                headers = [] if raw_type is None else [("event_type", raw_type)]
                await producer.send_and_wait(bus.config.topic, body, key=b"raw", headers=headers)
        finally:
            await producer.stop()
    else:
        assert isinstance(bus, RabbitMQEventBus)
        await _publish_amqp(bus.config, messages)


async def _publish_amqp(
    cfg: RabbitMQEventBusConfig, messages: Sequence[tuple[bytes, bytes | None]]
) -> None:
    """AMQP short strings are bytes on the wire, but pamqp only encodes valid UTF-8: let these
    publishes write the type as it is."""
    methods = dict(pamqp.encode.METHODS)

    def shortstr(value: str) -> bytes:
        raw = value.encode("utf-8", "surrogateescape")
        return len(raw).to_bytes(1, "big") + raw

    methods["shortstr"] = shortstr
    connection = await aio_pika.connect(cfg.rabbitmq_url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(
            cfg.exchange_name, cfg.exchange_type, durable=cfg.durable
        )
        with mock.patch.dict(pamqp.encode.METHODS, methods):
            for body, raw_type in messages:
                kind = None if raw_type is None else raw_type.decode("utf-8", "surrogateescape")
                message = aio_pika.Message(body, type=kind, message_id=uuid4().hex)
                await exchange.publish(message, "Raw.injected")


# -- brokers of a test's own ----------------------------------------------------------------


def own_broker(kind: str, mode: str = "auto") -> Broker:
    """A broker we may stop, pause and restart: started here, never one from a URL."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv(ENV_VARS[kind], raising=False)
        return broker_or_skip(kind, mode)


@contextlib.contextmanager
def paused(broker: Broker) -> Iterator[None]:
    """Freeze the broker's processes (SIGSTOP): it holds its connections but answers nothing,
    as a hung server does; they always continue (SIGCONT) on the way out."""
    pids = broker.pids
    assert pids, f"{broker!r} has no processes of ours to pause"
    stopped = []
    try:
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
            stopped.append(pid)
        yield
    finally:
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


async def take_down(broker: Broker, timeout: float = 30.0) -> None:
    """Shut the broker's processes down (SIGTERM, SIGKILL if they linger): its port refuses
    connections until ``broker.restart()`` starts it again, on the same port and data."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in broker.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        with contextlib.suppress(AssertionError):
            await eventually(lambda: not broker.pids, timeout=timeout / 2, what="the broker gone")
    assert not broker.pids, f"{broker!r} still runs {broker.pids}"


async def kafka_topics(bootstrap: str) -> set[str]:
    """The topics a Kafka broker knows (asking creates none)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        return await consumer.topics()
    finally:
        await consumer.stop()


async def bring_up(broker: Broker) -> None:
    """Start a broker taken down (or restart a running one); returns once it answers."""
    await asyncio.to_thread(broker.restart)
