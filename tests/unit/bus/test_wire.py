"""The wire codec: JSON through the registry, and a clear error for every kind of bad message."""

from __future__ import annotations

from uuid import uuid4

import pytest

from eventsource_lab import EventRegistry
from eventsource_lab.bus import wire
from eventsource_lab.errors import UnknownEventTypeError
from tests.support.events import OrderPlaced, OrderShipped


@pytest.fixture
def registry() -> EventRegistry:
    registry = EventRegistry()
    registry.register(OrderPlaced)
    registry.register(OrderShipped)
    return registry


def placed() -> OrderPlaced:
    return OrderPlaced(aggregate_id=uuid4(), customer_name="Zoë", total_amount=1.5)


@pytest.mark.parametrize("hint", [None, "OrderPlaced"])
def test_round_trip_gives_an_equal_event_of_the_same_class(registry, hint) -> None:
    event = placed()
    decoded = wire.decode(wire.encode(event), registry, hint)
    assert type(decoded) is OrderPlaced and decoded == event


def test_the_wire_format_is_plain_json_a_learner_can_read() -> None:
    assert b'"event_type":"OrderPlaced"' in wire.encode(placed())
    assert b'"customer_name":"Zo\xc3\xab"' in wire.encode(placed())


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\xff\x00garbage", "not JSON"),
        (b"[1, 2]", "no event_type"),
        (b'{"customer_name": "x"}', "no event_type"),
        (b'{"event_type": "OrderPlaced", "aggregate_id": "nope"}', "does not validate"),
    ],
)
def test_bad_bytes_are_a_malformed_message(registry, data, message) -> None:
    with pytest.raises(wire.MalformedMessageError, match=message):
        wire.decode(data, registry)


def test_an_unregistered_type_is_named(registry) -> None:
    with pytest.raises(UnknownEventTypeError, match="'Refunded'"):
        wire.decode(b'{"event_type": "Refunded"}', registry)


def test_a_body_that_contradicts_its_transport_type_is_refused(registry) -> None:
    renamed = OrderPlaced(
        aggregate_id=uuid4(), customer_name="x", total_amount=1, event_type="Renamed"
    )
    with pytest.raises(wire.MalformedMessageError, match="travelled as 'OrderPlaced'"):
        wire.decode(wire.encode(renamed), registry, "OrderPlaced")


def test_decode_errors_cover_both_failure_kinds() -> None:
    assert set(wire.DecodeError) == {wire.MalformedMessageError, UnknownEventTypeError}


@pytest.mark.parametrize("hint", [None, "OrderPlaced"])
@pytest.mark.parametrize(
    "data",
    [
        b"[" * 5_000,
        b'{"event_type": "OrderPlaced", "x": ' + b"[" * 5_000,
        b'{"event_type": "OrderPlaced", "customer_name": ' + b'{"a":' * 5_000,
    ],
    ids=["nested-array", "nested-in-body", "nested-objects"],
)
def test_deeply_nested_json_is_a_malformed_message_not_a_recursion_error(
    registry, data, hint
) -> None:
    with pytest.raises(wire.MalformedMessageError):
        wire.decode(data, registry, hint)


def test_a_body_that_is_not_bytes_is_a_malformed_message(registry) -> None:
    with pytest.raises(wire.MalformedMessageError, match="not bytes"):
        wire.decode("{}", registry)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [float("inf"), float("-inf")])
def test_infinite_and_nan_floats_travel_and_come_back(registry, value) -> None:
    for amount in (value, float("nan")):
        event = OrderPlaced(aggregate_id=uuid4(), customer_name="x", total_amount=amount)
        decoded = wire.decode(wire.encode(event), registry)
        assert decoded.total_amount == amount or decoded.total_amount != decoded.total_amount
