"""InMemoryEventBus beside two hand-written baselines, in one run.

20,000 events reach 4 handlers (2 subscribed to the type, 2 wildcards), published one per
``publish()`` and in batches of 100. Baselines call the same 4 handlers directly: awaiting them
one after another (no concurrency, no isolation) and ``asyncio.gather`` (concurrent, not isolated).
The last column is each case's time per event divided by ``asyncio.gather``'s for the same
handlers: below 1 is faster than gather (0.5: twice as fast), above 1 slower.
Run: ``python benchmarks/memory_bus.py`` (or ``make bench``).
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import time
from collections.abc import Awaitable, Callable
from uuid import uuid4

from eventsource_lab import DomainEvent, InMemoryEventBus


class BenchEvent(DomainEvent):
    event_type: str = "BenchEvent"
    n: int


def make_handlers(
    suspend: bool,
) -> tuple[list[Callable[[DomainEvent], Awaitable[None]]], list[int]]:
    counts = [0, 0, 0, 0]

    def make(i: int) -> Callable[[DomainEvent], Awaitable[None]]:
        async def handler(event: DomainEvent) -> None:
            if suspend:
                await asyncio.sleep(0)
            counts[i] += 1

        return handler

    return [make(i) for i in range(4)], counts


async def run_bus(events: list[DomainEvent], batch: int, suspend: bool) -> float:
    handlers, counts = make_handlers(suspend)
    bus = InMemoryEventBus()
    bus.subscribe(BenchEvent, handlers[0])
    bus.subscribe(BenchEvent, handlers[1])
    bus.subscribe_to_all_events(handlers[2])
    bus.subscribe_to_all_events(handlers[3])
    start = time.perf_counter()
    for i in range(0, len(events), batch):
        await bus.publish(events[i : i + batch])
    elapsed = time.perf_counter() - start
    assert counts == [len(events)] * 4, counts
    return elapsed


async def run_sequential(events: list[DomainEvent], batch: int, suspend: bool) -> float:
    handlers, counts = make_handlers(suspend)
    start = time.perf_counter()
    for event in events:
        for handler in handlers:
            await handler(event)
    elapsed = time.perf_counter() - start
    assert counts == [len(events)] * 4
    return elapsed


async def run_gather(events: list[DomainEvent], batch: int, suspend: bool) -> float:
    handlers, counts = make_handlers(suspend)
    start = time.perf_counter()
    for event in events:
        await asyncio.gather(*(handler(event) for handler in handlers))
    elapsed = time.perf_counter() - start
    assert counts == [len(events)] * 4
    return elapsed


async def best_of(repeats: int, runner, *args) -> float:
    return min([await runner(*args) for _ in range(repeats)])


async def main(count: int, repeats: int) -> list[tuple[str, float]]:
    events: list[DomainEvent] = [BenchEvent(aggregate_id=uuid4(), n=i) for i in range(count)]
    rows: list[tuple[str, float]] = []
    for suspend in (False, True):
        kind = "handlers that suspend" if suspend else "handlers that finish at once"
        for label, runner, batch in (
            ("await one after another", run_sequential, 1),
            ("asyncio.gather", run_gather, 1),
            ("InMemoryEventBus, publish([e])", run_bus, 1),
            ("InMemoryEventBus, batches of 100", run_bus, 100),
        ):
            seconds = await best_of(repeats, runner, events, batch, suspend)
            rows.append((f"{kind}: {label}", seconds / count * 1e6))
    return rows


def report(rows: list[tuple[str, float]]) -> str:
    lines = [f"{'case':<70} {'µs/event':>9} {'vs gather':>9}"]
    for kind_rows in (rows[:4], rows[4:]):
        gather = kind_rows[1][1]
        for name, micros in kind_rows:
            lines.append(f"{name:<70} {micros:>9.2f} {micros / gather:>9.2f}")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(
        f"Python {platform.python_version()}: {args.events} events, 4 handlers "
        f"(2 typed + 2 wildcard), best of {args.repeats}; vs gather: time ÷ gather's (<1 is faster)"
    )
    print(report(asyncio.run(main(args.events, args.repeats))))
