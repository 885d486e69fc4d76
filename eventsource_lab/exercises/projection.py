"""Exercise 1: a projection that ``subscribe_all()`` can subscribe, counting orders and revenue."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from ..bus import InMemoryEventBus
from ..demo import OrderCancelled, OrderPlaced, OrderShipped
from ._core import Feedback, Problem, exercise, failed, passed

NAME = "projection"
ORDER_TYPES = (OrderPlaced, OrderShipped, OrderCancelled)


def _story() -> list[Any]:
    """Three orders (100, 150, 200); the first ships, the second is cancelled."""
    ids = [uuid4() for _ in range(3)]
    placed = [
        OrderPlaced(aggregate_id=ids[i], customer_name=f"Customer {i + 1}", total_amount=amount)
        for i, amount in enumerate((100.0, 150.0, 200.0))
    ]
    return [
        *placed,
        OrderShipped(aggregate_id=ids[0], tracking_number="TRACK-123", aggregate_version=2),
        OrderCancelled(aggregate_id=ids[1], reason="Customer request", aggregate_version=2),
    ]


@exercise(
    NAME,
    "Write a projection for subscribe_all()",
    "ex01_projection",
    after="07_04_projections_subscribe_all",
)
async def check_projection(projection_class: type) -> Feedback:
    """``projection_class``: the class (it is instantiated with no arguments)."""
    if not isinstance(projection_class, type):
        return failed(
            NAME,
            [
                Problem(
                    f"check() wants the class, got {type(projection_class).__name__}",
                    "pass the class itself: check('projection', OrderSummaryProjection)",
                )
            ],
        )
    projection = projection_class()
    declared = getattr(projection, "subscribed_to", None)
    if not callable(declared):
        return failed(
            NAME,
            [
                Problem(
                    "the projection has no subscribed_to() method, so subscribe_all() cannot "
                    "know which events it needs",
                    "add def subscribed_to(self) returning the list of event classes",
                )
            ],
        )
    types = list(declared())
    problems = []
    missing = [t.__name__ for t in ORDER_TYPES if t not in types]
    if missing:
        problems.append(
            Problem(
                f"subscribed_to() does not declare {', '.join(missing)}, so subscribe_all() "
                f"never subscribes the projection to {'it' if len(missing) == 1 else 'them'}",
                "return every class handle() deals with: [OrderPlaced, OrderShipped, "
                "OrderCancelled]",
            )
        )
    bus = InMemoryEventBus()
    bus.subscribe_all(projection)
    await bus.publish(_story())
    await bus.shutdown()
    revenue = getattr(projection, "total_revenue", None)
    counts = dict(getattr(projection, "order_counts", {}) or {})
    expected = {"placed": 1, "shipped": 1, "cancelled": 1}
    if revenue != 450.0:
        problems.append(
            Problem(
                f"total_revenue is {revenue!r} after three orders of 100, 150 and 200; "
                "expected 450.0",
                "add event.total_amount to self.total_revenue for every OrderPlaced (Tutorial 7 "
                "keeps a cancelled order's revenue)",
            )
        )
    for status, want in expected.items():
        got = counts.get(status, 0)
        if got == want:
            continue
        if status == "placed":
            hint = (
                "an order that ships or is cancelled is no longer 'placed': subtract one from "
                "order_counts['placed'] when it moves on"
            )
        elif status == "shipped":
            hint = "add one to order_counts['shipped'] for every OrderShipped"
        else:
            hint = (
                "for OrderCancelled, add one to 'cancelled'; and what was the order before it "
                "was cancelled?"
            )
        problems.append(
            Problem(
                f"order_counts[{status!r}] is {got} after 3 placed, 1 shipped, 1 cancelled; "
                f"expected {want}",
                hint,
            )
        )
    if problems:
        return failed(NAME, problems)
    return passed(
        NAME,
        "subscribe_all() read your subscribed_to() and subscribed the projection to all three "
        "order events with one call; handle() then kept the read model in step: revenue "
        "450.0, and each order counted under its current status only.",
    )
