"""AggregateRoot: applying, versioning, history and committed events."""

from uuid import uuid4

import pytest

from tests.support.events import OrderAggregate, OrderPlaced, OrderShipped


def test_new_aggregate_starts_at_version_zero_with_initial_state() -> None:
    order = OrderAggregate(uuid4())
    assert order.version == 0
    assert order.get_next_version() == 1
    assert order.state is not None and order.state.status == "draft"
    assert order.uncommitted_events == []


def test_commands_apply_and_collect_events() -> None:
    order = OrderAggregate(uuid4())
    order.place("Alice", 10.0)
    order.ship("T-1")
    assert order.version == 2
    assert order.state.status == "shipped"
    assert [e.event_type for e in order.uncommitted_events] == ["OrderPlaced", "OrderShipped"]
    order.mark_events_as_committed()
    assert order.uncommitted_events == [] and order.version == 2


def test_history_rebuilds_state_without_new_events() -> None:
    aggregate_id = uuid4()
    history = [
        OrderPlaced(aggregate_id=aggregate_id, customer_name="B", total_amount=5.0),
        OrderShipped(aggregate_id=aggregate_id, tracking_number="T", aggregate_version=2),
    ]
    order = OrderAggregate(aggregate_id)
    order.load_from_history(history)
    assert (order.version, order.state.status, order.state.customer_name) == (2, "shipped", "B")
    assert order.uncommitted_events == []


def test_an_event_with_the_wrong_version_is_refused() -> None:
    order = OrderAggregate(uuid4())
    skipped = OrderPlaced(
        aggregate_id=order.aggregate_id, customer_name="C", total_amount=1, aggregate_version=2
    )
    with pytest.raises(ValueError, match="expected 1"):
        order.apply_event(skipped)
    assert order.version == 0 and order.uncommitted_events == []


def test_an_event_of_another_aggregate_is_refused() -> None:
    order = OrderAggregate(uuid4())
    with pytest.raises(ValueError, match="belongs to aggregate"):
        order.apply_event(OrderPlaced(aggregate_id=uuid4(), customer_name="D", total_amount=1))
