"""``make bench``: every bus beside its baseline on the same machine, in one run, one table.

Each broker bus runs against a broker the launcher starts (or the one its environment variable
names), beside its raw client on that same broker. The in-memory bus is compared with
``asyncio.gather`` over the same handlers.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import platform

import memory_bus

from eventsource_lab.brokers import BrokerUnavailableError, start

BROKER_BENCHES = {
    "redis": ("redis_bus", "redis-py, pipelined XADD + XREADGROUP/XACK"),
    "rabbitmq": ("rabbitmq_bus", "aio-pika, publisher confirms + prefetch"),
    "kafka": ("kafka_bus", "aiokafka send_batch + getmany/commit"),
}


def memory_row(repeats: int) -> tuple[str, str, float, float]:
    rows = dict(asyncio.run(memory_bus.main(20_000, repeats)))
    gather = rows["handlers that finish at once: asyncio.gather"]
    bus = rows["handlers that finish at once: InMemoryEventBus, publish([e])"]
    return ("memory", "asyncio.gather over the 4 handlers", 1e6 / gather, 1e6 / bus)


def broker_row(kind: str, events: int, repeats: int) -> tuple[str, str, float, float] | str:
    module_name, baseline = BROKER_BENCHES[kind]
    module = importlib.import_module(module_name)
    try:
        broker = start(kind)
    except BrokerUnavailableError as exc:
        return f"{kind}: no broker ({exc.reasons[-1] if exc.reasons else exc})"
    with broker:
        raw, bus = asyncio.run(module.main(broker.url, events, repeats))
    return (kind, baseline, raw, bus)


def table(rows: list[tuple[str, str, float, float] | str]) -> str:
    lines = [f"{'bus':<9} {'baseline':<46} {'baseline ev/s':>13} {'bus ev/s':>10} {'ratio':>6}"]
    for row in rows:
        if isinstance(row, str):
            lines.append(row)
            continue
        bus, baseline, raw, ours = row
        lines.append(f"{bus:<9} {baseline:<46} {raw:>13,.0f} {ours:>10,.0f} {ours / raw:>6.2f}")
    return "\n".join(lines)


def to_json(rows: list[tuple[str, str, float, float] | str]) -> str:
    """The rows as JSON, one object per bus, for the notebooks' charts."""
    kinds = ["memory", *BROKER_BENCHES]
    out: list[dict[str, object]] = []
    for kind, row in zip(kinds, rows, strict=True):
        if isinstance(row, str):
            out.append({"bus": kind, "unavailable": row})
            continue
        bus, baseline, raw, ours = row
        out.append(
            {
                "bus": bus,
                "baseline": baseline,
                "baseline_events_per_s": round(raw),
                "bus_events_per_s": round(ours),
                "ratio": round(ours / raw, 3),
            }
        )
    return json.dumps(out, indent=1) + "\n"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5_000, help="per broker bus")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    args = parser.parse_args()
    rows: list[tuple[str, str, float, float] | str] = [memory_row(args.repeats)]
    rows += [broker_row(kind, args.events, args.repeats) for kind in BROKER_BENCHES]
    print(f"Python {platform.python_version()}, best of {args.repeats}x2 timed runs a side")
    print(table(rows))
    if args.json:
        with open(args.json, "w") as out:
            out.write(to_json(rows))
