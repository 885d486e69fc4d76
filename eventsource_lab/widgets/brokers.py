"""BrokerPanel: start and stop real brokers from a notebook, and watch their health and backlog.

Every slow step (starting a broker, probing it, asking a bus for its backlog) runs off the event
loop or as a task, so the notebook stays responsive while RabbitMQ takes its few seconds.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Coroutine, Iterable
from typing import Any

import ipywidgets as widgets

from ..brokers import KINDS, MODES, Broker, astart
from ..bus.broker import BrokerEventBus
from ..redact import redact_url
from ._html import FAILED_COLOR, escape, table
from ._live import LiveView, start_ticker

__all__ = ["EXPECTED_START_SECONDS", "BrokerPanel"]

logger = logging.getLogger("eventsource_lab.widgets")

EXPECTED_START_SECONDS = {"redis": 0.1, "rabbitmq": 6.0, "kafka": 0.1}
"""About how long a local broker of each kind takes to start: the pace of the progress bar."""

_TICK = 0.05  # seconds between progress-bar steps
_PROBE_TIMEOUT = 1.0  # seconds a health probe may take
_BACKLOG_TIMEOUT = 5.0  # seconds a bus may take to report its backlog


class _Row:
    """The widgets and state of one broker kind."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.broker: Broker | None = None  # the last one started here, stopped or not
        self.health: bool | None = None
        self.error: str | None = None
        self.starting = False
        self.start = widgets.Button(description="Start", icon="play", button_style="success")
        self.stop = widgets.Button(description="Stop", icon="stop", disabled=True)
        self.progress = widgets.IntProgress(value=0, min=0, max=100, description="starting")
        self.progress.layout.visibility = "hidden"
        self.status = widgets.HTML()
        name = widgets.HTML(f"<b>{escape(kind)}</b>", layout=widgets.Layout(width="80px"))
        for button in (self.start, self.stop):
            button.layout.width = "90px"
        self.box = widgets.HBox([name, self.start, self.stop, self.progress, self.status])

    @property
    def state(self) -> str:
        if self.starting:
            return "starting…"
        if self.error:
            return "failed to start"
        if self.broker is None:
            return "not started"
        return "running" if self.health else "stopped"


class BrokerPanel(LiveView):
    """A row per broker kind: Start / Stop, a progress bar while starting, then mode, URL
    (password redacted), health and the backlog of every bus given to :meth:`watch`.

    Args:
        kinds: which brokers get a row.
        mode: how :meth:`start` gets a broker (see ``brokers.start``), unless told otherwise.
        interval: seconds between automatic refreshes of health and backlogs.

    ``close()`` stops the brokers this panel started (a ``url``-mode broker belongs to someone
    else and keeps running), then stops refreshing.
    """

    def __init__(
        self, kinds: Iterable[str] = KINDS, *, mode: str = "auto", interval: float = 2.0
    ) -> None:
        super().__init__()
        self.brokers: dict[str, Broker] = {}
        """The running brokers this panel started, by kind."""
        self._rows: dict[str, _Row] = {}  # set before any check: Widget.__del__ calls close()
        kinds = tuple(kinds)
        if not kinds or any(k not in KINDS for k in kinds):
            raise ValueError(f"kinds must be among {', '.join(KINDS)}; got {kinds!r}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        self.kinds = kinds
        self.mode = mode
        self.interval = interval
        self.backlogs: dict[BrokerEventBus, dict[str, int | None]] = {}
        """The last backlog of each watched bus: ``{"pending": ..., "dlq": ...}``."""
        self._rows = {kind: _Row(kind) for kind in kinds}
        self._watched: list[BrokerEventBus] = []
        self._backlog_errors: dict[BrokerEventBus, str] = {}
        self._starts: dict[str, asyncio.Task[Broker]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._refreshing: asyncio.Task[None] | None = None
        self._ticker: asyncio.Task[None] | None = None
        for row in self._rows.values():
            row.start.on_click(lambda _, row=row: self._spawn(row, self.start(row.kind)))
            row.stop.on_click(lambda _, row=row: self._spawn(row, self.stop(row.kind)))
        self.children = [row.box for row in self._rows.values()]
        self._on_close(self._cancel_tasks)
        self._ensure_ticker()
        self._draw()

    @property
    def health(self) -> dict[str, bool | None]:
        """Whether each kind's broker answered its last probe (``None``: never started here)."""
        return {kind: row.health for kind, row in self._rows.items()}

    @property
    def errors(self) -> dict[str, str | None]:
        """Why the last start of each kind failed, if it did."""
        return {kind: row.error for kind, row in self._rows.items()}

    @property
    def progress(self) -> dict[str, widgets.IntProgress]:
        """The progress bar of each kind."""
        return {kind: row.progress for kind, row in self._rows.items()}

    # -- starting and stopping ---------------------------------------------------------------

    async def start(self, kind: str, mode: str | None = None) -> Broker:
        """Start a ``kind`` broker (in a thread) and return it once it answers; a running one is
        returned as is. A failure is shown in the row and raised."""
        row = self._row(kind)
        if kind in self.brokers:
            return self.brokers[kind]
        task = self._starts.get(kind)
        if task is None:  # a second click while starting waits for the same start
            task = self._starts[kind] = asyncio.ensure_future(self._start(row, mode or self.mode))
            task.add_done_callback(lambda _: self._starts.pop(kind, None))
        return await asyncio.shield(task)

    async def _start(self, row: _Row, mode: str) -> Broker:
        self._ensure_ticker()
        row.starting, row.error, row.health = True, None, None
        row.progress.value, row.progress.bar_style = 0, "info"
        row.progress.layout.visibility = "visible"
        self._draw()
        animation = asyncio.ensure_future(self._animate(row))
        try:
            broker = await astart(row.kind, mode)
        except Exception as exc:
            row.error = f"{type(exc).__name__}: {exc}"
            row.progress.bar_style = "danger"
            raise
        else:
            row.broker, row.health = broker, True
            row.progress.value, row.progress.bar_style = row.progress.max, "success"
            self.brokers[row.kind] = broker
            return broker
        finally:
            animation.cancel()
            row.starting = False
            self._draw()

    async def _animate(self, row: _Row) -> None:
        """Fill the bar against the kind's usual start time: 63% at that time, never full."""
        loop = asyncio.get_running_loop()
        began, expected = loop.time(), EXPECTED_START_SECONDS.get(row.kind, 1.0)
        while True:
            fraction = 1 - math.exp(-(loop.time() - began) / expected)
            row.progress.value = min(row.progress.max - 1, round(fraction * row.progress.max))
            await asyncio.sleep(_TICK)

    async def stop(self, kind: str) -> None:
        """Stop the ``kind`` broker this panel started (in a thread); nothing if there is none."""
        row = self._row(kind)
        broker = self.brokers.pop(kind, None)
        if broker is None:
            return
        await broker.astop()
        row.health = await asyncio.to_thread(broker.is_running, _PROBE_TIMEOUT)
        row.progress.layout.visibility = "hidden"
        self._draw()

    # -- watching buses ----------------------------------------------------------------------

    def watch(self, bus: BrokerEventBus) -> None:
        """Show ``bus``'s backlog (its group's pending messages and DLQ depth) in its kind's row."""
        if not isinstance(bus, BrokerEventBus):
            raise TypeError(
                f"only a broker bus has a backlog to watch; got {type(bus).__name__} "
                "(an in-memory bus delivers at once)"
            )
        if bus not in self._watched:
            self._watched.append(bus)
            self.backlogs[bus] = {"pending": None, "dlq": None}
        self._ensure_ticker()
        self._draw()
        self._kick()

    async def refresh(self) -> None:
        """Probe every broker started here and ask every watched bus for its backlog, now."""
        started = [(self._rows[kind], broker) for kind, broker in self.brokers.items()]
        healths = await asyncio.gather(
            *(asyncio.to_thread(broker.is_running, _PROBE_TIMEOUT) for _, broker in started)
        )
        for (row, _), healthy in zip(started, healths, strict=True):
            row.health = healthy
        watched = [bus for bus in self._watched if self._reachable(bus)]
        results = await asyncio.gather(
            *(asyncio.wait_for(bus.get_backlog(), _BACKLOG_TIMEOUT) for bus in watched),
            return_exceptions=True,
        )
        for bus, result in zip(watched, results, strict=True):
            if isinstance(result, BaseException):
                if isinstance(result, asyncio.CancelledError):
                    raise result
                self.backlogs[bus] = {"pending": None, "dlq": None}
                self._backlog_errors[bus] = f"{type(result).__name__}: {result}"
            else:
                self.backlogs[bus] = result
                self._backlog_errors.pop(bus, None)
        self._draw()

    def _reachable(self, bus: BrokerEventBus) -> bool:
        """Not worth asking a bus whose broker this panel saw stopped."""
        row = self._rows.get(_kind_of(bus))
        if row is None or row.health is not False:
            return True
        self.backlogs[bus] = {"pending": None, "dlq": None}
        self._backlog_errors[bus] = "its broker is stopped"
        return False

    # -- drawing -----------------------------------------------------------------------------

    def _draw(self) -> None:
        for row in self._rows.values():
            row.start.disabled = row.starting or row.kind in self.brokers
            row.stop.disabled = row.kind not in self.brokers
            row.status.value = " · ".join(self._cells(row))

    def _cells(self, row: _Row) -> list[str]:
        """The row's status as HTML pieces: state, mode, URL, health, backlogs."""
        if row.error:
            style = f"color:{FAILED_COLOR};white-space:pre-wrap;font-size:12px"
            return [f"<span style='{style}'>{escape(row.error)}</span>"]
        cells = [escape(row.state)]
        if row.broker is not None:
            health = "healthy" if row.health else "not answering"
            cells += [escape(row.broker.mode), f"<code>{escape(redact_url(row.broker.url))}</code>"]
            cells.append(escape(health))
        cells += [self._backlog(bus) for bus in self._watched if _kind_of(bus) == row.kind]
        return cells

    def _backlog(self, bus: BrokerEventBus) -> str:
        name = f"group {bus.config.consumer_group}"
        error = self._backlog_errors.get(bus)
        if error:
            return f"{escape(name)}: <span title='{escape(error)}'>backlog unknown</span>"
        backlog = self.backlogs.get(bus, {})
        pending, dlq = (_count(backlog.get(key)) for key in ("pending", "dlq"))
        return f"{escape(name)}: {_consumer_state(bus)}, pending {pending}, DLQ {dlq}"

    def snapshot_html(self) -> str:
        """The panel as a static table: kind, state, mode, URL, health, backlog."""
        rows = []
        for row in self._rows.values():
            broker = row.broker
            backlog = "; ".join(
                self._backlog(bus) for bus in self._watched if _kind_of(bus) == row.kind
            )
            rows.append(
                [
                    f"<b>{escape(row.kind)}</b>",
                    escape(row.error or row.state),
                    escape(broker.mode) if broker else "",
                    f"<code>{escape(redact_url(broker.url))}</code>" if broker else "",
                    escape({True: "healthy", False: "not answering", None: ""}[row.health]),
                    backlog,
                ]
            )
        return table(["broker", "state", "mode", "URL", "health", "backlog"], rows)

    # -- tasks -------------------------------------------------------------------------------

    def _row(self, kind: str) -> _Row:
        if kind not in self._rows:
            raise ValueError(f"this panel has no {kind!r} row; it shows {', '.join(self.kinds)}")
        return self._rows[kind]

    def _spawn(self, row: _Row, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` as a task (a button click must not block); its error shows in ``row``."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(lambda task: self._done(row, task))

    def _done(self, row: _Row, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled() or task.exception() is None:
            return
        error = task.exception()
        logger.info("broker panel action failed: %r", error)
        row.error = row.error or f"{type(error).__name__}: {error}"
        self._draw()

    def _ensure_ticker(self) -> None:
        if not self.closed and (self._ticker is None or self._ticker.done()):
            self._ticker = start_ticker(self.interval, self._kick)

    def _kick(self) -> None:
        """Start a refresh unless one is running (a slow broker must not pile them up)."""
        if self.closed or (self._refreshing is not None and not self._refreshing.done()):
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        self._refreshing = asyncio.ensure_future(self.refresh())
        self._tasks.add(self._refreshing)
        self._refreshing.add_done_callback(self._refreshed)

    def _refreshed(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.warning("broker panel refresh failed: %r", task.exception())

    def _cancel_tasks(self) -> None:
        for task in (self._ticker, *self._tasks, *self._starts.values()):
            if task is not None:
                task.cancel()

    def close(self) -> None:
        """Stop the brokers this panel started, then stop refreshing (the last frame stays)."""
        if self.closed:
            return
        for kind, broker in list(self.brokers.items()):
            try:
                broker.stop()
            except Exception:
                logger.exception("stopping the %s broker failed", kind)
            self._rows[kind].health = False
        self.brokers.clear()
        for row in self._rows.values():
            row.progress.layout.visibility = "hidden"
        # LiveView.close() without its final refresh(), which probes here: draw what is known.
        self._closed = True
        while self._cleanups:
            self._cleanups.pop()()
        self._draw()


def _kind_of(bus: BrokerEventBus) -> str:
    """``redis``, ``rabbitmq`` or ``kafka``: the bus module's name."""
    for cls in type(bus).__mro__:
        kind = cls.__module__.rsplit(".", 1)[-1]
        if kind in KINDS:
            return kind
    return ""


def _count(value: int | None) -> str:
    return "?" if value is None else str(value)


def _consumer_state(bus: BrokerEventBus) -> str:
    """Whether ``bus`` consumes, and if its loop stopped on its own, why (in red)."""
    error = bus.consumer_error
    if error is not None:
        reason = escape(f"{type(error).__name__}: {error}"[:200])
        return f"<span style='color:{FAILED_COLOR}'>consumer stopped ({reason})</span>"
    return "consuming" if bus.is_consuming else "not consuming"
