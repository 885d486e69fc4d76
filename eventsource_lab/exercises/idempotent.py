"""Exercise 3: an idempotent handler, so redelivery (at-least-once) does not double-count."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import uuid4

from .. import brokers
from ..bus import InMemoryEventBus
from ..demo import OrderPlaced
from ..errors import BrokerUnavailableError
from ..testing import Recorder
from ._core import Feedback, Problem, exercise, failed, passed
from ._quiet import quiet_bus_logs

NAME = "idempotent_handler"
TIMEOUT = 10.0


def _state(handler: Any) -> tuple[Any, Any]:
    return getattr(handler, "total_revenue", None), getattr(handler, "order_count", None)


async def _in_memory(handler_class: type) -> list[Problem]:
    handler = handler_class()
    bus = InMemoryEventBus()
    bus.subscribe(OrderPlaced, handler)
    first = OrderPlaced(aggregate_id=uuid4(), customer_name="Alice", total_amount=100.0)
    await bus.publish([first])
    await bus.publish([first])  # the broker delivers it again
    if bus.get_stats()["handler_errors"]:
        return [
            Problem(
                "your handle() raised an error (the bus logged it, with its traceback)",
                "call it yourself on one event to see why: await RevenueProjection().handle(event)",
            )
        ]
    revenue, count = _state(handler)
    if (revenue, count) != (100.0, 1):
        return [
            Problem(
                f"the same OrderPlaced delivered twice was counted twice: total_revenue is "
                f"{revenue!r} and order_count {count!r}; expected 100.0 and 1",
                "remember the event_id of every event you have handled (a set) and return "
                "early when one comes again",
            )
        ]
    second = OrderPlaced(aggregate_id=uuid4(), customer_name="Alice", total_amount=100.0)
    await bus.publish([second])
    revenue, count = _state(handler)
    if (revenue, count) != (200.0, 2):
        return [
            Problem(
                f"a second, different order by Alice of 100.0 was not counted: total_revenue "
                f"is {revenue!r} and order_count {count!r}; expected 200.0 and 2",
                "two events with the same content are still two events: deduplicate on "
                "event.event_id, never on what the event says",
            )
        ]
    return []


async def _on_redis(handler_class: type) -> tuple[list[Problem], str]:
    """Redeliver for real: a consumer handles an event and dies before its XACK; a second
    consumer of the group claims the event and handles it again."""
    from ..bus import RedisEventBus, RedisEventBusConfig

    try:
        broker = await brokers.astart("redis")
    except BrokerUnavailableError as error:
        first_reason = error.reasons[0] if getattr(error, "reasons", None) else str(error)
        return [], (
            "the Redis part was skipped: no Redis could be started here "
            f"({first_reason}). The in-memory redelivery is the same test; run this again "
            "where `python -m eventsource_lab brokers doctor` finds Redis to see it on a broker."
        )
    prefix = f"exercise-{uuid4().hex[:8]}"

    def config(name: str) -> RedisEventBusConfig:
        return RedisEventBusConfig(
            redis_url=broker.url,
            stream_prefix=prefix,
            consumer_group="revenue",
            consumer_name=name,
            pending_idle_ms=300,
            block_ms=100,
        )

    shared = handler_class()  # one read model, as a shared database would be
    handled_once = asyncio.Event()

    class DiesBeforeAck:
        async def handle(self, event: Any) -> None:
            await shared.handle(event)
            handled_once.set()
            await asyncio.Event().wait()  # hangs: the consumer is killed before its XACK

    dying, survivor = RedisEventBus(config("dies-before-ack")), RedisEventBus(config("survivor"))
    redelivered = Recorder("survivor")
    try:
        with quiet_bus_logs():
            dying.subscribe(OrderPlaced, DiesBeforeAck())
            await dying.start_consuming()
            event = OrderPlaced(aggregate_id=uuid4(), customer_name="Bob", total_amount=40.0)
            await dying.publish([event])
            await asyncio.wait_for(handled_once.wait(), TIMEOUT)
            dying.start_consuming_in_background().cancel()  # kill the consumer mid-work
            survivor.subscribe(OrderPlaced, shared)
            survivor.subscribe(OrderPlaced, redelivered)
            await survivor.start_consuming()
            await redelivered.wait_for(1, TIMEOUT)
    finally:
        for bus in (dying, survivor):
            await bus.shutdown()
        await broker.astop()
    revenue, count = _state(shared)
    if (revenue, count) != (40.0, 1):
        return [
            Problem(
                f"on Redis, a consumer died after handling Bob's order but before its XACK; "
                f"the survivor got the order again and your handler counted it again "
                f"(total_revenue {revenue!r}, order_count {count!r}; expected 40.0 and 1)",
                "the same event_id check that protects you in memory protects you here",
            )
        ], ""
    return [], (
        "on Redis too: a consumer died after handling Bob's order but before acknowledging "
        "it; the survivor claimed and delivered it again, and your handler counted it once."
    )


@exercise(
    NAME,
    "Make a handler idempotent",
    "ex03_idempotent_handler",
    after="07_13b_redis_failures",
)
async def check_idempotent(handler_class: type, redis: bool = True) -> Feedback:
    """``handler_class``: keeps ``total_revenue`` and ``order_count``; ``redis=False`` skips
    the run on a real Redis."""
    problems = await _in_memory(handler_class)
    if problems:
        return failed(NAME, problems)
    notes = []
    if redis:
        problems, note = await _on_redis(handler_class)
        if problems:
            return failed(NAME, problems)
        notes.append(note)
    return passed(
        NAME,
        "Broker buses deliver at least once: an event comes again whenever a consumer dies "
        "between handling and acknowledging it. Your handler remembers which event_ids it "
        "has counted, so a redelivery changes nothing.",
        notes,
    )
