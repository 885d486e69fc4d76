"""FaultControls: poison to the DLQ, a failing handler, a killed consumer, replaying the DLQ."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from uuid import uuid4

import pytest

from eventsource_lab import DomainEvent
from eventsource_lab.bus import InMemoryEventBus, RedisEventBus, RedisEventBusConfig
from eventsource_lab.widgets.faults import FaultControls
from tests.support.events import OrderPlaced, OrderShipped
from tests.support.scenarios import bus_maker
from tests.support.waiting import eventually


def orders(n: int) -> list[OrderPlaced]:
    return [
        OrderPlaced(aggregate_id=uuid4(), customer_name=f"c{i}", total_amount=i) for i in range(n)
    ]


class Gate:
    """A handler that holds every event until ``open`` is set."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.entered = 0

    async def handle(self, event: DomainEvent) -> None:
        self.entered += 1
        await self.open.wait()


@pytest.fixture
async def redis_bus(redis_broker) -> AsyncIterator[Callable[..., RedisEventBus]]:
    """Make Redis buses on a fresh stream prefix; all shut down after the test."""
    async with bus_maker(
        RedisEventBus,
        RedisEventBusConfig,
        redis_url=redis_broker.url,
        stream_prefix=f"t-{uuid4().hex[:8]}",
        block_ms=100,
        retry_delay=0.01,
        max_retries=2,
        pending_idle_ms=300,
    ) as make:
        yield make


async def dlq_size(bus: RedisEventBus) -> int:
    return len(await bus.get_dlq_messages())


@pytest.mark.redis
async def test_a_poison_message_is_retried_then_dead_lettered(redis_bus) -> None:
    bus = redis_bus()
    controls = FaultControls(bus, OrderPlaced)
    await bus.start_consuming()
    poison = await controls.send_poison()
    assert isinstance(poison, OrderPlaced) and poison.customer_name == "poison"
    await eventually(lambda: bus.get_stats()["messages_dead_lettered"] == 1)
    assert await dlq_size(bus) == 1
    assert controls.failures == 3 and controls.handled == []
    assert controls.log[-3:] == [
        "OrderPlaced: attempt 1 failed (it is poison); the bus will retry it.",
        "OrderPlaced: attempt 2 failed (it is poison); the bus will retry it.",
        "OrderPlaced: attempt 3 failed (it is poison); retries used up: the bus moves it to "
        "the dead-letter queue.",
    ]

    assert await controls.replay_dlq() == 1  # poison stays poison
    assert "1 of them are poison" in controls.log[-1]
    await eventually(lambda: bus.get_stats()["messages_dead_lettered"] == 2)
    assert await dlq_size(bus) == 1
    controls.close()


@pytest.mark.redis
async def test_failing_then_fixing_then_replaying_the_dlq(redis_bus) -> None:
    bus = redis_bus()
    controls = FaultControls(bus, OrderPlaced)
    await bus.start_consuming()
    controls._toggle.value = True  # what a click on the toggle does
    assert controls.failing
    assert "now fails on every OrderPlaced" in controls.log[-1]
    events = orders(2)
    await bus.publish(events)
    await eventually(lambda: bus.get_stats()["messages_dead_lettered"] == 2)
    assert bus.get_stats()["handler_errors"] == 6 == controls.failures

    controls.failing = False
    assert "works again" in controls.log[-1]
    assert await controls.replay_dlq() == 2
    assert "Replayed 2 message(s)" in controls.log[-1]
    await eventually(lambda: len(controls.handled) == 2)
    assert sorted(e.event_id for e in controls.handled) == sorted(e.event_id for e in events)
    assert await dlq_size(bus) == 0
    assert controls.log.count("OrderPlaced: handled at last, after failing before.") == 2
    controls.close()


@pytest.mark.redis
async def test_a_killed_consumer_loses_nothing(redis_bus) -> None:
    bus = redis_bus()
    controls = FaultControls(bus, OrderPlaced)
    gate = Gate()  # holds the first event, so the consumer dies with it unacknowledged
    bus.subscribe(OrderPlaced, gate)
    await bus.start_consuming()
    held = orders(1)[0]
    await bus.publish([held])
    await eventually(lambda: gate.entered == 1)

    await controls.kill_consumer()
    assert not bus.is_consuming
    assert "Killed the consumer" in controls.log[-1] and "XAUTOCLAIM" in controls.log[-1]
    meanwhile = orders(2)
    await bus.publish(meanwhile)
    await controls.kill_consumer()
    assert controls.log[-1] == "No consumer is running: nothing to kill."

    gate.open.set()
    await controls.restart_consumer()
    assert bus.is_consuming and "Consumer restarted" in controls.log[-1]
    ids = [e.event_id for e in meanwhile]
    await eventually(lambda: [e.event_id for e in controls.handled].count(held.event_id) == 2)
    await eventually(lambda: all(i in [e.event_id for e in controls.handled] for i in ids))
    assert bus.get_stats()["messages_recovered"] == 1  # held: taken over after pending_idle_ms
    await controls.restart_consumer()
    assert controls.log[-1] == "The consumer is already running."
    controls.close()


async def test_a_button_error_goes_to_the_log() -> None:
    bus = RedisEventBus(RedisEventBusConfig(redis_url="redis://127.0.0.1:1/0"))
    controls = FaultControls(bus, OrderPlaced)
    replay = next(b for b in controls.children[0].children if b.description == "Replay DLQ")
    replay.click()
    await eventually(lambda: controls.log and controls.log[-1].startswith("Replay DLQ failed:"))
    assert "BusConnectionError" in controls.log[-1]
    controls.close()


async def test_on_an_in_memory_bus_failures_are_not_retried() -> None:
    bus = InMemoryEventBus()
    controls = FaultControls(bus, OrderShipped)
    assert bus.get_subscriptions()["OrderShipped"] == ["FaultyHandler"]
    poison = await controls.send_poison()
    assert isinstance(poison, OrderShipped) and poison.tracking_number == "poison"
    assert bus.get_stats()["handler_errors"] == 1
    assert controls.log[-1].endswith("does not retry: the event is lost for this handler.")
    shipped = OrderShipped(aggregate_id=uuid4(), tracking_number="T1")
    await bus.publish([shipped])
    assert controls.handled == [shipped]

    await controls.kill_consumer()
    assert controls.log[-1].startswith("Cannot kill: InMemoryEventBus has no consumer")
    assert await controls.replay_dlq() == 0

    html = controls._repr_mimebundle_()["text/html"]
    assert "handled 1" in html and "failed 1" in html and "Cannot kill" in html
    controls.close()
    assert bus.get_subscriber_count(OrderShipped) == 0


async def test_an_event_class_without_placeholders_needs_make_event() -> None:
    class Odd(DomainEvent):
        event_type: str = "Odd"
        payload: tuple[int, int]

    bus = InMemoryEventBus()
    with pytest.raises(TypeError, match="make_event"):
        await FaultControls(bus, Odd).send_poison()
    made = Odd(aggregate_id=uuid4(), payload=(1, 2))
    controls = FaultControls(bus, Odd, make_event=lambda: made)
    assert await controls.send_poison() is made
    assert controls.failures == 1
