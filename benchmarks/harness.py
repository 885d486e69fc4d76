"""What the broker benchmarks share: best-of-N rates, the one-line report, the command line."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable

from eventsource_lab import DomainEvent
from eventsource_lab.brokers import start

BATCH = 100
"""Events per publish, in every benchmark and its baseline."""

Runner = Callable[[str, list[DomainEvent]], Awaitable[float]]
"""Publish ``events`` to the broker at the URL while a consumer takes them; return seconds."""

Main = Callable[[str, int, int], Awaitable[tuple[float, float]]]


RAW_SHAPES = 2
"""Timed runs inside one ``run_raw``: it tries both of the raw client's shapes (everything
produced, then consumed; both at once) and returns the faster."""


async def best_rates(
    url: str, events: list[DomainEvent], run_raw: Runner, run_bus: Runner, repeats: int
) -> tuple[float, float]:
    """Events per second of the raw client and of the bus, each the best of its timed runs.

    Both sides get the same number of timed runs (the raw client's two shapes count as two),
    as the best of more samples of a noisy machine is faster by itself; the runs alternate,
    so a machine that is busier for a while slows both alike."""
    raw, bus = [], []
    for _ in range(repeats):
        raw.append(await run_raw(url, events))
        bus.extend([await run_bus(url, events) for _ in range(RAW_SHAPES)])
    return len(events) / min(raw), len(events) / min(bus)


def report(
    kind: str, raw_name: str, bus_name: str, count: int, raw_rate: float, bus_rate: float
) -> str:
    """One line: both rates and the ratio that matters."""
    return (
        f"{kind:<9} {raw_name} {raw_rate:>9,.0f} ev/s   {bus_name} {bus_rate:>9,.0f} ev/s   "
        f"ratio {bus_rate / raw_rate:.2f}   ({count} events, batches of {BATCH})"
    )


def cli(doc: str, kind: str, main: Main, raw_name: str, bus_name: str, events: int = 5_000) -> None:
    """Run one benchmark from the command line on a broker the launcher starts."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--events", type=int, default=events)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with start(kind) as broker:
        raw_rate, bus_rate = asyncio.run(main(broker.url, args.events, args.repeats))
    print(report(kind, raw_name, bus_name, args.events, raw_rate, bus_rate))
