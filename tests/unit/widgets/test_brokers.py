"""BrokerPanel: starting and stopping real brokers without blocking, health, backlog, errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from urllib.parse import urlsplit
from uuid import uuid4

import pytest

from eventsource_lab import DomainEvent
from eventsource_lab.brokers import Broker, BrokerUnavailableError
from eventsource_lab.brokers.local import local_status
from eventsource_lab.bus import InMemoryEventBus, RedisEventBus, RedisEventBusConfig
from eventsource_lab.redact import redact_url
from eventsource_lab.widgets import brokers as panel_module
from eventsource_lab.widgets.brokers import BrokerPanel
from tests.conftest import skip_or_fail
from tests.support.events import OrderPlaced
from tests.support.waiting import eventually


def fail(event: DomainEvent) -> None:
    raise RuntimeError("broken handler")


@pytest.fixture
async def panels() -> AsyncIterator[list[BrokerPanel]]:
    """Panels made by a test; closed (stopping their brokers) after it."""
    made: list[BrokerPanel] = []
    yield made
    for panel in made:
        panel.close()


def test_kinds_and_mode_are_checked() -> None:
    with pytest.raises(ValueError, match="kinds"):
        BrokerPanel(["mysql"])
    with pytest.raises(ValueError, match="mode"):
        BrokerPanel(mode="cloud")


def test_watching_needs_a_broker_bus() -> None:
    with pytest.raises(TypeError, match="in-memory"):
        BrokerPanel(["redis"]).watch(InMemoryEventBus())


@pytest.mark.redis
async def test_start_and_stop_a_local_redis(panels, redis_broker) -> None:
    if local_status("redis")[0] is None:
        skip_or_fail("no redis-server binary for a local broker")
    panel = BrokerPanel(["redis"], mode="local", interval=0.05)
    panels.append(panel)
    broker = await panel.start("redis")
    assert panel.brokers == {"redis": broker}
    assert await panel.start("redis") is broker  # a running one is returned as is
    assert broker.mode == "local" and redact_url(broker.url).startswith("redis://***@127.0.0.1:")
    assert panel.health == {"redis": True}
    assert panel.progress["redis"].value == panel.progress["redis"].max
    html = panel.snapshot_html()
    assert redact_url(broker.url) in html and "local" in html and "healthy" in html
    password = urlsplit(broker.url).password
    assert password and password not in html  # the local Redis has one, and it stays hidden

    await panel.stop("redis")
    assert panel.brokers == {}
    assert panel.health == {"redis": False}
    assert not broker.is_running()
    assert "stopped" in panel.snapshot_html()


async def test_the_progress_bar_moves_while_starting_and_the_password_is_hidden(
    panels, monkeypatch
) -> None:
    release = asyncio.Event()
    url = "amqp://learner:s3cret@127.0.0.1:5672/"

    async def slow_start(kind: str, mode: str) -> Broker:
        await release.wait()
        return Broker(kind, "url", url)

    monkeypatch.setattr(panel_module, "astart", slow_start)
    monkeypatch.setitem(panel_module.EXPECTED_START_SECONDS, "rabbitmq", 0.2)
    panel = BrokerPanel(["rabbitmq"])
    panels.append(panel)
    bar = panel.progress["rabbitmq"]
    assert bar.layout.visibility == "hidden"
    starting = asyncio.ensure_future(panel.start("rabbitmq"))
    await eventually(lambda: 50 < bar.value < bar.max, what="the bar to move but not finish")
    assert bar.layout.visibility == "visible" and "starting" in panel.snapshot_html()
    release.set()
    await starting
    assert bar.value == bar.max
    html = panel.snapshot_html() + panel._rows["rabbitmq"].status.value
    assert "amqp://***@127.0.0.1:5672/" in html and "s3cret" not in html


async def test_a_failed_start_shows_in_the_row_and_a_click_raises_nothing(
    panels, monkeypatch
) -> None:
    monkeypatch.delenv("EVENTSOURCE_LAB_REDIS_URL", raising=False)
    panel = BrokerPanel(["redis"], mode="url")
    panels.append(panel)
    with pytest.raises(BrokerUnavailableError):
        await panel.start("redis")
    assert "EVENTSOURCE_LAB_REDIS_URL" in panel.errors["redis"]
    assert "EVENTSOURCE_LAB_REDIS_URL" in panel._rows["redis"].status.value
    assert panel.progress["redis"].bar_style == "danger"

    panel._rows["redis"].error = None
    panel._rows["redis"].start.click()  # the button's task keeps the error in the row
    await eventually(lambda: panel.errors["redis"] is not None)
    assert panel.brokers == {}


@pytest.mark.redis
async def test_watching_a_redis_bus_shows_its_dlq_depth(panels, redis_broker) -> None:
    config = RedisEventBusConfig(
        redis_url=redis_broker.url, stream_prefix=f"t-{uuid4().hex[:8]}", max_retries=0
    )
    async with RedisEventBus(config) as bus:
        bus.subscribe(OrderPlaced, fail)
        await bus.start_consuming()
        await bus.publish([OrderPlaced(aggregate_id=uuid4(), customer_name="a", total_amount=1)])
        await eventually(lambda: bus.get_stats()["messages_dead_lettered"] == 1)

        panel = BrokerPanel(["redis"], interval=0.05)
        panels.append(panel)
        panel.watch(bus)
        await panel.refresh()
        assert panel.backlogs[bus] == {"pending": 0, "dlq": 1}
        assert "group default: consuming, pending 0, DLQ 1" in panel.snapshot_html()

        await bus.publish([OrderPlaced(aggregate_id=uuid4(), customer_name="b", total_amount=2)])
        await eventually(lambda: panel.backlogs[bus]["dlq"] == 2, what="a periodic refresh")

        ticker = panel._ticker
        panel.close()
        assert ticker is not None
        await eventually(ticker.done)
        assert "DLQ 2" in panel._rows["redis"].status.value  # the last frame stays


@pytest.mark.redis
async def test_a_consumer_loop_that_stopped_on_its_own_shows_why(panels, redis_broker) -> None:
    config = RedisEventBusConfig(redis_url=redis_broker.url, stream_prefix=f"t-{uuid4().hex[:8]}")
    async with RedisEventBus(config) as bus:
        panel = BrokerPanel(["redis"])
        panels.append(panel)
        panel.watch(bus)
        assert "group default: not consuming" in panel.snapshot_html()
        await bus.start_consuming()
        bus.start_consuming_in_background().cancel()  # killed from outside, not stopped
        await eventually(lambda: bus.consumer_error is not None)
        await panel.refresh()
        assert "consumer stopped (CancelledError" in panel.snapshot_html()
        assert "consumer stopped" in panel._rows["redis"].status.value


async def test_a_bus_whose_broker_is_unreachable_shows_an_unknown_backlog(panels) -> None:
    bus = RedisEventBus(RedisEventBusConfig(redis_url="redis://127.0.0.1:1/0"))
    panel = BrokerPanel(["redis"])
    panels.append(panel)
    panel.watch(bus)
    await panel.refresh()
    assert panel.backlogs[bus] == {"pending": None, "dlq": None}
    assert "backlog unknown" in panel.snapshot_html()


def test_the_mimebundle_carries_a_static_snapshot() -> None:
    panel = BrokerPanel(["redis", "kafka"])
    bundle = panel._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert "<table" in bundle["text/html"] and "kafka" in bundle["text/html"]
    assert "not started" in bundle["text/html"]
