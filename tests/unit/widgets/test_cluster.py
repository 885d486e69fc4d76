"""ClusterView with fake worker handles: rows, rates between refreshes, buttons that signal or
spawn, the backlog beside them, the refresh task and the static snapshot."""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace
from typing import Any

import ipywidgets
import pytest

from eventsource_lab.widgets.cluster import ClusterView
from tests.support.waiting import eventually


class FakeWorker:
    """A worker handle whose counters and state the test sets; kill/terminate are recorded."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.state = "running"
        self.counters = {"events_processed": 0, "events_failed": 0}
        self.signals: list[str] = []

    def stats(self) -> dict[str, int]:
        return dict(self.counters)

    def kill(self) -> None:
        self.signals.append("kill")
        self.state = "killed"

    def terminate(self) -> None:
        self.signals.append("terminate")
        self.state = "stopped"


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeBus:
    """Just what the view asks of a bus: its group and ``get_backlog()``."""

    def __init__(self) -> None:
        self.config = SimpleNamespace(consumer_group="g")
        self.backlog: dict[str, int | None] | Exception = {"pending": 7, "dlq": 1}
        self.asked = 0

    async def get_backlog(self) -> dict[str, int | None]:
        self.asked += 1
        if isinstance(self.backlog, Exception):
            raise self.backlog
        return self.backlog


def buttons(view: ClusterView, index: int) -> dict[str, Any]:
    """The terminate and kill buttons of row ``index``, by description."""
    box = view._list.children[index + 1]  # the first child is the header
    return {child.description: child for child in box.children if hasattr(child, "on_click")}


async def test_a_row_per_worker_with_rates_between_refreshes() -> None:
    clock, first, second = FakeClock(), FakeWorker(101), FakeWorker(102)
    view = ClusterView([first, second], clock=clock)
    assert [r["pid"] for r in view.rows] == [101, 102]
    assert [r["rate"] for r in view.rows] == [None, None]  # one sample: no rate yet

    first.counters = {"events_processed": 30, "events_failed": 2}
    second.counters["events_processed"] = 10
    clock.now += 2.0
    await view.refresh()
    assert view.rows == [
        {"pid": 101, "state": "running", "handled": 30, "rate": 15.0, "failures": 2},
        {"pid": 102, "state": "running", "handled": 10, "rate": 5.0, "failures": 0},
    ]
    clock.now += 1.0
    first.counters["events_processed"] = 33
    await view.refresh()
    assert [r["rate"] for r in view.rows] == [3.0, 0.0]
    await view.refresh()  # no time passed: the rates are kept, not divided by zero
    assert [r["rate"] for r in view.rows] == [3.0, 0.0]
    cells = [c.value for c in view._list.children[1].children[:5]]
    assert cells[:4] == ["101", "running", "33", "3.0"] and "2" in cells[4]


async def test_the_buttons_terminate_kill_and_add() -> None:
    first, second, extra = FakeWorker(1), FakeWorker(2), FakeWorker(3)
    spawner_threads: list[threading.Thread] = []

    def spawner() -> list[FakeWorker]:
        spawner_threads.append(threading.current_thread())
        return [extra]

    view = ClusterView([first, second], spawner=spawner)
    buttons(view, 0)["terminate"].click()
    buttons(view, 1)["kill"].click()
    assert (first.signals, second.signals) == (["terminate"], ["kill"])
    assert [r["state"] for r in view.rows] == ["stopped", "killed"]
    assert buttons(view, 1)["kill"].disabled and buttons(view, 1)["terminate"].disabled

    view._add.click()
    await eventually(lambda: len(view.rows) == 3, 5.0, "a third row")
    assert view.workers == [first, second, extra]
    assert spawner_threads and spawner_threads[0] is not threading.main_thread()
    assert not buttons(view, 2)["kill"].disabled
    assert view.snapshot_html().count("<tr>") == 4  # header and three rows


async def test_a_failed_add_is_shown_and_a_view_without_spawner_cannot_add() -> None:
    def broken() -> list[FakeWorker]:
        raise RuntimeError("handler does not import")

    view = ClusterView([FakeWorker(1)], spawner=broken)
    view._add.click()
    await eventually(lambda: "handler does not import" in view._status.value, 5.0)
    assert len(view.rows) == 1

    fixed = ClusterView([FakeWorker(1)])
    assert fixed._add.disabled
    with pytest.raises(RuntimeError, match=r"ClusterView\.spawn"):
        await fixed.add_worker()


async def test_the_backlog_beside_the_rows() -> None:
    bus = FakeBus()
    view = ClusterView([FakeWorker(1)], bus=bus)
    assert view.backlog is None and "not read yet" in view._side.value
    await view.refresh()
    assert view.backlog == {"pending": 7, "dlq": 1}
    assert view._side.value == "group g backlog: pending 7, DLQ 1"
    bus.backlog = ConnectionError("broker gone")
    await view.refresh()
    assert view.backlog is None
    assert "unknown (ConnectionError: broker gone)" in view._side.value
    bus.backlog = {"pending": None, "dlq": 0}
    await view.refresh()
    assert "pending ?, DLQ 0" in view._side.value


async def test_start_refreshes_in_a_task_until_stop_cancels_it() -> None:
    worker, bus = FakeWorker(1), FakeBus()
    view = ClusterView([worker], bus=bus)
    task = view.start(0.01)
    worker.counters["events_processed"] = 5
    await eventually(lambda: view.rows[0]["handled"] == 5 and bus.asked >= 2, 5.0, "refreshes")
    assert view.start(0.01) is not task  # a second start replaces the first
    await eventually(task.done, 5.0)
    assert task.cancelled()
    second = view.task
    view.stop()
    assert view.task is None
    await eventually(second.done, 5.0)
    assert second.cancelled()
    asked = bus.asked
    await asyncio.sleep(0.05)  # long enough for several refreshes, were any still running
    assert bus.asked == asked
    with pytest.raises(ValueError, match="positive"):
        view.start(0)


async def test_close_cancels_the_refresh_task_and_keeps_the_last_frame() -> None:
    view = ClusterView([FakeWorker(1)], bus=FakeBus())
    task = view.start(0.01)
    await eventually(lambda: view.backlog is not None, 5.0)
    view.close()
    await eventually(task.done, 5.0)
    assert task.cancelled()
    assert "pending 7" in view.snapshot_html()
    with pytest.raises(RuntimeError, match="closed"):
        view.start(1)


def test_start_needs_a_running_loop() -> None:
    with pytest.raises(RuntimeError, match="no running event loop"):
        ClusterView().start(1)


async def test_the_static_snapshot_as_html_and_text() -> None:
    clock, alive, dead = FakeClock(), FakeWorker(4242), FakeWorker(4343)
    view = ClusterView([alive, dead], bus=FakeBus(), clock=clock)
    alive.counters = {"events_processed": 12, "events_failed": 1}
    dead.state = "killed"
    clock.now += 4.0
    await view.refresh()
    html = view.snapshot_html()
    assert "<td style='padding:2px 8px'>4242</td>" in html and "3.0" in html
    assert "killed" in html and "group g backlog: pending 7, DLQ 1" in html
    bundle = view._repr_mimebundle_()
    assert bundle["text/html"] == html
    assert bundle["text/plain"].splitlines() == [
        "pid   state    handled  events/s  failures",
        "4242  running  12       3.0       1",
        "4343  killed   0        0.0       0",
        "group g backlog: pending 7, DLQ 1",
    ]
    assert repr(view) == "ClusterView(2 workers: 1 running, 1 killed)"
    assert "no workers" in ClusterView().snapshot_html()


def test_the_view_its_rows_and_backlog_carry_classes_a_page_can_find() -> None:
    view = ClusterView([FakeWorker(1), FakeWorker(2)], bus=FakeBus())
    assert "eventsource-lab-cluster" in view._dom_classes
    rows = [box for box in view._list.children if "eventsource-lab-worker" in box._dom_classes]
    assert [row.children[0].value for row in rows] == ["1", "2"]
    assert "eventsource-lab-backlog" in view._side._dom_classes


async def test_close_sends_every_row_again_so_a_saved_notebook_keeps_the_last_frame(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    worker = FakeWorker(7)
    view = ClusterView([worker], bus=FakeBus())
    await view.refresh()
    worker.state = "killed"
    await view.refresh()  # as the refresh task would, under an earlier cell
    sent: list[Any] = []
    monkeypatch.setattr(ipywidgets.Widget, "send_state", lambda self, key=None: sent.append(self))
    view.close()
    row = view._list.children[1]
    assert row.children[1].value == "killed"
    assert {id(w) for w in (view, row, *row.children, view._side)} <= {id(w) for w in sent}
