"""ClusterView: the worker processes of a consumer group, one row each (pid, state, events
handled, rate, failures) with terminate / kill buttons, an "add worker" button and the group's
backlog beside them, so scaling out and killing a worker can be watched from a notebook.

Spawning a worker waits for it to consume (a second or so), so it runs in a thread; reading the
workers' stats is cheap (their reports arrive by themselves); only the backlog is asked for.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

import ipywidgets as widgets

from .. import workers as worker_processes
from ..bus.broker import BrokerEventBus
from ._html import FAILED_COLOR, escape, snapshot, table
from ._live import LiveView

__all__ = ["ClusterView", "WorkerHandle"]

logger = logging.getLogger("eventsource_lab.widgets")

_BACKLOG_TIMEOUT = 5.0  # seconds a bus may take to report its backlog
_ENDED = ("stopped", "failed", "killed")
_COLUMNS = (("pid", "70px"), ("state", "80px"), ("handled", "80px"), ("events/s", "80px"))
_COLUMNS += (("failures", "70px"),)


class WorkerHandle(Protocol):
    """What the view needs of a worker: :class:`eventsource_lab.workers.Worker` has it."""

    @property
    def pid(self) -> int: ...

    @property
    def state(self) -> str: ...

    def stats(self) -> dict[str, int]: ...

    def terminate(self) -> None: ...

    def kill(self) -> None: ...


class _Row:
    """One worker: its last sampled counters, the rate between its last two samples, widgets."""

    def __init__(self, worker: WorkerHandle, on_click: Callable[[WorkerHandle, str], None]) -> None:
        self.worker = worker
        self.state = worker.state
        self.handled = self.failures = 0
        self.rate: float | None = None  # unknown until sampled twice
        self.taken: float | None = None
        self.cells = [widgets.HTML(layout=widgets.Layout(width=w)) for _, w in _COLUMNS]
        self.terminate = widgets.Button(description="terminate", tooltip="SIGTERM: graceful")
        self.kill = widgets.Button(description="kill", tooltip="SIGKILL", button_style="danger")
        for button, action in ((self.terminate, "terminate"), (self.kill, "kill")):
            button.layout.width = "90px"
            button.on_click(lambda _, action=action: on_click(worker, action))
        self.box = widgets.HBox([*self.cells, self.terminate, self.kill])
        self.box.add_class("eventsource-lab-worker")

    def sample(self, now: float) -> None:
        """Read the worker's counters; the rate is events handled per second since last time."""
        stats = self.worker.stats()
        handled = stats.get("events_processed", 0)
        if self.taken is not None and now > self.taken:
            self.rate = (handled - self.handled) / (now - self.taken)
        self.handled, self.failures, self.taken = handled, stats.get("events_failed", 0), now

    def values(self) -> dict[str, Any]:
        return {
            "pid": self.worker.pid,
            "state": self.state,
            "handled": self.handled,
            "rate": self.rate,
            "failures": self.failures,
        }

    def texts(self) -> list[str]:
        rate = "-" if self.rate is None else f"{self.rate:.1f}"
        return [str(self.worker.pid), self.state, str(self.handled), rate, str(self.failures)]

    def draw(self) -> None:
        self.state = self.worker.state
        for cell, text in zip(self.cells, self.texts(), strict=True):
            cell.value = escape(text)
        if self.failures:
            self.cells[-1].value = f"<span style='color:{FAILED_COLOR}'>{self.failures}</span>"
        self.terminate.disabled = self.kill.disabled = self.state in _ENDED


class ClusterView(LiveView):
    """A row per worker process of a group, with terminate / kill buttons, an "add worker"
    button and, given ``bus``, the group's backlog (``await bus.get_backlog()``).

    ``await refresh()`` updates once; ``start(interval)`` refreshes in a task until ``stop()``
    or ``close()``. ``ClusterView.spawn(...)`` starts the workers and keeps what spawning them
    took, so "add worker" starts one more of the same; the view never stops workers itself.

    Args:
        workers: the handles to show, e.g. what :func:`eventsource_lab.workers.spawn` returned.
        spawner: called (in a thread) by "add worker" for more handles; ``None`` disables it.
        bus: a bus of the workers' group whose backlog is shown beside them.
        clock: where time comes from (seconds, monotonic); tests pass a fake one.
    """

    def __init__(
        self,
        workers: Iterable[WorkerHandle] = (),
        *,
        spawner: Callable[[], Sequence[WorkerHandle]] | None = None,
        bus: BrokerEventBus | None = None,
        clock: Callable[[], float] = time.monotonic,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._spawner = spawner
        self._bus = bus
        self._clock = clock
        self._rows: list[_Row] = []
        self._backlog: dict[str, int | None] | None = None
        self._backlog_error: str | None = None
        self._adding = 0
        self._error: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._actions: set[asyncio.Task[Any]] = set()
        header = [
            widgets.HTML(f"<b>{escape(n)}</b>", layout=widgets.Layout(width=w)) for n, w in _COLUMNS
        ]
        self._list = widgets.VBox([widgets.HBox(header)])
        self._add = widgets.Button(description="add worker", icon="plus", button_style="success")
        self._add.on_click(lambda _: self._run(self.add_worker()))
        self._status = widgets.HTML()
        self._side = widgets.HTML(layout=widgets.Layout(margin="0 0 0 24px"))
        self._side.add_class("eventsource-lab-backlog")
        controls = widgets.HBox([self._add, self._status])
        self.children = [widgets.HBox([widgets.VBox([self._list, controls]), self._side])]
        self.add_class("eventsource-lab-cluster")  # how a page (and the browser test) finds it
        self._on_close(self.stop)
        self._add_rows(workers)

    @classmethod
    def spawn(
        cls,
        kind: str,
        group: str,
        handler: str,
        /,
        *,
        count: int = 1,
        url: str | None = None,
        options: Mapping[str, Any] | None = None,
        imports: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        ready_timeout: float = 30.0,
        bus: BrokerEventBus | None = None,
    ) -> ClusterView:
        """Spawn ``count`` workers (see :func:`eventsource_lab.workers.spawn`, which blocks until
        they consume) and a view of them whose "add worker" spawns one more of the same."""
        spawner = functools.partial(
            worker_processes.spawn,
            kind,
            group,
            handler,
            url=url,
            options=options,
            imports=imports,
            env=env,
            ready_timeout=ready_timeout,
        )
        return cls(spawner(count=count), spawner=spawner, bus=bus)

    @property
    def workers(self) -> list[WorkerHandle]:
        """Every worker shown, in order, ended ones too (stop them when done)."""
        return [row.worker for row in self._rows]

    @property
    def rows(self) -> list[dict[str, Any]]:
        """What each row shows: ``pid``, ``state``, ``handled``, ``rate`` (events/s between the
        last two refreshes, ``None`` before the second) and ``failures``."""
        return [row.values() for row in self._rows]

    @property
    def backlog(self) -> dict[str, int | None] | None:
        """The bus's last backlog (``{"pending": ..., "dlq": ...}``); ``None`` if unknown."""
        return None if self._backlog is None else dict(self._backlog)

    @property
    def task(self) -> asyncio.Task[None] | None:
        """The refresh task of :meth:`start`, until :meth:`stop`."""
        return self._task

    async def refresh(self) -> None:
        """Read every worker's counters and state, then ask the bus for its backlog."""
        now = self._clock()
        for row in self._rows:
            row.sample(now)
        self._draw()
        if self._bus is None:
            return
        try:
            self._backlog = await asyncio.wait_for(self._bus.get_backlog(), _BACKLOG_TIMEOUT)
            self._backlog_error = None
        except Exception as exc:  # a broker gone, say: shown, and the next refresh asks again
            self._backlog, self._backlog_error = None, f"{type(exc).__name__}: {exc}"
        self._draw()

    def start(self, interval: float = 1.0) -> asyncio.Task[None]:
        """Refresh every ``interval`` seconds in a task of the running loop (a notebook has one),
        replacing one already running; an unexpected error is logged and ends it."""
        if interval <= 0:
            raise ValueError("interval must be positive")
        if self.closed:
            raise RuntimeError("this view is closed")
        loop = asyncio.get_running_loop()
        self.stop()
        self._task = loop.create_task(self._refresh_every(interval), name="cluster-view-refresh")
        return self._task

    def stop(self) -> None:
        """Cancel the refresh task, if any; the rows stay as last drawn."""
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def add_worker(self) -> list[WorkerHandle]:
        """Spawn one more worker like the others (in a thread) and give it a row."""
        if self._spawner is None:
            raise RuntimeError("this view cannot add workers: make it with ClusterView.spawn(...)")
        self._adding += 1
        self._draw()
        try:
            made = await asyncio.to_thread(self._spawner)
        finally:
            self._adding -= 1
        self._error = None  # an earlier failure is no longer the news
        self._add_rows(made)
        return list(made)

    async def _refresh_every(self, interval: float) -> None:
        while True:
            try:
                await self.refresh()
            except Exception:
                logger.exception("cluster view refresh failed; live updates stopped")
                return
            await asyncio.sleep(interval)

    def _add_rows(self, handles: Iterable[WorkerHandle]) -> None:
        for worker in handles:
            row = _Row(worker, self._act)
            row.sample(self._clock())
            self._rows.append(row)
        self._list.children = [self._list.children[0], *(row.box for row in self._rows)]
        self._draw()

    def _act(self, worker: WorkerHandle, action: str) -> None:
        """A row's button: signal its worker (at once), then redraw."""
        try:
            getattr(worker, action)()
        except Exception as exc:
            self._error = f"{action} {worker.pid}: {type(exc).__name__}: {exc}"
        self._draw()

    def _run(self, coro: Any) -> None:
        """Run a button's coroutine as a task (a click must not block); its error is shown."""
        task = asyncio.ensure_future(coro)
        self._actions.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._actions.discard(task)
        if not task.cancelled() and task.exception() is not None:
            error = task.exception()
            logger.info("cluster view action failed: %r", error)
            self._error = f"{type(error).__name__}: {error}"
            self._draw()

    # -- drawing -----------------------------------------------------------------------------

    def _draw(self) -> None:
        for row in self._rows:
            row.draw()
        self._add.disabled = self._spawner is None
        status = [escape("adding a worker…")] if self._adding else []
        if self._error:
            status.append(f"<span style='color:{FAILED_COLOR}'>{escape(self._error)}</span>")
        self._status.value = " ".join(status)
        self._side.value = escape(self._backlog_text())

    def _final_frame(self) -> None:
        self._draw()  # no refresh: it would ask the broker after close()
        _send_again(self)

    def _backlog_text(self) -> str:
        if self._bus is None:
            return ""
        name = f"group {self._bus.config.consumer_group} backlog"
        if self._backlog_error:
            return f"{name}: unknown ({self._backlog_error})"
        if self._backlog is None:
            return f"{name}: not read yet"
        pending, dlq = (self._backlog.get(k) for k in ("pending", "dlq"))
        return f"{name}: pending {_count(pending)}, DLQ {_count(dlq)}"

    def snapshot_html(self) -> str:
        """The rows and backlog as last refreshed, as a static table."""
        self._draw()
        rows = [[escape(text) for text in row.texts()] for row in self._rows]
        headers = [name for name, _ in _COLUMNS]
        backlog = self._backlog_text()
        side = f"<p>{escape(backlog)}</p>" if backlog else ""
        return snapshot(table(headers, rows, empty="no workers") + side)

    def snapshot_text(self) -> str:
        """The rows and backlog as last refreshed, as a plain-text table."""
        self._draw()
        lines = [[name for name, _ in _COLUMNS], *(row.texts() for row in self._rows)]
        widths = [max(len(line[i]) for line in lines) for i in range(len(_COLUMNS))]
        text = [
            "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
            for line in lines
        ]
        backlog = self._backlog_text()
        return "\n".join(text + ([backlog] if backlog else []))

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle = super()._repr_mimebundle_(**kwargs)
        bundle["text/plain"] = self.snapshot_text()
        return bundle

    def __repr__(self) -> str:
        states = [row.worker.state for row in self._rows]
        counts = ", ".join(f"{states.count(s)} {s}" for s in dict.fromkeys(states))
        return f"ClusterView({len(states)} workers{': ' if counts else ''}{counts})"


def _count(value: int | None) -> str:
    return "?" if value is None else str(value)


def _send_again(widget: widgets.Widget) -> None:
    """Send ``widget``'s state and its descendants' once more. What the refresh task drew went
    out under the cell that started it, which nbconvert no longer records: a notebook it saves
    would keep an older frame. Sent from the cell that closes the view, it keeps this one."""
    widget.send_state()
    for child in getattr(widget, "children", ()):
        _send_again(child)
