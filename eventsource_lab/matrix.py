"""The conformance matrix: every behaviour, and a few telling probes, run on every bus there is.

``python -m eventsource_lab conformance`` prints it: one row per behaviour, one column per bus,
each cell "holds" or "differs" with one line on how. It is the data behind "choosing a bus".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol
from uuid import UUID, uuid4

from .bus import BrokerEventBus, EventBus, InMemoryEventBus
from .conformance import BEHAVIOURS, ProbePlaced, placed
from .testing import Recorder, eventually

__all__ = [
    "BUSES",
    "PROBES",
    "Cell",
    "Matrix",
    "NotApplicable",
    "bus_factory",
    "format_table",
    "run_conformance",
    "run_matrix",
]

BUSES = ("memory", "redis", "rabbitmq", "kafka")
PROBE_TIMEOUT = 5.0


class MakeBus(Protocol):
    """Make a started bus in a namespace shared by one check (same streams, topics, exchange)."""

    def __call__(self, group: str = "default") -> Awaitable[EventBus]: ...


class NotApplicable(Exception):
    """Raised by a probe whose situation cannot arise on a bus (no consumer groups, no retries);
    its message says what the bus does instead."""


Check = Callable[[MakeBus], Awaitable[str | None]]
"""A probe's check: raises ``AssertionError`` saying how the bus differs, ``NotApplicable``, or
returns what it saw where the claim holds (``None`` if nothing worth keeping)."""


@dataclass(frozen=True)
class Probe:
    """A claim about how buses differ, checked with as many buses as it needs."""

    name: str
    claim: str
    check: Check


PROBES: list[Probe] = []


def _probe(claim: str) -> Callable[[Check], Probe]:
    def register(check: Check) -> Probe:
        probe = Probe(check.__name__, claim, check)
        PROBES.append(probe)
        return probe

    return register


@_probe("publish returns after the handlers ran")
async def publish_waits_for_handlers(make: MakeBus) -> None:
    bus = await make()
    done: list[Any] = []

    async def slow(event: Any) -> None:
        await asyncio.sleep(0.05)
        done.append(event)

    bus.subscribe(ProbePlaced, slow)
    await bus.publish([placed()])
    assert done, "publish returns once the broker has the event; handlers run later"


@_probe("events of different aggregates arrive in publish order")
async def keeps_global_order(make: MakeBus) -> None:
    bus = await make()
    recorder = Recorder()
    bus.subscribe(ProbePlaced, recorder)
    events = [placed(customer=f"c{i}") for i in range(40)]
    await bus.publish(events)
    received = await recorder.wait_for(40, PROBE_TIMEOUT)
    assert recorder.ids == [e.event_id for e in events], (
        f"order is kept per aggregate only ({_first_swap(received, events)})"
    )


@_probe("another consumer group (another service) gets every event too")
async def groups_each_get_everything(make: MakeBus) -> None:
    publisher, other = await make("publisher"), await make("other-service")
    recorder = Recorder()
    other.subscribe(ProbePlaced, recorder)
    await publisher.publish([placed() for _ in range(5)])
    try:
        await recorder.wait_for(5, PROBE_TIMEOUT)
    except AssertionError:
        raise AssertionError("only the publishing bus's own handlers see its events") from None


@_probe("consumers of one group share the events, each handled once")
async def group_shares_the_work(make: MakeBus) -> None:
    publisher = await make("publisher")
    first, second = await make("workers"), await make("workers")
    recorders = [Recorder("first"), Recorder("second")]
    first.subscribe(ProbePlaced, recorders[0])
    second.subscribe(ProbePlaced, recorders[1])
    events = [placed() for _ in range(20)]
    await publisher.publish(events)
    with contextlib.suppress(AssertionError):
        await eventually(lambda: sum(len(r.events) for r in recorders) >= 20, PROBE_TIMEOUT)
    ids = [i for r in recorders for i in r.ids]
    assert ids, "there are no consumer groups: no other bus receives the events"
    assert sorted(ids) == sorted(e.event_id for e in events), f"{len(ids)} deliveries for 20"


@_probe("events published while the consumer is down arrive when it is back")
async def keeps_events_for_a_stopped_consumer(make: MakeBus) -> None:
    consumer = await make("durable")
    if not isinstance(consumer, BrokerEventBus):
        raise AssertionError("nothing holds events for a consumer that is not running")
    recorder = Recorder()
    consumer.subscribe(ProbePlaced, recorder)
    await consumer.stop_consuming()
    await (await make("publisher")).publish([placed() for _ in range(3)])
    await consumer.start_consuming()
    await recorder.wait_for(3, PROBE_TIMEOUT)


@_probe("a handler that fails once is retried and succeeds")
async def retries_a_failing_handler(make: MakeBus) -> None:
    bus = await make()
    attempts: list[int] = []

    async def flaky(event: Any) -> None:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("first attempt fails")

    bus.subscribe(ProbePlaced, flaky)
    await bus.publish([placed()])
    with contextlib.suppress(AssertionError):
        await eventually(lambda: len(attempts) >= 2, PROBE_TIMEOUT)
    assert len(attempts) >= 2, "a failed handler is logged and counted, never retried"


@_probe("a message that keeps failing lands in a dead-letter queue")
async def dead_letters_poison(make: MakeBus) -> None:
    bus = await make()
    if not isinstance(bus, BrokerEventBus):
        raise AssertionError("no dead-letter queue: failures are logged and counted")

    def poison(event: Any) -> None:
        raise RuntimeError("always fails")

    bus.subscribe(ProbePlaced, poison)
    await bus.publish([placed()])
    with contextlib.suppress(AssertionError):
        await eventually(bus.get_dlq_messages, PROBE_TIMEOUT)
    assert await bus.get_dlq_messages(), "the failing message is not in the DLQ"


ORDER_AGGREGATES = 25
"""Aggregates in the ordering probes: enough that Kafka's partitions go to both consumers."""
ORDER_VERSIONS = 8
HANDLER_SECONDS = {"slow": 0.03, "fast": 0.0}
"""What each consumer's handler takes per event, as a database write might: workers of a group
are never equally fast, and a large difference shows what that does on every run."""
ORDER_TIMEOUT = 30.0


def _aggregate_events() -> list[ProbePlaced]:
    """Each aggregate's events at versions 1..ORDER_VERSIONS, one aggregate after another."""
    return [
        ProbePlaced(aggregate_id=a, customer_name="c", total_amount=v, aggregate_version=v)
        for a in (uuid4() for _ in range(ORDER_AGGREGATES))
        for v in range(1, ORDER_VERSIONS + 1)
    ]


def _reordered(handled: Sequence[tuple[UUID, int]]) -> dict[UUID, tuple[int, int]]:
    """Aggregates whose events were handled out of version order: for each, the first version
    handled after a later one, and that later one."""
    highest: dict[UUID, int] = {}
    found: dict[UUID, tuple[int, int]] = {}
    for aggregate, version in handled:
        top = highest.get(aggregate, 0)
        if version < top:
            found.setdefault(aggregate, (version, top))
        highest[aggregate] = max(top, version)
    return found


@_probe("one aggregate's events are handled in order by a group of two consumers")
async def keeps_aggregate_order_in_a_group(make: MakeBus) -> str:
    """Two workers share a group (as the shipping workers of 07.13-07.15), one slow, one fast;
    each aggregate's events are published one by one, and the versions must come out in order."""
    publisher = await make("publisher")
    workers = {"slow": await make("workers"), "fast": await make("workers")}
    handled: list[tuple[UUID, int, str]] = []

    def worker(name: str, delay: float) -> Callable[[Any], Awaitable[None]]:
        async def project(event: Any) -> None:
            await asyncio.sleep(delay)  # the handler's work, e.g. a slow database write
            handled.append((event.aggregate_id, event.aggregate_version, name))

        return project

    for name, bus in workers.items():
        bus.subscribe(ProbePlaced, worker(name, HANDLER_SECONDS[name]))
    events = _aggregate_events()
    for event in events:  # one command at a time, as an application saves them
        await publisher.publish([event])
    if isinstance(publisher, BrokerEventBus):
        with contextlib.suppress(AssertionError):
            await eventually(lambda: len(handled) >= len(events), ORDER_TIMEOUT)
    if not handled:  # nothing reached the workers: the bus has no groups (in-memory)
        raise NotApplicable(
            "no consumer groups: the publishing process runs every handler itself, inside "
            "publish(), in publish order"
        )
    assert len(handled) == len(events), f"{len(handled)} of {len(events)} events handled"
    by_worker = {name: sum(1 for *_, w in handled if w == name) for name in workers}
    if not all(by_worker.values()):
        raise AssertionError(f"the group did not share the work ({by_worker}): nothing shown")
    split = {a for a, *_ in handled if len({w for b, _, w in handled if b == a}) > 1}
    reordered = _reordered([(a, v) for a, v, _ in handled])
    shares = f"the slow consumer handled {by_worker['slow']}, the fast one {by_worker['fast']}"
    if reordered:
        version, later = next(iter(reordered.values()))
        raise AssertionError(
            f"{len(reordered)} of {ORDER_AGGREGATES} aggregates were handled out of order "
            f"(e.g. v{version} after v{later}): {len(split)} had their events split between "
            f"the two consumers; {shares} of {len(events)} events"
        )
    return (
        f"all {ORDER_AGGREGATES} aggregates in order, {len(split)} of them split between the "
        f"consumers; {shares} of {len(events)} events"
    )


@_probe("one aggregate's events are handled in order when one of them is retried")
async def keeps_aggregate_order_after_a_retry(make: MakeBus) -> str:
    """One consumer; each aggregate's version 2 fails once: does version 3 wait for its retry?"""
    bus = await make()
    handled: list[tuple[UUID, int]] = []
    failed: set[UUID] = set()

    async def project(event: Any) -> None:
        if event.aggregate_version == 2 and event.event_id not in failed:
            failed.add(event.event_id)
            raise RuntimeError("version 2 fails on its first attempt")
        handled.append((event.aggregate_id, event.aggregate_version))

    bus.subscribe(ProbePlaced, project)
    events = _aggregate_events()
    await bus.publish(events)
    if isinstance(bus, BrokerEventBus):
        with contextlib.suppress(AssertionError):
            await eventually(lambda: len(handled) >= len(events), ORDER_TIMEOUT)
    elif len(handled) == len(events) - len(failed):  # handled inside publish(), all done
        raise NotApplicable(
            f"no retries: each failing event is skipped, so {len(failed)} of {len(events)} "
            "events never reach the handler (a gap in each aggregate, not a reordering)"
        )
    assert len(handled) == len(events), f"{len(handled)} of {len(events)} events handled"
    reordered = _reordered(handled)
    if reordered:
        version, later = next(iter(reordered.values()))
        raise AssertionError(
            f"{len(reordered)} of {ORDER_AGGREGATES} aggregates were handled out of order "
            f"(e.g. v{version} after v{later}): the retried event came back behind later ones"
        )
    return (
        f"all {ORDER_AGGREGATES} aggregates in order: each of the {len(failed)} failed events "
        "was retried before the next event of its aggregate was handled"
    )


def _first_swap(received: Sequence[Any], sent: Sequence[Any]) -> str:
    position = {e.event_id: i for i, e in enumerate(sent)}
    order = [position[e.event_id] for e in received]
    for i in range(1, len(order)):
        if order[i] < order[i - 1]:
            return f"event #{order[i]} arrived after #{order[i - 1]}"
    return "same order"


# -- running ----------------------------------------------------------------------------------


@dataclass
class Cell:
    """One bus on one behaviour."""

    outcome: str  # "holds" | "differs" | "n/a" (cannot arise on this bus) | "unavailable"
    note: str = ""


@dataclass
class Matrix:
    """Rows are behaviours and probes (name, claim); columns are buses."""

    rows: list[tuple[str, str]]
    buses: list[str]
    cells: dict[str, dict[str, Cell]] = field(default_factory=dict)

    def to_json(self) -> str:
        """The matrix as JSON, for notebooks and charts."""
        return json.dumps(
            {
                "rows": self.rows,
                "buses": self.buses,
                "cells": {
                    r: {b: asdict(c) for b, c in cols.items()} for r, cols in self.cells.items()
                },
            },
            indent=1,
        )


BusFactory = Callable[[str, str, int], EventBus]
"""``factory(namespace, group, max_retries)`` -> a new, not yet started bus."""


def bus_factory(bus: str, url: str | None) -> BusFactory:
    """How to make a bus of kind ``bus`` on the broker at ``url`` (``None`` for memory)."""
    if bus == "memory":
        return lambda namespace, group, max_retries: InMemoryEventBus()
    if bus == "redis":
        from .bus.redis import RedisEventBus, RedisEventBusConfig

        return lambda namespace, group, max_retries: RedisEventBus(
            RedisEventBusConfig(
                redis_url=url,
                stream_prefix=namespace,
                consumer_group=group,
                block_ms=100,
                pending_idle_ms=5000,
                max_retries=max_retries,
                retry_delay=0.02,
            )
        )
    if bus == "rabbitmq":
        from .bus.rabbitmq import RabbitMQEventBus, RabbitMQEventBusConfig

        return lambda namespace, group, max_retries: RabbitMQEventBus(
            RabbitMQEventBusConfig(
                rabbitmq_url=url,
                exchange_name=namespace,
                consumer_group=group,
                max_retries=max_retries,
                retry_delay=0.02,
            )
        )
    if bus == "kafka":
        from .bus.kafka import KafkaEventBus, KafkaEventBusConfig

        return lambda namespace, group, max_retries: KafkaEventBus(
            KafkaEventBusConfig(
                bootstrap_servers=url,
                topic_prefix=namespace,
                consumer_group=group,
                max_retries=max_retries,
                retry_delay=0.02,
            )
        )
    raise ValueError(f"unknown bus {bus!r}; choose from {', '.join(BUSES)}")


@contextlib.asynccontextmanager
async def _namespace(factory: BusFactory, max_retries: int) -> AsyncIterator[MakeBus]:
    """A fresh namespace; every bus made in it is shut down at the end."""
    namespace = f"matrix-{uuid4().hex[:8]}"
    made: list[EventBus] = []

    async def make(group: str = "default") -> EventBus:
        bus = factory(namespace, group, max_retries)
        made.append(bus)
        await bus.connect()
        if isinstance(bus, BrokerEventBus):
            await bus.start_consuming()
        return bus

    try:
        yield make
    finally:
        for bus in made:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(bus.shutdown(timeout=2), 15)


async def _run_cell(factory: BusFactory, check: Check, max_retries: int) -> Cell:
    try:
        async with _namespace(factory, max_retries) as make:
            seen = await asyncio.wait_for(check(make), 90)
    except NotApplicable as exc:
        return Cell("n/a", str(exc))
    except AssertionError as exc:
        return Cell("differs", str(exc).splitlines()[0] if str(exc) else "assertion failed")
    except Exception as exc:
        return Cell("differs", f"{type(exc).__name__}: {exc}".splitlines()[0])
    return Cell("holds", seen or "")


def _on_one_bus(check: Callable[[EventBus], Awaitable[None]]) -> Check:
    async def run(make: MakeBus) -> None:
        await check(await make())

    return run


async def run_matrix(
    factories: dict[str, BusFactory | str],
    progress: Callable[[str, str, Cell], None] | None = None,
) -> Matrix:
    """Run every behaviour and probe on each bus; a factory given as a string marks the bus
    unavailable, with that string as the reason."""
    # The behaviours run with retries off, as the conformance suite does; the probes with one.
    checks = [(b.name, b.claim, _on_one_bus(b.check), 0) for b in BEHAVIOURS]
    checks += [(p.name, p.claim, p.check, 1) for p in PROBES]
    matrix = Matrix(rows=[(name, claim) for name, claim, *_ in checks], buses=list(factories))
    for name, _, check, max_retries in checks:
        matrix.cells[name] = {}
        for bus, factory in factories.items():
            if isinstance(factory, str):
                cell = Cell("unavailable", factory)
            else:
                cell = await _run_cell(factory, check, max_retries)
            matrix.cells[name][bus] = cell
            if progress is not None:
                progress(name, bus, cell)
    return matrix


def format_table(matrix: Matrix) -> str:
    """The matrix as text: a table, then one numbered line per difference."""
    width = max(len(name) for name, _ in matrix.rows)
    lines = [f"{'behaviour':<{width}}  " + "  ".join(f"{b:<12}" for b in matrix.buses)]
    notes: dict[str, int] = {}
    for name, _ in matrix.rows:
        cells = []
        for bus in matrix.buses:
            cell = matrix.cells[name][bus]
            label = cell.outcome
            if cell.outcome != "holds":
                key = (
                    f"{bus}: {cell.note}"
                    if cell.outcome == "unavailable"
                    else (f"{bus} {name}: {cell.note}")
                )
                label += f" [{notes.setdefault(key, len(notes) + 1)}]"
            cells.append(f"{label:<12}")
        lines.append(f"{name:<{width}}  " + "  ".join(cells).rstrip())
    lines.append("")
    lines += [f"[{number}] {note}" for note, number in notes.items()]
    return "\n".join(lines)


async def run_conformance(buses: Sequence[str]) -> tuple[str, str]:
    """Start a broker for each broker bus (through the launcher), run the matrix, stop them;
    return the table as text and the matrix as JSON."""
    from .brokers import BrokerUnavailableError, astart

    unknown = set(buses) - set(BUSES)
    if unknown:
        raise ValueError(
            f"unknown bus {', '.join(sorted(unknown))}; choose from {', '.join(BUSES)}"
        )
    async with contextlib.AsyncExitStack() as stack:
        factories: dict[str, BusFactory | str] = {}
        for bus in buses:
            if bus == "memory":
                factories[bus] = bus_factory(bus, None)
                continue
            try:
                broker = await astart(bus)
            except BrokerUnavailableError as exc:
                factories[bus] = f"unavailable ({exc.reasons[-1] if exc.reasons else exc})"
                continue
            await stack.enter_async_context(broker)
            factories[bus] = bus_factory(bus, broker.url)
        matrix = await run_matrix(factories)
    return format_table(matrix), matrix.to_json()
