"""FanoutView on a real bus: counts per node and edge, failures, subscription changes, cleanup."""

from collections.abc import AsyncIterator
from uuid import uuid4

import pytest

from eventsource_lab import InMemoryEventBus
from eventsource_lab.bus import RedisEventBus, RedisEventBusConfig
from eventsource_lab.testing import eventually
from eventsource_lab.widgets import FanoutView

from ._tutorial import (
    AuditLogger,
    Failing,
    NotificationHandler,
    OrderCancelled,
    OrderPlaced,
    OrderShipped,
    OrderSummaryProjection,
    placed,
    shipped,
    tutorial_bus,
)


async def test_counts_each_delivery_on_its_nodes_and_edges():
    bus = tutorial_bus()
    view = FanoutView(bus)
    await bus.publish([placed(), placed(), placed()])

    assert view.counts == {
        "OrderPlaced": 3,
        "OrderPlaced->OrderSummaryProjection": 3,
        "OrderPlaced->NotificationHandler": 3,
        "*->AuditLogger": 3,
    }
    assert view.failures == {}
    await eventually(lambda: "3 events" in view.svg, what="a redraw with the counts")
    assert view.svg.count("3 calls") == 3
    view.close()


async def test_a_handler_of_several_types_is_one_node_with_an_edge_per_type():
    bus = tutorial_bus()
    view = FanoutView(bus)
    await bus.publish([placed(), shipped()])
    view.refresh()

    assert view.svg.count("<title>OrderSummaryProjection</title>") == 1
    for event_type in (OrderPlaced, OrderShipped, OrderCancelled):
        assert f"<title>{event_type.__name__}</title>" in view.svg
    assert view.counts["OrderShipped->OrderSummaryProjection"] == 1
    assert "OrderCancelled->OrderSummaryProjection" not in view.counts
    assert view.svg.count("class='edge'") == 3 + 3 + 1 + 2  # publisher, projection, typed, *
    assert "wildcard handlers" in view.svg
    view.close()


async def test_failed_deliveries_are_counted_and_drawn_red():
    bus = tutorial_bus()
    failing = Failing()
    bus.subscribe(OrderPlaced, failing)
    view = FanoutView(bus)
    await bus.publish([placed(), placed()])
    view.refresh()

    assert view.counts["OrderPlaced->Failing"] == 2
    assert view.failures == {"OrderPlaced->Failing": 2}
    assert "✗ 2 failed" in view.svg
    assert "✗2" in view.svg
    view.close()


async def test_a_failing_wildcard_handler_fails_on_its_wildcard_edge():
    bus = InMemoryEventBus()
    bus.subscribe_to_all_events(Failing())
    view = FanoutView(bus)
    await bus.publish([placed(), shipped()])

    assert view.counts == {"OrderPlaced": 1, "OrderShipped": 1, "*->Failing": 2}
    assert view.failures == {"*->Failing": 2}
    view.close()


async def test_subscription_changes_show_on_refresh():
    bus = tutorial_bus()
    extra = Failing()
    bus.subscribe(OrderShipped, extra)
    view = FanoutView(bus)
    assert "<title>Failing</title>" in view.svg
    bus.unsubscribe(OrderShipped, extra)
    view.refresh()

    assert "Failing" not in view.svg
    assert "<title>NotificationHandler</title>" in view.svg
    bus.clear_subscribers()
    view.refresh()
    assert "AuditLogger" not in view.svg
    assert "no subscriptions yet" in view.svg
    view.close()


async def test_an_event_nobody_handles_still_shows_as_published():
    bus = InMemoryEventBus()
    view = FanoutView(bus)
    await bus.publish([shipped()])
    view.refresh()

    assert view.counts == {"OrderShipped": 1}
    assert "1 event · no handler" in view.svg
    view.close()


async def test_names_are_escaped():
    bus = InMemoryEventBus()

    def handler(event) -> None:
        pass

    handler.__qualname__ = "<img src=x onerror='alert(1)'>"
    bus.subscribe(OrderPlaced, handler)
    view = FanoutView(bus)
    assert "<img" not in view.svg
    assert "&lt;img src=x onerror=&#x27;alert(1)&#x27;&gt;" in view.svg
    view.close()


async def test_the_snapshot_and_the_mimebundle_carry_the_svg():
    bus = tutorial_bus()
    view = FanoutView(bus)
    await bus.publish([placed()])

    html = view.snapshot_html()
    assert html.startswith("<div") and view.svg in html and "<svg" in html
    bundle = view._repr_mimebundle_()
    assert bundle["text/html"] == html
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["text/plain"] == "FanoutView(InMemoryEventBus, 1 events seen)"
    view.close()


async def test_close_detaches_and_keeps_the_last_frame():
    bus = tutorial_bus()
    view = FanoutView(bus)
    await bus.publish([placed()])
    view.close()
    view.close()
    frame = view.svg
    await bus.publish([placed(), shipped()])

    assert view.counts["OrderPlaced"] == 1 and "OrderShipped" not in view.counts
    assert view.closed and view.svg == frame
    assert "text/html" in view._repr_mimebundle_()


def test_works_without_a_running_event_loop():
    view = FanoutView(tutorial_bus())
    assert "<title>OrderPlaced</title>" in view.svg
    view.close()


@pytest.mark.redis
class TestOnRedis:
    @pytest.fixture
    async def bus(self, redis_broker) -> AsyncIterator[RedisEventBus]:
        config = RedisEventBusConfig(
            redis_url=redis_broker.url,
            stream_prefix=f"widgets-{uuid4().hex[:8]}",
            block_ms=100,
            max_retries=2,
            retry_delay=0.01,
        )
        async with RedisEventBus(config) as bus:
            yield bus

    async def test_counts_events_delivered_by_the_consumer(self, bus):
        bus.subscribe_all(OrderSummaryProjection())
        bus.subscribe(OrderPlaced, NotificationHandler())
        bus.subscribe_to_all_events(AuditLogger())
        view = FanoutView(bus)
        await bus.start_consuming()
        await bus.publish([placed(), placed(), shipped()])

        await eventually(lambda: view.counts.get("*->AuditLogger") == 3)
        assert view.counts == {
            "OrderPlaced": 2,
            "OrderPlaced->OrderSummaryProjection": 2,
            "OrderPlaced->NotificationHandler": 2,
            "*->AuditLogger": 3,
            "OrderShipped": 1,
            "OrderShipped->OrderSummaryProjection": 1,
        }
        await eventually(lambda: "3 calls" in view.svg, what="a throttled redraw")
        assert "RedisEventBus" in view.svg
        view.close()

    async def test_retries_count_on_the_edge_not_on_the_event_type(self, bus):
        bus.subscribe(OrderPlaced, Failing())
        bus.subscribe(OrderPlaced, NotificationHandler())
        view = FanoutView(bus)
        await bus.start_consuming()
        await bus.publish([placed()])

        await eventually(lambda: bus.get_stats()["messages_dead_lettered"] == 1)
        assert view.counts == {
            "OrderPlaced": 1,
            "OrderPlaced->Failing": 3,
            "OrderPlaced->NotificationHandler": 1,
        }
        assert view.failures == {"OrderPlaced->Failing": 3}
        view.close()
