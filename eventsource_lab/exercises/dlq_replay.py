"""Exercise 5: fix a handler, then replay its poison message from the dead-letter queue.

:func:`poisoned_bus` sets the scene on a real Redis: a ``RedisEventBus`` whose shipping-label
handler crashed on one order, now in the group's DLQ.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

from ..bus import RedisEventBus, RedisEventBusConfig
from ..demo import OrderPlaced
from ..testing import eventually
from ._core import Feedback, Problem, exercise, failed, passed
from ._quiet import quiet_bus_logs

NAME = "dlq_replay"
TIMEOUT = 5.0


class BuggyShippingLabels:
    """The handler as it was deployed (the exercise's starter cell shows the same code)."""

    def __init__(self) -> None:
        self.labels: dict = {}

    async def handle(self, event: OrderPlaced) -> None:
        surname = event.customer_name.split()[1]
        self.labels[event.aggregate_id] = f"{surname.upper()}, order of ${event.total_amount:.2f}"


@dataclass
class DlqScenario:
    """The bus with a poison message in its DLQ, and the events the story published."""

    bus: RedisEventBus
    good: OrderPlaced
    poison: OrderPlaced

    async def close(self) -> None:
        """Shut the bus down (the notebook stops the broker)."""
        await self.bus.shutdown()


async def poisoned_bus(redis_url: str) -> DlqScenario:
    """A consuming ``RedisEventBus`` whose handler choked on Cher's order, now dead-lettered."""
    config = RedisEventBusConfig(
        redis_url=redis_url,
        stream_prefix=f"exercise-{uuid4().hex[:8]}",
        consumer_group="shipping",
        consumer_name="labels-1",
        max_retries=2,
        retry_delay=0.05,
        block_ms=100,
    )
    bus = RedisEventBus(config)
    labels = BuggyShippingLabels()
    bus.subscribe(OrderPlaced, labels)
    good = OrderPlaced(aggregate_id=uuid4(), customer_name="Ada Lovelace", total_amount=120.0)
    poison = OrderPlaced(aggregate_id=uuid4(), customer_name="Cher", total_amount=80.0)
    with quiet_bus_logs():
        await bus.start_consuming()
        await bus.publish([good, poison])
        await eventually(bus.get_dlq_messages, TIMEOUT, "the poison message in the DLQ")
    return DlqScenario(bus, good, poison)


@exercise(NAME, "Replay the DLQ after a fix", "ex05_dlq_replay", after="07_13_redis")
async def check_dlq_replay(
    scenario: DlqScenario,
    handler_class: type,
    replay: Callable[[RedisEventBus], Awaitable[Any]],
) -> Feedback:
    """``handler_class``: the fixed handler; ``replay(bus)``: replays the DLQ."""
    probe = handler_class()
    try:
        await probe.handle(scenario.poison)
    except Exception as error:
        return failed(
            NAME,
            [
                Problem(
                    f"your handler still raises {type(error).__name__} ({error}) on the dead "
                    f"letter's event (customer_name={scenario.poison.customer_name!r}); "
                    "replayed now, it would fail again and go straight back to the DLQ",
                    "a name can be a single word: take the last word, "
                    "event.customer_name.split()[-1], instead of the second",
                )
            ],
        )
    if not inspect.iscoroutinefunction(replay):
        return failed(
            NAME,
            [
                Problem(
                    "replay should be an async function (replaying talks to Redis)",
                    "define it as async def replay(bus): ... and await the bus methods in it",
                )
            ],
        )
    bus = scenario.bus
    fixed = handler_class()
    bus.clear_subscribers()
    bus.subscribe(OrderPlaced, fixed)  # deploy the fix
    poison_id = scenario.poison.aggregate_id
    with quiet_bus_logs():
        await replay(bus)
        left = len(await bus.get_dlq_messages())
        if left == 0:
            try:
                await eventually(lambda: poison_id in fixed.labels, TIMEOUT)
            except AssertionError:
                pass
    problems = []
    if left:
        problems.append(
            Problem(
                f"after replay(bus), {left} message(s) are still in the DLQ",
                "for letter in await bus.get_dlq_messages(): await "
                "bus.replay_dlq_message(letter.id)",
            )
        )
    elif poison_id not in fixed.labels:
        problems.append(
            Problem(
                f"the DLQ is empty but Cher's order never reached the fixed handler within "
                f"{TIMEOUT:.0f} s: the message was removed, not replayed",
                "use bus.replay_dlq_message(letter.id): it moves the message back to this "
                "group's consumers, while deleting it loses the order",
            )
        )
    if problems:
        return failed(NAME, problems)
    return passed(
        NAME,
        f"The fixed handler copes with one-word names, and replay_dlq_message() put the dead "
        f"letter on the group's replay stream: the consumer handled Cher's order "
        f"({fixed.labels[poison_id]}) and the DLQ is empty. Fix first, then replay: replaying "
        "into the old code only sends the message back.",
    )
