"""Garbage on the wire: whatever bytes a broken or hostile producer puts between valid events,
the consumer goes on, handles each valid event exactly once, and dead-letters each bad message
once, with the reason (MalformedMessageError or UnknownEventTypeError) as its error_type.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import dataclass
from uuid import uuid4

from eventsource_lab.bus import BrokerEventBus, KafkaEventBus, wire
from tests.faults._support import (
    assert_alive,
    assert_each_once,
    counted,
    inject_raw_type,
)
from tests.faults.conftest import Kit
from tests.support.events import OrderPlaced
from tests.support.scenarios import eventually_async, orders
from tests.support.waiting import Recorder, eventually

WAIT = 30.0
MALFORMED, UNKNOWN = "MalformedMessageError", "UnknownEventTypeError"


@dataclass(frozen=True)
class Garbage:
    """One bad message: its body, the type it travels under, and the error it must be filed as."""

    name: str
    body: bytes
    event_type: str | None
    error_type: str


def _order_body(**changes: object) -> dict[str, object]:
    event = OrderPlaced(aggregate_id=uuid4(), customer_name="garbage", total_amount=1.0)
    return {**json.loads(wire.encode(event)), **changes}


def _json(body: dict[str, object]) -> bytes:
    return json.dumps(body).encode()


def _deep_inside() -> bytes:
    """A valid-looking order with a field nested 5,000 deep."""
    head = _json(_order_body())[:-1]
    return head + b', "extra": ' + b"[" * 5000 + b"]" * 5000 + b"}"


def _garbage() -> list[Garbage]:
    missing = _order_body()
    del missing["customer_name"]
    return [
        Garbage("not json", b"\x00\xff\xfe not json {", None, MALFORMED),
        Garbage("not json, typed", b"<xml>no</xml>", "OrderPlaced", MALFORMED),
        Garbage("deeply nested", b"[" * 5000, None, MALFORMED),
        Garbage("deeply nested, typed", b"[" * 5001, "OrderPlaced", MALFORMED),
        Garbage("nested in a body", _deep_inside(), None, MALFORMED),
        Garbage("nested in a body, typed", _deep_inside(), "OrderPlaced", MALFORMED),
        Garbage(
            "unknown type",
            _json(_order_body(event_type="NoSuchEvent")),
            "NoSuchEvent",
            UNKNOWN,
        ),
        Garbage(
            "unknown type, untyped",
            _json(_order_body(event_type="AlsoNoSuchEvent")),
            None,
            UNKNOWN,
        ),
        Garbage(
            "wrong field type", _json(_order_body(total_amount="abc")), "OrderPlaced", MALFORMED
        ),
        Garbage("wrong field type, untyped", _json(_order_body(aggregate_id=[1])), None, MALFORMED),
        Garbage("missing field", _json(missing), "OrderPlaced", MALFORMED),
        Garbage(
            "type disagrees with body",
            _json(_order_body(event_type="OrderShipped")),
            "OrderPlaced",
            MALFORMED,
        ),
        Garbage("header names another class", _json(_order_body()), "OrderShipped", MALFORMED),
        Garbage("empty body", b"", None, MALFORMED),
        Garbage("empty body, typed", b"", "OrderPlaced", MALFORMED),
        Garbage("a JSON string", b'"OrderPlaced"', None, MALFORMED),
        Garbage("event_type not a string", _json(_order_body(event_type=7)), None, MALFORMED),
    ]


async def test_garbage_between_valid_events_is_dead_lettered_and_the_rest_handled_once(
    kit: Kit,
) -> None:
    overrides = {"pending_idle_ms": 500} if kit.kind == "redis" else {}
    bus = kit.make(max_retries=1, **overrides)
    recorder = Recorder()
    bus.subscribe(OrderPlaced, recorder)
    await bus.start_consuming()

    garbage = _garbage()
    valid = orders(len(garbage) + 1, "valid")
    for event, bad in zip(valid, garbage, strict=False):  # valid, bad, valid, bad, ..., valid
        await bus.publish([event])
        await kit.inject(bus, bad.body, bad.event_type)
    await bus.publish(valid[-1:])

    await _assert_outcome(bus, recorder, valid, garbage)


async def test_a_type_header_that_is_not_utf8_is_dead_lettered_as_malformed(kit: Kit) -> None:
    """The type travels beside the body (a Redis field, a Kafka header, the AMQP ``type``
    property): bytes there that are no text make a malformed message, nothing worse."""
    overrides = {"pending_idle_ms": 500} if kit.kind == "redis" else {}
    bus = kit.make(max_retries=1, **overrides)
    recorder = Recorder()
    bus.subscribe(OrderPlaced, recorder)
    await bus.start_consuming()
    bad = Garbage("non-UTF-8 type header", _json(_order_body()), None, MALFORMED)
    valid = orders(2, "valid")
    await bus.publish(valid[:1])
    await inject_raw_type(bus, bad.body, b"Order\xff\xfePlaced")
    await bus.publish(valid[1:])
    await _assert_outcome(bus, recorder, valid, [bad], wait=20)


async def _assert_outcome(
    bus: BrokerEventBus,
    recorder: Recorder,
    valid: list[OrderPlaced],
    garbage: list[Garbage],
    wait: float = WAIT,
) -> None:
    """Each valid event handled once, each bad message filed once with its error type, the
    counters exact, nothing left unacknowledged, and the loop alive."""
    await recorder.wait_for(len(valid), timeout=wait)
    await eventually(
        lambda: (
            bus.get_stats()["messages_dead_lettered"] >= len(garbage)
            or bus.consumer_error is not None
        ),
        timeout=wait,
        what="every bad message dead-lettered",
    )
    await asyncio.sleep(1.5)  # a window for any redelivery (Redis reclaims after 0.5 s idle)

    assert_alive(bus)
    assert_each_once(recorder.ids, [e.event_id for e in valid])
    assert counted(bus) == {
        "events_consumed": len(valid) + len(garbage),
        "events_processed": len(valid),
        "events_failed": len(garbage),
        "messages_dead_lettered": len(garbage),
        "handler_errors": 0,
    }
    letters = await bus.get_dlq_messages(limit=1000)
    filed = Counter((letter.body, letter.error_type) for letter in letters)
    wanted = Counter((bad.body, bad.error_type) for bad in garbage)
    assert filed == wanted, {
        bad.name: [t for b, t in filed if b == bad.body]
        for bad in garbage
        if filed[bad.body, bad.error_type] != wanted[bad.body, bad.error_type]
    }
    if not isinstance(bus, KafkaEventBus):  # Kafka gives no reliable count of what is left
        await eventually_async(bus.get_backlog, lambda b: b["pending"] == 0, timeout=5)
