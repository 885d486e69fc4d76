"""ClusterView over real worker processes on Redis: its rows follow the workers' own stats, the
kill button kills one, "add worker" spawns a third; no worker outlives the test."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from eventsource_lab import worker_log
from eventsource_lab.bus import RedisEventBus, RedisEventBusConfig
from eventsource_lab.widgets import ClusterView
from tests.support.processes import end_workers
from tests.support.scenarios import orders
from tests.support.waiting import eventually

HANDLER = "eventsource_lab.worker_log:record"
HANDLER_ENV = {worker_log.DELAY_ENV: "0.005"}  # a real handler's work
WAIT = 30.0


@pytest.fixture
async def views() -> AsyncIterator[list[ClusterView]]:
    """Views made by a test; at teardown each is closed, every worker it shows (added ones
    too) stopped, and each pid checked gone."""
    made: list[ClusterView] = []
    yield made
    started = [worker for view in made for worker in view.workers]
    for view in made:
        view.close()
    end_workers(started, WAIT)


def _row_button(view: ClusterView, index: int, description: str) -> Any:
    box = view._list.children[index + 1]  # after the header
    return next(c for c in box.children if getattr(c, "description", None) == description)


def refreshed(view: ClusterView, check: Callable[[], bool]) -> Callable[[], Any]:
    """A condition for ``eventually`` that refreshes the view before each ``check``."""

    async def condition() -> bool:
        await view.refresh()
        return check()

    return condition


@pytest.mark.redis
async def test_the_view_follows_kills_and_adds_real_workers(
    redis_broker, views, tmp_path: Path
) -> None:
    options = {"stream_prefix": f"cv-{uuid4().hex[:8]}", "block_ms": 100, "batch_size": 10}
    bus = RedisEventBus(
        RedisEventBusConfig(
            redis_url=redis_broker.url,
            stream_prefix=options["stream_prefix"],
            consumer_group="g",
        )
    )
    try:
        view = ClusterView.spawn(
            "redis",
            "g",
            HANDLER,
            count=2,
            url=redis_broker.url,
            options=options,
            env={**HANDLER_ENV, worker_log.LOG_ENV: str(tmp_path)},
            imports=["tests.support.events"],
            ready_timeout=WAIT,
            bus=bus,
        )
        views.append(view)
        pids = [w.pid for w in view.workers]
        assert len(set(pids)) == 2

        view.start(0.1)  # the live refresh task does the updating from here
        await eventually(
            lambda: [r["state"] for r in view.rows] == ["running", "running"], WAIT, "running"
        )
        await bus.publish(orders(200))
        await eventually(
            lambda: sum(r["handled"] for r in view.rows) == 200, WAIT, "the view counts all 200"
        )
        await eventually(
            lambda: view.backlog == {"pending": 0, "dlq": 0}, WAIT, "the group's backlog empties"
        )
        view.stop()
        await view.refresh()
        logged = Counter(r.pid for r in worker_log.handled(tmp_path))
        for row, worker in zip(view.rows, view.workers, strict=True):
            assert row["handled"] == worker.stats()["events_processed"] == logged[row["pid"]]
            assert row["failures"] == 0 and row["rate"] is not None

        _row_button(view, 0, "kill").click()
        await eventually(
            refreshed(view, lambda: view.rows[0]["state"] == "killed"), WAIT, "a killed row"
        )
        assert view.workers[0].wait(WAIT) == -9
        assert view.rows[1]["state"] == "running"

        view._add.click()
        await eventually(lambda: len(view.rows) == 3, WAIT, "a third row after 'add worker'")
        await eventually(
            refreshed(view, lambda: view.rows[2]["state"] == "running"), WAIT, "the third runs"
        )
        assert view.rows[2]["pid"] not in pids
        assert "killed" in view.snapshot_text() and len(view.snapshot_text().splitlines()) == 5
    finally:
        await bus.shutdown(5)
