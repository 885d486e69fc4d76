"""The notebooks' recording handler: what it writes, and how its files are read back."""

from __future__ import annotations

import asyncio
import os
from uuid import uuid4

import pytest

from eventsource_lab import worker_log
from eventsource_lab.demo import OrderPlaced


@pytest.fixture
def log_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(worker_log.LOG_ENV, str(tmp_path))
    monkeypatch.delenv(worker_log.DELAY_ENV, raising=False)
    return tmp_path


def order(version: int = 1) -> OrderPlaced:
    return OrderPlaced(
        aggregate_id=uuid4(), aggregate_version=version, customer_name="A", total_amount=1.0
    )


async def test_record_writes_a_line_per_event_in_handling_order(log_dir):
    events = [order(1), order(2), order(3)]
    for event in events:
        await worker_log.record(event)

    records = worker_log.handled(log_dir)

    assert [r.event_id for r in records] == [e.event_id for e in events]
    assert {r.pid for r in records} == {os.getpid()}
    assert [r.aggregate_version for r in records] == [1, 2, 3]
    assert records[0].event_type == "OrderPlaced"
    assert records[0].aggregate_id == events[0].aggregate_id


async def test_duplicates_and_missing_are_counted_by_event_id(log_dir):
    a, b, c = order(), order(), order()
    for event in (a, b, a, a):
        await worker_log.record(event)

    records = worker_log.handled(log_dir)

    assert worker_log.duplicates(records) == {a.event_id: 3}
    assert worker_log.missing([a, b, c], records) == [c]


async def test_a_line_cut_short_by_a_kill_is_skipped(log_dir):
    await worker_log.record(order())
    with (log_dir / "12345.log").open("a") as out:
        out.write(f"{uuid4()} {uuid4()} 1 OrderPla")  # the worker died mid-write

    assert len(worker_log.handled(log_dir)) == 1


async def test_the_delay_plays_a_handlers_work(log_dir, monkeypatch):
    monkeypatch.setenv(worker_log.DELAY_ENV, "0.05")
    loop = asyncio.get_running_loop()
    started = loop.time()
    await worker_log.record(order())
    assert loop.time() - started >= 0.05


async def test_without_a_log_directory_the_handler_fails_loudly(monkeypatch):
    monkeypatch.delenv(worker_log.LOG_ENV, raising=False)
    with pytest.raises(KeyError, match=worker_log.LOG_ENV):
        await worker_log.record(order())
