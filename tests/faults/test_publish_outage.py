"""Publishing while the broker is down or hung: with ``publish_timeout=1`` publish raises
``BusConnectionError`` within 3 s, never hangs; once the broker is back the same bus publishes
again and the event is consumed.

Each kind gets a broker of its own, which the tests stop (SIGTERM: the port refuses) or freeze
(SIGSTOP: connections stay open, nothing answers) and then bring back.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import pytest

from eventsource_lab.brokers import Broker
from eventsource_lab.errors import BusConnectionError
from tests.faults._support import (
    assert_alive,
    bring_up,
    paused,
    take_down,
)
from tests.support.events import OrderPlaced
from tests.support.scenarios import bus_factory, orders
from tests.support.waiting import Recorder

LIMIT = 3.0  # seconds a failing publish may take with publish_timeout=1
WAIT = 45.0  # a consumer after a restart: RabbitMQ's ~5 s start, a tansu group join ~5 s


@pytest.fixture
async def buses(broker: Broker) -> AsyncIterator[Callable[..., Any]]:
    """Buses with ``publish_timeout=1``; the broker is running again after the test."""
    try:
        async with bus_factory(broker, publish_timeout=1) as make:
            yield make
    finally:
        if not broker.is_running():
            await bring_up(broker)


async def _fails_fast(bus: Any) -> float:
    """Publish one event; assert it raises BusConnectionError within LIMIT; the time taken."""
    loop = asyncio.get_running_loop()
    begin = loop.time()
    with pytest.raises(BusConnectionError):
        await asyncio.wait_for(bus.publish(orders(1, "lost")), LIMIT + 5)
    took = loop.time() - begin
    assert took < LIMIT, f"publish took {took:.1f}s to fail"
    return took


async def _publishes_and_is_consumed(buses: Callable[..., Any], publisher: Any) -> None:
    consumer = buses(consumer_group="after")
    recorder = Recorder()
    consumer.subscribe(OrderPlaced, recorder)
    await asyncio.wait_for(consumer.start_consuming(), WAIT)
    event = orders(1, "after")[0]
    await asyncio.wait_for(publisher.publish([event]), WAIT)  # publish_timeout bounds each try
    await recorder.wait_for(1, timeout=WAIT)
    assert recorder.ids == [event.event_id]
    assert_alive(consumer)


@pytest.mark.parametrize("outage", ["stopped", "hung"])
async def test_publish_during_an_outage_fails_fast_then_works_again(
    broker: Broker, buses: Callable[..., Any], outage: str
) -> None:
    publisher = buses(consumer_group="publisher")
    await publisher.publish(orders(1, "before"))  # connected and working
    fresh = buses(consumer_group="fresh")  # never connected yet

    if outage == "stopped":
        await take_down(broker)
        frozen: AbstractContextManager[None] = nullcontext()
    else:
        frozen = paused(broker)
    with frozen:
        await _fails_fast(publisher)
        await _fails_fast(publisher)  # and again: a failed publish left nothing stuck
        await _fails_fast(fresh)
    if outage == "stopped":
        await bring_up(broker)

    await _publishes_and_is_consumed(buses, publisher)
