"""EventTimeline on a real bus: one row per event, failures, retries folded in, cleanup."""

from uuid import uuid4

import pytest

from eventsource_lab import InMemoryEventBus
from eventsource_lab.bus import RedisEventBus, RedisEventBusConfig
from eventsource_lab.testing import eventually
from eventsource_lab.widgets import EventTimeline

from ._tutorial import (
    AuditLogger,
    Failing,
    NotificationHandler,
    OrderPlaced,
    OrderShipped,
    shipped,
    tutorial_bus,
)


async def test_one_row_per_event_oldest_first():
    bus = tutorial_bus()
    timeline = EventTimeline(bus)
    order = uuid4()
    await bus.publish(
        [
            OrderPlaced(aggregate_id=order, customer_name="Ada", total_amount=5.0),
            OrderShipped(aggregate_id=order, tracking_number="T-1", aggregate_version=2),
        ]
    )

    short = order.hex[:8] + "…"
    assert timeline.rows == [
        {
            "event_type": "OrderPlaced",
            "aggregate_id": short,
            "version": 1,
            "handlers": ["OrderSummaryProjection", "NotificationHandler", "AuditLogger"],
            "failed": [],
        },
        {
            "event_type": "OrderShipped",
            "aggregate_id": short,
            "version": 2,
            "handlers": ["OrderSummaryProjection", "AuditLogger"],
            "failed": [],
        },
    ]
    await eventually(lambda: "OrderShipped" in timeline.children[0].value, what="a redraw")
    timeline.close()


async def test_keeps_only_the_last_limit_events():
    bus = InMemoryEventBus()
    timeline = EventTimeline(bus, limit=2)
    events = [OrderShipped(aggregate_id=uuid4(), tracking_number=f"T-{i}") for i in range(5)]
    await bus.publish(events)

    assert [r["aggregate_id"] for r in timeline.rows] == [
        e.aggregate_id.hex[:8] + "…" for e in events[-2:]
    ]
    assert [r["handlers"] for r in timeline.rows] == [[], []]
    timeline.close()


async def test_failed_handlers_are_listed_and_shown_red():
    bus = InMemoryEventBus()
    bus.subscribe(OrderShipped, Failing())
    bus.subscribe_to_all_events(AuditLogger())
    timeline = EventTimeline(bus)
    await bus.publish([shipped()])

    assert timeline.rows[0]["handlers"] == ["Failing", "AuditLogger"]
    assert timeline.rows[0]["failed"] == ["Failing"]
    assert "color:#c92a2a" in timeline.snapshot_html()
    assert "✗ Failing" in timeline.snapshot_html()
    timeline.close()


async def test_names_are_escaped_and_the_snapshot_is_in_the_mimebundle():
    bus = InMemoryEventBus()

    def handler(event) -> None:
        pass

    handler.__qualname__ = "<b>bold</b>"
    bus.subscribe(OrderShipped, handler)
    timeline = EventTimeline(bus)
    assert "no events yet" in timeline.snapshot_html()
    await bus.publish([shipped()])

    html = timeline.snapshot_html()
    assert "<b>bold" not in html and "&lt;b&gt;bold&lt;/b&gt;" in html
    bundle = timeline._repr_mimebundle_()
    assert bundle["text/html"] == html
    assert "application/vnd.jupyter.widget-view+json" in bundle
    timeline.close()


async def test_close_detaches():
    bus = InMemoryEventBus()
    timeline = EventTimeline(bus)
    await bus.publish([shipped()])
    timeline.close()
    await bus.publish([OrderShipped(aggregate_id=uuid4(), tracking_number="T-2")])

    assert len(timeline.rows) == 1
    assert "T-2" not in timeline.children[0].value


def test_limit_must_be_positive():
    with pytest.raises(ValueError, match="limit"):
        EventTimeline(InMemoryEventBus(), limit=0)


@pytest.mark.redis
async def test_retries_update_the_events_row(redis_broker):
    config = RedisEventBusConfig(
        redis_url=redis_broker.url,
        stream_prefix=f"widgets-{uuid4().hex[:8]}",
        block_ms=100,
        max_retries=2,
        retry_delay=0.01,
    )
    async with RedisEventBus(config) as bus:
        bus.subscribe(OrderShipped, Failing())
        bus.subscribe(OrderShipped, NotificationHandler())
        timeline = EventTimeline(bus)
        await bus.start_consuming()
        await bus.publish([shipped()])

        await eventually(lambda: bus.get_stats()["messages_dead_lettered"] == 1)
        assert len(timeline.rows) == 1
        assert timeline.rows[0]["handlers"] == ["Failing", "NotificationHandler"]
        assert timeline.rows[0]["failed"] == ["Failing"]
        assert "after 3 attempts" in timeline.snapshot_html()

        (letter,) = await bus.get_dlq_messages()
        assert await bus.replay_dlq_message(letter.id)
        await eventually(lambda: len(timeline.rows) == 2, what="the replay as a new row")
        timeline.close()
