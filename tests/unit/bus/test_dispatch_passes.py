"""Dispatch costs as few trips through the event loop as its handler tasks allow."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import Any
from uuid import uuid4

import pytest

from eventsource_lab import InMemoryEventBus
from tests.support.events import OrderPlaced
from tests.support.waiting import Recorder


async def loop_passes(work: Coroutine[Any, Any, Any]) -> int:
    """How many passes of the event loop ``work`` takes, counted by a task that ticks each pass."""
    passes = 0

    async def tick() -> None:
        nonlocal passes
        while True:
            await asyncio.sleep(0)
            passes += 1

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0)  # the ticker has started
    passes = 0
    await asyncio.wait_for(work, timeout=5)
    ticker.cancel()
    return passes


async def nothing() -> None:
    """A coroutine that never suspends: the cost of measuring."""


@pytest.mark.parametrize("handlers", [1, 2])
async def test_dispatch_goes_on_one_loop_pass_after_its_handlers_end(handlers: int) -> None:
    """Handlers that never suspend cost their tasks' first step on 3.10/3.11 and nothing on
    3.12+: the dispatcher is woken by the last handler itself, not by callbacks on callbacks."""
    bus = InMemoryEventBus()
    for _ in range(handlers):
        bus.subscribe(OrderPlaced, Recorder())
    event = OrderPlaced(aggregate_id=uuid4(), customer_name="A", total_amount=1.0)
    passes = await loop_passes(bus._dispatch(event)) - await loop_passes(nothing())
    assert passes <= (0 if sys.version_info >= (3, 12) else 2)
