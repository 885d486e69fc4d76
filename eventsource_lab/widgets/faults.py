"""FaultControls: break a handler, send a poison message, kill and restart the consumer, replay
the dead-letter queue, and read in plain words what the bus did about it."""

from __future__ import annotations

import asyncio
import logging
import types
import typing
from collections.abc import Callable, Coroutine
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import ipywidgets as widgets
import traitlets

from ..bus import wire
from ..bus.base import EventBus
from ..bus.broker import BACKLOG_DLQ_LIMIT, BrokerEventBus
from ..events import DomainEvent, event_type_of
from ._html import FAILED_COLOR, escape, table
from ._live import LiveView, Throttle

__all__ = ["FaultControls", "FaultInjected", "FaultyHandler", "PoisonMessageError"]

logger = logging.getLogger("eventsource_lab.widgets")

_LOG_LIMIT = 500  # lines kept in .log
_LOG_SHOWN = 12  # lines shown in the widget


class FaultInjected(RuntimeError):
    """What the fault handler raises while ``failing`` is on."""


class PoisonMessageError(RuntimeError):
    """What the fault handler raises, every time, for a poison message."""


class FaultyHandler:
    """The handler :class:`FaultControls` subscribes: it fails while ``failing`` is on, and
    always on a poison message."""

    def __init__(self, controls: FaultControls) -> None:
        self._controls = controls

    def handle(self, event: DomainEvent) -> None:
        self._controls._handle(event)


class FaultControls(LiveView):
    """Buttons that make a bus fail on purpose, and a log (``.log``) of what happened.

    Subscribes a :class:`FaultyHandler` to ``event_class`` on ``bus``. The buttons run the
    methods below as tasks; an error they raise goes to ``.log``.

    Args:
        bus: the bus to break (most buttons need a broker bus: one with a consumer and a DLQ).
        event_class: the events the fault handler receives (and the poison message's class).
        make_event: builds the poison event; by default every required field gets a
            placeholder (``"poison"`` for text, 0 for numbers, a new id for ids).
    """

    # Widget.log is a logging.Logger; here it is the story of what happened, as the API says.
    log = traitlets.List(traitlets.Unicode(), help="what happened, oldest first")

    @traitlets.default("log")
    def _log_default(self) -> list[str]:
        return []

    def __init__(
        self,
        bus: EventBus,
        event_class: type[DomainEvent],
        *,
        make_event: Callable[[], DomainEvent] | None = None,
    ) -> None:
        super().__init__()
        self.bus = bus
        self.event_class = event_class
        self.handler = FaultyHandler(self)
        self.handled: list[DomainEvent] = []
        """The events the fault handler handled without failing."""
        self.failures = 0
        """How many times the fault handler raised."""
        self._make_event = make_event or (lambda: _placeholder_event(event_class))
        self._poison: set[UUID] = set()
        self._attempts: dict[UUID, int] = {}  # failed calls per event since its last replay
        self._failed_before: set[UUID] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._redraw = Throttle(self._draw)

        self._toggle = widgets.ToggleButton(
            description="Handler failing", icon="bug", tooltip="make FaultyHandler raise"
        )
        self._toggle.observe(self._toggled, "value")
        buttons = [
            self._button("Send poison", "flask", self.send_poison),
            self._button("Kill consumer", "skull", self.kill_consumer),
            self._button("Restart consumer", "refresh", self.restart_consumer),
            self._button("Replay DLQ", "repeat", self.replay_dlq),
        ]
        self._status = widgets.HTML()
        self._log_view = widgets.HTML()
        self.children = [widgets.HBox([self._toggle, *buttons]), self._status, self._log_view]
        self._on_close(self._redraw.cancel)
        self._on_close(self._cancel_tasks)

        self._draw()
        # last, so that a bad event_class leaves a widget that close() (and __del__) can handle
        self._event_type = event_type_of(event_class)
        bus.subscribe(event_class, self.handler)
        self._on_close(lambda: bus.unsubscribe(event_class, self.handler))

    # -- the fault handler -------------------------------------------------------------------

    @property
    def failing(self) -> bool:
        """Whether the fault handler fails on every event (poison messages fail regardless)."""
        return bool(self._toggle.value)

    @failing.setter
    def failing(self, value: bool) -> None:
        self._toggle.value = bool(value)

    def _toggled(self, change: dict[str, Any]) -> None:
        if change["new"]:
            self._say(
                f"FaultyHandler now fails on every {self._event_type} (think: a bug, or a "
                "database that is down). Watch the retries, then the dead-letter queue."
            )
        else:
            self._say(
                "FaultyHandler works again (poison messages still fail). Replay the "
                "dead-letter queue to process what ended up there."
            )

    def _handle(self, event: DomainEvent) -> None:
        """Called by :class:`FaultyHandler` for every delivery of an event."""
        poison = event.event_id in self._poison
        if poison or self.failing:
            attempt = self._attempts[event.event_id] = self._attempts.get(event.event_id, 0) + 1
            self._failed_before.add(event.event_id)
            self.failures += 1
            why = "it is poison" if poison else "the handler is failing"
            self._say(f"{self._event_type}: attempt {attempt} failed ({why}){self._next(attempt)}")
            if poison:
                raise PoisonMessageError("poison message: FaultyHandler always fails on it")
            raise FaultInjected("FaultyHandler is switched to failing")
        self.handled.append(event)
        if event.event_id in self._failed_before:
            self._failed_before.discard(event.event_id)
            self._say(f"{self._event_type}: handled at last, after failing before.")
        else:
            self._redraw.poke()

    def _next(self, attempt: int) -> str:
        """What the bus does after failed attempt number ``attempt``."""
        bus = self.bus
        if not isinstance(bus, BrokerEventBus):
            return "; an in-memory bus does not retry: the event is lost for this handler."
        if attempt <= bus.config.max_retries:
            return "; the bus will retry it."
        if bus.config.enable_dlq:
            return "; retries used up: the bus moves it to the dead-letter queue."
        return "; retries used up, and there is no DLQ: the bus keeps it for redelivery."

    # -- actions -----------------------------------------------------------------------------

    async def send_poison(self) -> DomainEvent:
        """Publish an event of ``event_class`` that the fault handler fails on every time."""
        event = self._make_event()
        self._poison.add(event.event_id)
        self._say(
            f"Sending a poison {self._event_type}: FaultyHandler fails on it every time, "
            "however often it is retried."
        )
        if isinstance(self.bus, BrokerEventBus) and not self.bus.is_consuming:
            self._say("(No consumer is running: nothing happens until one starts.)")
        await self.bus.publish([event])
        return event

    async def kill_consumer(self) -> None:
        """Cancel the consumer task: a crash, so nothing it held is acknowledged."""
        bus = self._broker_bus("kill")
        if bus is None:
            return
        if not bus.is_consuming:
            self._say("No consumer is running: nothing to kill.")
            return
        task = bus.start_consuming_in_background()  # the running consumer's task
        task.cancel()
        await asyncio.wait({task})
        self._say(
            "Killed the consumer, like a crash: it acknowledged nothing it held. Events "
            "published now wait at the broker. Restart the consumer to see them delivered; "
            f"the messages it held come back too: {_recovery(bus)}."
        )

    async def restart_consumer(self) -> None:
        """Start the consumer again (if none is running) and return once it receives."""
        bus = self._broker_bus("restart")
        if bus is None:
            return
        if bus.is_consuming:
            self._say("The consumer is already running.")
            return
        await bus.start_consuming()
        self._say("Consumer restarted: it now receives what was published while it was down.")

    async def replay_dlq(self) -> int:
        """Send every dead letter back to the consumers; returns how many were replayed."""
        bus = self._broker_bus("replay")
        if bus is None:
            return 0
        letters = await bus.get_dlq_messages(limit=BACKLOG_DLQ_LIMIT)
        if not letters:
            self._say("The dead-letter queue is empty: nothing to replay.")
            return 0
        self._attempts.clear()  # a replayed message gets a fresh set of retries
        replayed = poison = 0
        for letter in letters:
            if await bus.replay_dlq_message(letter.id):
                replayed += 1
                poison += self._is_poison(bus, letter.body, letter.event_type)
        outlook = ""
        if poison:
            outlook = f" {poison} of them are poison: they will fail and come back again."
        elif self.failing:
            outlook = " The handler is still failing, so they will come back again."
        self._say(
            f"Replayed {replayed} message(s) from the dead-letter queue: the consumer gets "
            f"them again.{outlook}"
        )
        return replayed

    def _is_poison(self, bus: BrokerEventBus, body: bytes, event_type: str | None) -> bool:
        try:
            return wire.decode(body, bus.event_registry, event_type).event_id in self._poison
        except wire.DecodeError:
            return False

    def _broker_bus(self, action: str) -> BrokerEventBus | None:
        if isinstance(self.bus, BrokerEventBus):
            return self.bus
        self._say(
            f"Cannot {action}: {type(self.bus).__name__} has no consumer or dead-letter queue "
            "(it calls handlers inside publish())."
        )
        return None

    # -- log and drawing ---------------------------------------------------------------------

    def _say(self, line: str) -> None:
        self.log.append(line)
        del self.log[:-_LOG_LIMIT]
        self._redraw.poke()

    def refresh(self) -> None:
        """Redraw now."""
        self._redraw.cancel()
        self._draw()

    def _draw(self) -> None:
        self._status.value = escape(self._status_text())
        lines = "".join(f"<div>{escape(line)}</div>" for line in self.log[-_LOG_SHOWN:])
        self._log_view.value = (
            f"<div style='font-family:monospace;font-size:12px;white-space:pre-wrap'>"
            f"{lines or '<i>nothing happened yet</i>'}</div>"
        )

    def _status_text(self) -> str:
        consumer = ""
        if isinstance(self.bus, BrokerEventBus):
            consumer = f"consumer {'running' if self.bus.is_consuming else 'stopped'} · "
        state = "failing" if self.failing else "working"
        return (
            f"{consumer}FaultyHandler {state} · handled {len(self.handled)} · "
            f"failed {self.failures}"
        )

    def snapshot_html(self) -> str:
        """The status line and the latest log lines as static HTML."""
        rows = [[escape(line)] for line in self.log[-_LOG_SHOWN:]]
        color = f" style='color:{FAILED_COLOR}'" if self.failing else ""
        return (
            f"<div{color}>{escape(self._status_text())}</div>"
            f"{table(['what happened'], rows, empty='nothing happened yet')}"
        )

    # -- tasks -------------------------------------------------------------------------------

    def _button(
        self, label: str, icon: str, action: Callable[[], Coroutine[Any, Any, Any]]
    ) -> widgets.Button:
        button = widgets.Button(description=label, icon=icon)
        button.on_click(lambda _: self._spawn(label, action()))
        return button

    def _spawn(self, label: str, coro: Coroutine[Any, Any, Any]) -> None:
        """Run a button's action as a task; its error goes to the log."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)

        def done(task: asyncio.Task[Any]) -> None:
            self._tasks.discard(task)
            if not task.cancelled() and task.exception() is not None:
                error = task.exception()
                self._say(f"{label} failed: {type(error).__name__}: {error}")

        task.add_done_callback(done)

    def _cancel_tasks(self) -> None:
        for task in self._tasks:
            task.cancel()


def _recovery(bus: BrokerEventBus) -> str:
    """How this bus's broker gets back what a dead consumer held."""
    kind = type(bus).__module__.rsplit(".", 1)[-1]
    if kind == "redis":
        idle = bus.config.pending_idle_ms / 1000  # type: ignore[attr-defined]
        return (
            f"they stay pending in the group, and after {idle:g} s idle a consumer takes "
            "them over (XAUTOCLAIM)"
        )
    if kind == "rabbitmq":
        return "the broker puts them back in the queue and redelivers them"
    if kind == "kafka":
        return "their offsets were not committed, so they are read again after the rebalance"
    return "the broker delivers them again"


_PLACEHOLDERS: dict[Any, Callable[[], Any]] = {
    str: lambda: "poison",
    int: lambda: 0,
    float: lambda: 0.0,
    bool: lambda: False,
    Decimal: lambda: Decimal(0),
    UUID: uuid4,
    datetime: lambda: datetime.now(timezone.utc),
    list: list,
    dict: dict,
}


def _placeholder_event(event_class: type[DomainEvent]) -> DomainEvent:
    """An ``event_class`` event with a placeholder in every required field."""
    values = {}
    for name, field in event_class.model_fields.items():
        if not field.is_required():
            continue
        annotation = field.annotation
        if typing.get_origin(annotation) in (typing.Union, types.UnionType):
            if type(None) in typing.get_args(annotation):
                values[name] = None
                continue
            annotation = typing.get_args(annotation)[0]
        make = _PLACEHOLDERS.get(typing.get_origin(annotation) or annotation)
        if make is None:
            raise TypeError(
                f"cannot make up a value for {event_class.__name__}.{name} ({annotation!r}); "
                "pass FaultControls(..., make_event=lambda: YourEvent(...))"
            )
        values[name] = make()
    return event_class(**values)
