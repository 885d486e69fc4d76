"""Building blocks the broker-bus tests share: batches of orders, a poisonable handler, polling."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any
from uuid import uuid4

from eventsource_lab.bus import EventBus
from eventsource_lab.testing import Recorder
from tests.support.events import OrderPlaced


def orders(n: int, customer: str = "c") -> list[OrderPlaced]:
    """``n`` orders of ``n`` different aggregates, customers ``{customer}0`` …"""
    return [
        OrderPlaced(aggregate_id=uuid4(), customer_name=f"{customer}{i}", total_amount=i)
        for i in range(n)
    ]


def poison_bus(
    buses: Callable[..., EventBus], calls: list[str], fixed: dict, **overrides: Any
) -> tuple[Any, Recorder]:
    """A bus whose handler fails on customer 'poison' until ``fixed['yes']`` is set."""
    bus = buses(**{"max_retries": 2, **overrides})
    recorder = Recorder()

    async def handler(event: OrderPlaced) -> None:
        calls.append(event.customer_name)
        if event.customer_name == "poison" and not fixed.get("yes"):
            raise RuntimeError("cannot handle poison")
        await recorder.handle(event)

    bus.subscribe(OrderPlaced, handler)
    return bus, recorder


async def eventually_async(
    fetch: Callable[[], Awaitable[Any]], check: Callable[[Any], bool], timeout: float = 10.0
) -> None:
    """Poll an async ``fetch()`` until ``check(result)``; fail after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check(result := await fetch()):
        assert loop.time() < deadline, f"timed out; last result {result!r}"
        await asyncio.sleep(0.02)


@asynccontextmanager
async def bus_maker(
    bus_class: Callable[[Any], Any], config_class: Callable[..., Any], **defaults: Any
) -> AsyncIterator[Callable[..., Any]]:
    """Make buses with ``defaults`` (each call may override them); all shut down at the end."""
    async with AsyncExitStack() as stack:

        def make(**overrides: Any) -> Any:
            bus = bus_class(config_class(**{**defaults, **overrides}))
            stack.push_async_callback(bus.shutdown, 5)
            return bus

        yield make
