"""The kit itself works: bytes injected with the raw client reach the bus's consumer."""

from __future__ import annotations

from uuid import uuid4

from eventsource_lab.bus import wire
from tests.faults.conftest import Kit
from tests.support.events import OrderPlaced
from tests.support.waiting import Recorder


async def test_an_injected_valid_event_is_consumed_like_a_published_one(kit: Kit) -> None:
    bus = kit.make()
    recorder = Recorder()
    bus.subscribe(OrderPlaced, recorder)
    await bus.start_consuming()
    event = OrderPlaced(aggregate_id=uuid4(), customer_name="raw", total_amount=1.0)
    await kit.inject(bus, wire.encode(event), event.event_type)
    assert [e.event_id for e in await recorder.wait_for(1, timeout=30)] == [event.event_id]
