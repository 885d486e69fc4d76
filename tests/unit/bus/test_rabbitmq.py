"""RabbitMQEventBus without a broker: configuration, names, routing keys, bindings, retry keys."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from functools import partial
from unittest import mock
from uuid import uuid4

import aio_pika
import pamqp.decode
import pamqp.encode
import pamqp.frame
import pytest
from aio_pika.exceptions import (
    AMQPConnectionError,
    ChannelClosed,
    ChannelInvalidStateError,
    ChannelPreconditionFailed,
    ConnectionClosed,
)
from pamqp import commands, header
from pydantic import ValidationError

from eventsource_lab import DomainEvent
from eventsource_lab.bus._amqp_compat import UnreadableTimestamp, install
from eventsource_lab.bus.rabbitmq import (
    _UNREADABLE,
    RabbitMQEventBus,
    RabbitMQEventBusConfig,
    _count,
    _keyed,
    _routing_key,
    _unreadable,
)
from eventsource_lab.bus.rabbitmq_connection import FailoverConnection, redact_urls, split_urls
from tests.support.events import OrderPlaced


def test_url_comes_from_the_environment_else_localhost(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVENTSOURCE_LAB_RABBITMQ_URL", "amqp://10.9.9.9:5673/vh")
    assert RabbitMQEventBusConfig().rabbitmq_url == "amqp://10.9.9.9:5673/vh"
    monkeypatch.delenv("EVENTSOURCE_LAB_RABBITMQ_URL")
    assert RabbitMQEventBusConfig().rabbitmq_url == "amqp://localhost:5672/"


def test_spec_fields_defaults_and_queue_names() -> None:
    config = RabbitMQEventBusConfig(
        rabbitmq_url="amqp://localhost:5672/",
        exchange_name="events",
        consumer_group="projections",
        max_retries=3,
        enable_dlq=True,
    )
    assert (config.exchange_type, config.prefetch_count, config.durable) == ("topic", 100, True)
    assert (config.heartbeat, config.retry_delay) == (60, 0.1)
    assert config.queue == "events.projections"
    assert config.retry_queue == "events.projections.retry"
    assert config.dlq_queue == "events.projections.dlq"
    assert RabbitMQEventBusConfig().consumer_name != RabbitMQEventBusConfig().consumer_name


@pytest.mark.parametrize(
    "bad",
    [
        {"exchange_type": "headers"},
        {"prefetch_count": 0},
        {"heartbeat": -1},
        {"exchange_name": ""},
        {"max_retries": -1},
        {"rabbit_url": "typo"},
    ],
)
def test_bad_settings_are_refused_by_name(bad: dict) -> None:
    with pytest.raises(ValidationError, match=next(iter(bad))):
        RabbitMQEventBusConfig(**bad)


def test_several_urls_come_as_text_or_a_list_and_show_without_their_passwords() -> None:
    nodes = ["amqp://u:pw-one@10.0.0.1:5672/", "amqp://u:pw-two@10.0.0.2/vh"]
    for given in (nodes, tuple(nodes), " , ".join(nodes)):
        config = RabbitMQEventBusConfig(rabbitmq_url=given)
        assert config.urls == nodes
        assert config.rabbitmq_url == ",".join(nodes)
        shown = repr(config)
        assert "pw-one" not in shown and "pw-two" not in shown
        assert "amqp://***@10.0.0.1:5672/,amqp://***@10.0.0.2/vh" in shown
    assert redact_urls(nodes) == "amqp://***@10.0.0.1:5672/,amqp://***@10.0.0.2/vh"


@pytest.mark.parametrize(
    "urls",
    [
        "",
        " , ",
        [],
        ["amqp://u:s3cret@h:1/", ""],
        ["amqp://u:s3cret@h:1/", 5672],
        "amqp://u:s3cret@h:1/,http://u:s3cret@h/",
        "amqp://u:s3cret@h:1/,,amqp://u:s3cret@h:2/",
        "amqp://u:s3cret@/",
        "amqp://u:s3cret@h:port/",
        "u:s3cret@h:5672",
    ],
)
def test_an_empty_or_garbled_url_list_is_refused_without_the_password(urls: object) -> None:
    with pytest.raises(ValidationError, match="rabbitmq_url") as e:
        RabbitMQEventBusConfig(rabbitmq_url=urls)
    assert "s3cret" not in str(e.value)
    with pytest.raises(ValueError):
        split_urls(urls)  # type: ignore[arg-type]


def test_quorum_queues_are_durable_and_say_so_when_declared() -> None:
    with pytest.raises(ValidationError, match="quorum queues are always durable"):
        RabbitMQEventBusConfig(queue_type="quorum", durable=False)
    with pytest.raises(ValidationError, match="queue_type"):
        RabbitMQEventBusConfig(queue_type="stream")
    quorum = RabbitMQEventBusConfig(queue_type="quorum")
    assert quorum.queue_arguments() == {"x-queue-type": "quorum"}
    assert quorum.queue_arguments(**{"x-overflow": "reject-publish"}) == {
        "x-queue-type": "quorum",
        "x-overflow": "reject-publish",
    }
    classic = RabbitMQEventBusConfig()
    assert classic.queue_type == "classic"
    assert classic.queue_arguments() == {}  # as before the setting: old queues stay equivalent


def test_a_failover_connection_moves_to_the_next_url_when_it_loses_one() -> None:
    """The rotation itself (the failover over real brokers is in the integration tests)."""

    async def rotate() -> list[str]:
        urls = ["amqp://u:p@h1/", "amqp://u:p@h2/", "amqp://u:p@h3/"]
        connection = FailoverConnection(urls, 1, {"heartbeat": 5})
        assert str(connection.url) == "amqp://u:p@h2/?heartbeat=5"
        assert str(connection) == "amqp://***@h1/,amqp://***@h2/,amqp://***@h3/"
        seen = [connection.current_url]
        for _ in range(3):
            closing = asyncio.get_running_loop().create_future()
            closing.set_exception(ConnectionError("gone"))
            await connection._on_connection_close(closing)
            seen.append(connection.current_url)
            assert str(connection.url).startswith(connection.current_url)
        await connection.close()
        return seen

    assert asyncio.run(rotate()) == [
        "amqp://u:p@h2/",
        "amqp://u:p@h3/",
        "amqp://u:p@h1/",
        "amqp://u:p@h2/",
    ]


def test_routing_key_is_aggregate_type_dot_event_type() -> None:
    event = OrderPlaced(aggregate_id=uuid4(), customer_name="a", total_amount=1)
    assert _routing_key(event) == "Order.OrderPlaced"


@pytest.mark.parametrize(
    ("exchange_type", "keys"), [("topic", ["#.OrderPlaced"]), ("direct", ["Order.OrderPlaced"])]
)
async def test_bind_event_type_before_connecting_records_the_binding_key(
    exchange_type: str, keys: list[str]
) -> None:
    bus = RabbitMQEventBus(RabbitMQEventBusConfig(exchange_type=exchange_type))
    await bus.bind_event_type(OrderPlaced)
    await bus.bind_event_type(OrderPlaced)
    assert bus._bindings == keys
    assert not bus.is_connected  # applied at the broker when consuming starts


async def test_a_fanout_exchange_refuses_single_type_bindings() -> None:
    bus = RabbitMQEventBus(RabbitMQEventBusConfig(exchange_type="fanout"))
    with pytest.raises(ValueError, match="fanout exchange gives every queue every event"):
        await bus.bind_event_type(OrderPlaced)
    assert bus._bindings == []


@pytest.mark.parametrize("not_a_type", [DomainEvent, str])
async def test_binding_needs_a_domain_event_subclass(not_a_type: type) -> None:
    bus = RabbitMQEventBus()
    with pytest.raises(TypeError):
        await bus.bind_event_type(not_a_type)
    assert bus._bindings == []


class Counter:
    def handle(self, event: DomainEvent) -> None: ...


def keys(bus: RabbitMQEventBus) -> list[str]:
    return [key for key, _ in _keyed(bus._subscriptions.route("OrderPlaced"))]


def subscribe_the_same(bus: RabbitMQEventBus) -> None:
    """What two processes of one group would both run at start-up."""
    bus.subscribe(OrderPlaced, Counter())
    bus.subscribe(OrderPlaced, Counter())
    bus.subscribe(OrderPlaced, lambda e: None)
    bus.subscribe(OrderPlaced, partial(print, "a"))
    bus.subscribe(OrderPlaced, partial(print, "b"))
    bus.subscribe_to_all_events(Counter())


def test_retry_keys_tell_same_named_subscribers_apart_and_agree_across_buses() -> None:
    one, two = RabbitMQEventBus(), RabbitMQEventBus()
    subscribe_the_same(one)
    subscribe_the_same(two)
    assert keys(one) == keys(two)
    assert len(set(keys(one))) == 6
    assert keys(one)[:2] == ["Counter#0", "Counter#1"]
    assert keys(one)[-1] == "Counter#2"  # the wildcard one comes after the typed ones


def test_a_subscriber_keeps_its_key_when_a_differently_named_one_is_added_before_it() -> None:
    bus = RabbitMQEventBus()
    bus.subscribe(OrderPlaced, Counter())
    before = keys(bus)
    bus._subscriptions.clear()
    bus.subscribe(OrderPlaced, lambda e: None)
    bus.subscribe(OrderPlaced, Counter())
    assert keys(bus)[1] == before[0] == "Counter#0"


@pytest.mark.parametrize("value", ["3", -1, True, 2.5, None, [1], {"a": 1}])
def test_a_retry_count_header_of_any_other_kind_counts_as_a_first_delivery(value: object) -> None:
    assert _count(value) == 0


@pytest.mark.parametrize(
    "error",
    [
        ChannelClosed(),
        ChannelPreconditionFailed(),
        ChannelInvalidStateError(),
        ConnectionClosed(320, "closed"),
        AMQPConnectionError(),
    ],
)
def test_a_closed_channel_or_connection_restarts_the_consumer_loop(error: Exception) -> None:
    assert isinstance(error, RabbitMQEventBus.TRANSIENT)


# -- properties pamqp reads only with the bus's compatibility shim --------------------------------

PAST_9999 = 2**63 - 1


def content_header(properties: commands.Basic.Properties) -> bytes:
    """A content-header frame with ``properties`` written raw: short strings byte for byte
    (surrogate-escaped), timestamps as the integer, a header table as the bytes given."""

    def shortstr(value: str) -> bytes:
        data = value.encode("utf-8", "surrogateescape")
        return len(data).to_bytes(1, "big") + data

    encoders = {
        "shortstr": shortstr,
        "timestamp": lambda value: value.to_bytes(8, "big"),
        "table": lambda value: len(value).to_bytes(4, "big") + value,
    }
    with mock.patch.dict(pamqp.encode.METHODS, encoders):
        return pamqp.frame.marshal(header.ContentHeader(0, 3, properties), 1)


def test_properties_that_are_no_utf8_or_past_9999_are_read_not_refused() -> None:
    """Before, pamqp raised on this frame and the client dropped its connection."""
    table = b"\x02k\xffT" + PAST_9999.to_bytes(8, "big") + b"\x01sS\x00\x00\x00\x02\xfe\xfd"
    properties = commands.Basic.Properties(
        message_type="Order\udcffPlaced", message_id="id", timestamp=PAST_9999, headers=table
    )
    _, _, frame = pamqp.frame.unmarshal(content_header(properties))
    assert isinstance(frame, header.ContentHeader)
    read = frame.properties
    assert read.message_type.encode("utf-8", "surrogateescape") == b"Order\xffPlaced"
    assert read.message_id == "id"
    assert isinstance(read.timestamp, UnreadableTimestamp) and read.timestamp.raw == PAST_9999
    assert read.timestamp == datetime.max.replace(tzinfo=timezone.utc)
    (key, stamp), (name, value) = sorted(read.headers.items())
    assert key.encode("utf-8", "surrogateescape") == b"k\xff" and stamp.raw == PAST_9999
    assert (name, value) == ("s", b"\xfe\xfd")  # pamqp's own fallback for long strings


def test_the_shim_leaves_readable_values_and_truncated_frames_as_pamqp_has_them() -> None:
    before = dict(pamqp.decode.METHODS)
    install()  # again: nothing changes
    assert pamqp.decode.METHODS == before
    assert pamqp.decode.METHODS["shortstr"](b"\x05Ord\xc3\xa9") == (6, "Ord\u00e9")
    assert pamqp.decode.METHODS["timestamp"]((1).to_bytes(8, "big")) == (
        8,
        datetime(1970, 1, 1, 0, 0, 1, tzinfo=timezone.utc),
    )
    with pytest.raises(ValueError):
        pamqp.decode.METHODS["timestamp"](b"\x00\x01")


def test_unreadable_properties_are_named_escaped_and_kept_by_a_copy() -> None:
    bad = aio_pika.Message(
        b"", type="Order\udcff", message_id="id-\udcc3", timestamp=UnreadableTimestamp.of(7)
    )
    assert _unreadable(bad) == "type=Order\\xff; message_id=id-\\xc3; timestamp=7"
    copy = aio_pika.Message(b"", type="OrderPlaced", headers={_UNREADABLE: "type=Order\\xff"})
    assert _unreadable(copy) == "type=Order\\xff"
    assert _unreadable(aio_pika.Message(b"", type="Ord\u00e9", message_id="\u00e9")) == ""
