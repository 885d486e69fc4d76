"""What makes a widget live without blocking: throttled redraws, a periodic refresher, and a
base view whose ``close()`` stops updates but keeps the last frame on screen."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets

from ..bus.base import EventBus
from ..bus.handlers import Delivery

__all__ = ["LiveView", "Throttle", "start_ticker"]

logger = logging.getLogger("eventsource_lab.widgets")


class Throttle:
    """Runs ``callback`` soon after ``poke()``, at most once per ``interval`` seconds.

    ``poke()`` is cheap and synchronous, so it is safe inside a bus callback: it only schedules
    (``loop.call_later``). Outside a running event loop it calls ``callback`` at once.
    """

    def __init__(self, callback: Callable[[], None], interval: float = 0.1) -> None:
        self._callback = callback
        self._interval = interval
        self._handle: asyncio.TimerHandle | None = None
        self._last = float("-inf")

    @property
    def pending(self) -> bool:
        """Whether a call is scheduled."""
        return self._handle is not None

    def poke(self) -> None:
        """Ask for a call; calls asked for while one is pending merge into it."""
        if self._handle is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._callback()
            return
        delay = max(0.0, self._last + self._interval - loop.time())
        self._handle = loop.call_later(delay, self._fire, loop)

    def cancel(self) -> None:
        """Drop a scheduled call."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _fire(self, loop: asyncio.AbstractEventLoop) -> None:
        self._handle = None
        self._last = loop.time()
        try:
            self._callback()
        except Exception:
            logger.exception("widget redraw failed")


def start_ticker(interval: float, callback: Callable[[], None]) -> asyncio.Task[None] | None:
    """Call ``callback`` every ``interval`` seconds in a task, if an event loop is running
    (in a notebook one is); ``None`` otherwise. Cancel the task to stop; an error stops it too."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None

    async def tick() -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                callback()
            except Exception:
                logger.exception("widget refresh failed; live updates stopped")
                return

    return loop.create_task(tick(), name="eventsource-lab-widget-ticker")


class LiveView(widgets.VBox):
    """Base of the widgets: a VBox that redraws on ``refresh()``, carries a static HTML
    snapshot in its mimebundle, and cleans up on ``close()``.

    Subclasses implement ``refresh()`` and ``snapshot_html()`` and register their cleanups with
    ``_on_close``. ``close()`` stops live updates but, unlike ``Widget.close()``, keeps the
    widget's model, so a saved notebook still shows the last frame (``_final_frame()``, by
    default a ``refresh()``). ``Widget.close(view)`` removes a view entirely.
    """

    _closed = True  # until __init__ ran: ipywidgets' __del__ calls close() on half-built ones

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._cleanups: list[Callable[[], object]] = []
        self._closed = False

    @property
    def closed(self) -> bool:
        """Whether ``close()`` has run."""
        return self._closed

    def refresh(self) -> None:
        """Redraw now."""
        raise NotImplementedError

    def snapshot_html(self) -> str:
        """The current view as static HTML, shown where no kernel runs."""
        raise NotImplementedError

    def _on_close(self, cleanup: Callable[[], object]) -> None:
        """Run ``cleanup`` on ``close()`` (last registered, first run)."""
        self._cleanups.append(cleanup)

    def _watch_deliveries(self, bus: EventBus, listener: Callable[[Delivery], None]) -> None:
        """Call ``listener`` after every dispatch on ``bus`` until ``close()``."""
        self._on_close(bus.on_delivery(listener))

    def close(self) -> None:
        """Stop live updates (listeners, timers, tasks), then draw the final frame; idempotent."""
        if self._closed:
            return
        self._closed = True
        while self._cleanups:
            self._cleanups.pop()()
        self._final_frame()

    def _final_frame(self) -> None:
        """Draw the frame left on screen after ``close()``; override if ``refresh()`` does I/O."""
        self.refresh()

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle = super()._repr_mimebundle_(**kwargs) or {}
        bundle["text/html"] = self.snapshot_html()
        return bundle
