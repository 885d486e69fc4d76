"""Exercise 4: publish in the background, then shut down without losing an event."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import uuid4

from ..bus import InMemoryEventBus
from ..demo import OrderPlaced
from ..events import DomainEvent
from ._core import Feedback, Problem, exercise, failed, passed

NAME = "background_shutdown"
COUNT = 20


class _WatchedBus(InMemoryEventBus):
    """An in-memory bus that remembers how ``shutdown()`` was called."""

    def __init__(self) -> None:
        super().__init__()
        self.shutdown_timeouts: list[float] = []

    async def shutdown(self, timeout: float = 30.0) -> None:
        self.shutdown_timeouts.append(timeout)
        await super().shutdown(timeout)


class _SlowMailer:
    """Takes a moment per event, like a handler that sends an e-mail."""

    def __init__(self) -> None:
        self.sent: list[DomainEvent] = []

    async def handle(self, event: DomainEvent) -> None:
        await asyncio.sleep(0.01)
        self.sent.append(event)


@exercise(
    NAME,
    "Publish in the background, shut down without losing events",
    "ex04_background_shutdown",
    after="07_08_background_and_shutdown",
)
async def check_background(
    publish_orders: Callable[[Any, list[DomainEvent]], Awaitable[None]],
) -> Feedback:
    """``publish_orders(bus, events)``: the learner's coroutine function."""
    bus = _WatchedBus()
    mailer = _SlowMailer()
    bus.subscribe(OrderPlaced, mailer)
    events = [
        OrderPlaced(aggregate_id=uuid4(), customer_name=f"Customer {i}", total_amount=10.0)
        for i in range(COUNT)
    ]
    await publish_orders(bus, events)
    handled = len(mailer.sent)
    stats = bus.get_stats()
    ended = stats["background_tasks_completed"] + stats["background_tasks_cancelled"]
    still_running = stats["background_tasks_created"] - ended
    await bus.shutdown()  # clean up after the learner, whatever they did
    # read after the cleanup: a publish cancelled by shutdown(timeout=0) ends a moment later
    cancelled = bus.get_stats()["background_tasks_cancelled"]
    problems = []
    if stats["background_tasks_created"] == 0:
        problems.append(
            Problem(
                "nothing was published in the background: background_tasks_created is 0",
                "publish each event with await bus.publish([event], background=True)",
            )
        )
    if not bus.shutdown_timeouts[:-1] and handled < COUNT:
        problems.append(
            Problem(
                f"publish_orders() returned without shutting the bus down; {still_running} "
                f"background publishes were still running and {COUNT - handled} of {COUNT} "
                "e-mails unsent: at process exit they would be lost",
                "end with await bus.shutdown(): it waits for the background publishes to "
                "finish before disconnecting",
            )
        )
    elif not bus.shutdown_timeouts[:-1]:
        problems.append(
            Problem(
                f"all {COUNT} e-mails were sent, but publish_orders() returned without calling "
                "bus.shutdown(): you waited some other way",
                "wait with await bus.shutdown() instead: it waits exactly until the background "
                "publishes finish (a sleep only guesses how long), bounds the wait with its "
                "timeout, and then disconnects the bus",
            )
        )
    elif handled < COUNT:
        problems.append(
            Problem(
                f"you called shutdown(timeout={bus.shutdown_timeouts[0]}), but only {handled} of "
                f"{COUNT} events were handled: shutdown cancels what is still running when "
                f"the timeout runs out (background_tasks_cancelled is {cancelled})",
                "give the background publishes time: the default timeout (30 s) is fine here",
            )
        )
    if problems:
        return failed(NAME, problems)
    return passed(
        NAME,
        f"publish(background=True) returned at once and tracked each publish as a task; "
        f"shutdown() waited for them all (background_tasks_created = "
        f"background_tasks_completed = {stats['background_tasks_created']}, none cancelled) "
        f"before disconnecting, so all {COUNT} events were handled.",
    )
