"""StatsPanel on a real bus: counters, rates between snapshots, its refresher task."""

import asyncio

import pytest

from eventsource_lab import InMemoryEventBus
from eventsource_lab.testing import eventually
from eventsource_lab.widgets import StatsPanel

from ._tutorial import AuditLogger, OrderPlaced, placed


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def busy_bus() -> InMemoryEventBus:
    bus = InMemoryEventBus()
    bus.subscribe(OrderPlaced, AuditLogger())
    bus.subscribe_to_all_events(AuditLogger())
    return bus


async def test_rates_are_increases_per_second_between_refreshes():
    bus, clock = busy_bus(), FakeClock()
    panel = StatsPanel(bus, interval=60, clock=clock)
    assert panel.stats == bus.get_stats()
    assert set(panel.rates.values()) == {0.0}

    await bus.publish([placed(), placed(), placed()])
    clock.now += 2.0
    panel.refresh()
    assert panel.stats["events_published"] == 3
    assert panel.rates["events_published"] == 1.5
    assert panel.rates["handlers_invoked"] == 3.0
    assert panel.rates["handler_errors"] == 0.0

    clock.now += 1.0
    panel.refresh()
    assert panel.rates["events_published"] == 0.0
    assert "3.0/s" not in panel.children[0].value
    panel.close()


async def test_refreshing_twice_at_one_instant_keeps_the_rates():
    bus, clock = busy_bus(), FakeClock()
    panel = StatsPanel(bus, interval=60, clock=clock)
    await bus.publish([placed()])
    clock.now += 0.5
    panel.refresh()
    panel.refresh()
    assert panel.rates["events_published"] == 2.0
    panel.close()


async def test_its_task_refreshes_until_close_cancels_it():
    bus = busy_bus()
    panel = StatsPanel(bus, interval=0.01)
    assert isinstance(panel.task, asyncio.Task)
    await bus.publish([placed(), placed()])

    await eventually(lambda: panel.stats["events_published"] == 2, what="a refresh by the task")
    assert "<td style='padding:2px 8px'>events_published</td>" in panel.children[0].value
    panel.close()
    await eventually(lambda: panel.task.done())
    assert panel.task.cancelled()
    await bus.publish([placed()])
    assert panel.stats["events_published"] == 2


def test_without_a_running_loop_there_is_no_task():
    panel = StatsPanel(InMemoryEventBus())
    assert panel.task is None
    assert panel.stats["events_published"] == 0
    panel.close()


async def test_the_snapshot_has_the_totals_but_not_the_rates():
    bus = busy_bus()
    panel = StatsPanel(bus, interval=60)
    await bus.publish([placed()])

    html = panel.snapshot_html()
    assert "InMemoryEventBus.get_stats()" in html
    cell = "<td style='padding:2px 8px'>"
    assert f"{cell}handlers_invoked</td>{cell}2</td>" in html
    assert "/s" not in html
    bundle = panel._repr_mimebundle_()
    assert bundle["text/html"] == html
    assert "application/vnd.jupyter.widget-view+json" in bundle
    panel.close()


def test_interval_must_be_positive():
    with pytest.raises(ValueError, match="interval"):
        StatsPanel(InMemoryEventBus(), interval=0)
