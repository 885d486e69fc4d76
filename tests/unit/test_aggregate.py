"""AggregateRoot: applying, versioning, history and committed events."""

from uuid import uuid4

import pytest

from tests.support.events import (
    OrderAggregate,
    OrderCancelled,
    OrderPlaced,
    OrderShipped,
    OrderState,
)


def test_new_aggregate_starts_at_version_zero_with_no_state() -> None:
    order = OrderAggregate(uuid4())
    assert order.version == 0
    assert order.get_next_version() == 1
    assert order.state is None
    assert order.uncommitted_events == []


def test_cancelling_an_order_never_placed_is_refused() -> None:
    """The tutorial's guard ``if not self.state`` must see no state on a fresh aggregate."""
    order = OrderAggregate(uuid4())
    with pytest.raises(ValueError, match="Cannot cancel this order"):
        order.cancel("Customer request")
    assert (order.version, order.state, order.uncommitted_events) == (0, None, [])


def test_the_first_event_is_applied_to_the_initial_state() -> None:
    """An ``_apply`` that only updates the state finds ``_get_initial_state()`` there."""
    order = OrderAggregate(uuid4())
    order.apply_event(OrderCancelled(aggregate_id=order.aggregate_id, reason="never placed"))
    assert order.state == OrderState(order_id=order.aggregate_id, status="cancelled")


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
