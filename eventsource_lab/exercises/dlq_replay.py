"""Exercise 5: fix a handler, deploy the fix, then replay its poison message from the DLQ.

:func:`poisoned_bus` sets the scene on a real Redis: a ``RedisEventBus`` whose shipping-label
handler crashed on one order, now in the group's DLQ. The learner fixes a copy of the handler,
puts it on the bus in place of the old one and writes ``replay(bus)``; the check looks at what
they did, replays only while the DLQ still holds letters, and so passes again when re-run.
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
MORE_HELP = "stuck? the hints below the check cell go further, one step at a time"


class ShippingLabels:
    """The handler as it was deployed (the exercise's starter cell holds a copy to fix)."""

    def __init__(self) -> None:
        self.labels: dict = {}

    async def handle(self, event: OrderPlaced) -> None:
        surname = event.customer_name.split()[1]
        self.labels[event.aggregate_id] = f"{surname.upper()}, order of ${event.total_amount:.2f}"


@dataclass
class DlqScenario:
    """The bus with a poison message in its DLQ, the handler it runs, and the story's events."""

    bus: RedisEventBus
    handler: ShippingLabels
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
    handler = ShippingLabels()
    bus.subscribe(OrderPlaced, handler)
    good = OrderPlaced(aggregate_id=uuid4(), customer_name="Ada Lovelace", total_amount=120.0)
    poison = OrderPlaced(aggregate_id=uuid4(), customer_name="Cher", total_amount=80.0)
    with quiet_bus_logs():
        await bus.start_consuming()
        await bus.publish([good, poison])
        await eventually(bus.get_dlq_messages, TIMEOUT, "the poison message in the DLQ")
    return DlqScenario(bus, handler, good, poison)


async def _still_raises(handler_class: type, scenario: DlqScenario) -> Problem | None:
    """Try a fresh instance of the learner's class on the dead letter's event."""
    try:
        await handler_class().handle(scenario.poison)
    except Exception as error:
        name = scenario.poison.customer_name
        return Problem(
            f"your {handler_class.__name__} still raises {type(error).__name__} ({error}) on "
            f"the dead letter's event (customer_name={name!r}); replayed now, it would fail "
            "again and go straight back to the DLQ",
            f"look at the line that raises: what does {name!r}.split() give, and which item "
            "does handle() take from it?",
        )
    return None


def _deployment(scenario: DlqScenario, fixed: object) -> list[Problem]:
    """Whether the old handler is off the bus and the learner's is on it, by subscriber name."""
    names = scenario.bus.get_subscriptions().get(OrderPlaced.__name__, [])
    old, new = type(scenario.handler).__name__, type(fixed).__name__
    problems = []
    if old != new and old in names:
        problems.append(
            Problem(
                f"the old {old} is still subscribed on the bus, so a replayed message would "
                "reach it and fail again",
                "take it off with the bus's unsubscribe(); the old handler is scenario.handler",
            )
        )
    if new not in names:
        problems.append(
            Problem(
                f"your {new} is not subscribed on the bus: nothing you fixed would handle a "
                "replayed message",
                "subscribe the instance you pass to check() for OrderPlaced",
            )
        )
    return problems


@exercise(NAME, "Replay the DLQ after a fix", "ex05_dlq_replay", after="07_13b_redis_failures")
async def check_dlq_replay(
    scenario: DlqScenario,
    fixed: Any,
    replay: Callable[[RedisEventBus], Awaitable[Any]],
) -> Feedback:
    """``fixed``: the handler instance you subscribed; ``replay(bus)``: replays the DLQ.

    It replays only while the DLQ still holds letters, so it can be run again after a pass.
    """
    if isinstance(fixed, type):
        return failed(
            NAME,
            [
                Problem(
                    f"check() wants the handler you subscribed, got the class {fixed.__name__}",
                    "pass the instance: check('dlq_replay', scenario, labels, replay)",
                )
            ],
        )
    problems = []
    raising = await _still_raises(type(fixed), scenario)
    if raising is not None:
        problems.append(raising)
    problems += _deployment(scenario, fixed)
    if not inspect.iscoroutinefunction(replay):
        problems.append(
            Problem(
                "replay should be an async function (replaying talks to Redis)",
                "define it as async def replay(bus): ... and await the bus methods in it",
            )
        )
    if problems:
        return failed(
            NAME,
            problems,
            ["nothing was replayed: the dead letter waits until the fix is on", MORE_HELP],
        )
    bus = scenario.bus
    poison_id = scenario.poison.aggregate_id

    def reached() -> bool:
        return poison_id in (getattr(fixed, "labels", None) or {})

    with quiet_bus_logs():
        if await bus.get_dlq_messages():
            await replay(bus)
        left = len(await bus.get_dlq_messages())
        if left == 0 and not reached():
            try:
                await eventually(reached, TIMEOUT)
            except AssertionError:
                pass
    if left:
        problems.append(
            Problem(
                f"after replay(bus), {left} message(s) are still in the DLQ",
                "replay_dlq_message(id) sends one letter back to the group; do it for every "
                "letter that get_dlq_messages() returns",
            )
        )
    elif not reached():
        problems.append(
            Problem(
                f"the DLQ is empty, but Cher's order has not reached the handler you passed "
                f"within {TIMEOUT:.0f} s: either the letter was deleted instead of replayed, or "
                "it went to an earlier instance (running the cell again makes a new, empty one)",
                "replay with bus.replay_dlq_message(letter.id): it moves the letter back to "
                "this group's consumers, while deleting it loses the order; to start over, run "
                "the notebook from the top: it sets the scene anew",
            )
        )
    if problems:
        return failed(NAME, problems, [MORE_HELP])
    return passed(
        NAME,
        f"The fixed handler copes with one-word names, it replaced the old one on the bus, and "
        f"replay_dlq_message() put the dead letter on the group's replay stream: the consumer "
        f"handled Cher's order ({fixed.labels[poison_id]}) and the DLQ is empty. Fix, deploy, "
        "then replay: replaying into the old code only sends the message back.",
    )
