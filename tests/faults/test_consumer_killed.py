"""A consumer killed in the middle of a batch: its group loses nothing.

Consumer A of group ``g`` handles a batch slowly and dies in the middle of it: its task is
cancelled from outside (not ``stop_consuming()``), or its process is killed with SIGKILL. Consumer
B of the same group then gets what A had not finished: on Redis by taking over A's pending
messages once idle (``pending_idle_ms``), on RabbitMQ because the broker requeues what a closed
channel held, on Kafka by a rebalance from the last committed offsets. Events A handled but had
not acknowledged come again to B, with the same event_id; none is missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from pathlib import Path
from typing import Any
from uuid import UUID

from eventsource_lab.bus import BrokerEventBus, KafkaEventBus
from tests.faults._support import assert_alive, assert_at_least_once, assert_counted, counted
from tests.faults.conftest import Kit
from tests.support.events import OrderPlaced
from tests.support.scenarios import eventually_async, orders
from tests.support.waiting import Recorder

N = 20
HANDLING = 0.3  # seconds per event in A's handler
WAIT = 45.0  # Kafka: A's leave (or its session timing out, 6 s) and B's join, ~5 s each on tansu
ROOT = Path(__file__).resolve().parents[2]


def _overrides(kind: str) -> dict[str, Any]:
    """Redis: B takes over A's pending messages after 0.5 s idle."""
    return {"pending_idle_ms": 500} if kind == "redis" else {}


async def _wait_for(count: int, ids: list[UUID], timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while len(ids) < count:
        assert loop.time() < deadline, f"only {len(ids)} of {count} handled in {timeout}s"
        await asyncio.sleep(0.01)


async def _assert_b_took_over(
    b: BrokerEventBus, events: list[OrderPlaced], a_ids: list[UUID], recorder: Recorder
) -> None:
    """Between them A and B handled every event (a duplicate carries the same event_id); B
    handled each at most once, nothing failed or was dead-lettered, and nothing is left."""
    everything = {e.event_id for e in events}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while not everything <= {*a_ids, *recorder.ids}:
        missing = len(everything - {*a_ids, *recorder.ids})
        assert loop.time() < deadline, f"{missing} events lost with consumer A"
        assert b.consumer_error is None, f"B stopped: {b.consumer_error!r}"
        await asyncio.sleep(0.02)
    if not isinstance(b, KafkaEventBus):  # Kafka gives no reliable count of what is left
        await eventually_async(b.get_backlog, lambda x: x["pending"] == 0, timeout=WAIT)
    b_ids = recorder.ids
    assert_at_least_once([*a_ids, *b_ids], list(everything))
    assert len(set(b_ids)) == len(b_ids), "B handled an event twice"
    assert_alive(b)
    await assert_counted(
        b,
        {
            "events_consumed": len(b_ids),
            "events_processed": len(b_ids),
            "events_failed": 0,
            "messages_dead_lettered": 0,
            "handler_errors": 0,
        },
    )
    assert len(a_ids) < N, "A finished the whole batch before it was killed"
    assert await b.get_dlq_messages() == []


async def test_a_consumer_task_cancelled_mid_batch_loses_nothing(kit: Kit) -> None:
    events = orders(N, "cancelled")
    a = kit.make(consumer_group="g", **_overrides(kit.kind))
    a_ids: list[UUID] = []

    async def slow(event: OrderPlaced) -> None:
        await asyncio.sleep(HANDLING)
        a_ids.append(event.event_id)

    a.subscribe(OrderPlaced, slow)
    await a.start_consuming()
    await kit.make(consumer_group="publisher").publish(events)
    await _wait_for(2, a_ids, timeout=WAIT)  # A is in the middle of its batch

    task = a.start_consuming_in_background()  # the running loop's task
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=WAIT)
    assert done, "A's consumer task did not end after cancel()"
    assert isinstance(a.consumer_error, asyncio.CancelledError)
    assert not a.is_consuming
    stats = counted(a)  # a handler may finish just as the task is cancelled: not counted then
    assert stats["events_processed"] <= len(a_ids) <= stats["events_consumed"]
    assert (stats["events_failed"], stats["messages_dead_lettered"], stats["handler_errors"]) == (
        0,
        0,
        0,
    )

    b = kit.make(consumer_group="g", **_overrides(kit.kind))
    recorder = Recorder("B")
    b.subscribe(OrderPlaced, recorder)
    await b.start_consuming()
    await _assert_b_took_over(b, events, a_ids, recorder)


async def test_a_consumer_process_killed_mid_batch_loses_nothing(kit: Kit) -> None:
    events = orders(N, "killed")
    b = kit.make(consumer_group="g", **_overrides(kit.kind))
    config = b.config.model_dump(mode="json") | {"consumer_name": "killed-consumer"}
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.faults._killed_consumer",
        kit.kind,
        json.dumps(config),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    a_ids: list[UUID] = []
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(child.stdout.readline(), WAIT)
        assert line == b"ready\n", f"the consumer process said {line!r}"
        await kit.make(consumer_group="publisher").publish(events)
        while len(a_ids) < 2:  # A is in the middle of its batch
            line = await asyncio.wait_for(child.stdout.readline(), WAIT)
            assert line.startswith(b"handled "), f"the consumer process said {line!r}"
            a_ids.append(UUID(line.split()[1].decode()))
        child.send_signal(signal.SIGKILL)
        await asyncio.wait_for(child.wait(), 10)
        rest = (await child.stdout.read()).splitlines()  # what it printed before it died
        a_ids += [UUID(line.split()[1].decode()) for line in rest]
    finally:
        if child.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                child.kill()
            await child.wait()
    assert child.returncode == -signal.SIGKILL

    recorder = Recorder("B")
    b.subscribe(OrderPlaced, recorder)
    await b.start_consuming()
    await _assert_b_took_over(b, events, a_ids, recorder)
