"""Exercise 2: a wildcard audit handler that records every event's type and aggregate."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import uuid4

from ..bus import InMemoryEventBus
from ..demo import OrderCancelled, OrderPlaced, OrderShipped
from ..events import DomainEvent
from ._core import Feedback, Problem, exercise, failed, passed

NAME = "wildcard_audit"


class RefundIssued(DomainEvent):
    """An event type the audit log has never heard of (not registered: it never leaves here)."""

    event_type: str = "RefundIssued"
    aggregate_type: str = "Payment"
    amount: float


def _events() -> list[DomainEvent]:
    order, payment = uuid4(), uuid4()
    return [
        OrderPlaced(aggregate_id=order, customer_name="Ada", total_amount=30.0),
        OrderShipped(aggregate_id=order, tracking_number="T-1", aggregate_version=2),
        OrderCancelled(aggregate_id=uuid4(), reason="changed mind"),
        RefundIssued(aggregate_id=payment, amount=30.0),
    ]


@exercise(NAME, "Add a wildcard audit handler", "ex02_wildcard_audit", after="07_07_wildcards")
async def check_wildcard_audit(audit_class: type, attach: Callable[[Any, Any], Any]) -> Feedback:
    """``audit_class``: the handler class (``entries`` list); ``attach(bus, audit)`` subscribes."""
    bus = InMemoryEventBus()
    audit = audit_class()
    attach(bus, audit)
    events = _events()
    await bus.publish(events)
    await bus.shutdown()
    entries = list(getattr(audit, "entries", []))
    expected = [(e.event_type, e.aggregate_id) for e in events]
    problems = []
    if bus.get_wildcard_subscriber_count() != 1:
        problems.append(
            Problem(
                "attach() made no wildcard subscription, so the audit only hears the types you "
                "listed, and misses every event type added later (a RefundIssued, say)",
                "use bus.subscribe_to_all_events(audit): one call, every type, present and future",
            )
        )
    seen_types = {entry[0] if isinstance(entry, tuple) else entry for entry in entries}
    missed = [e.event_type for e in events if e.event_type not in seen_types]
    if missed:
        problems.append(
            Problem(
                f"the audit received {len(entries)} of {len(events)} events; it missed "
                f"{', '.join(missed)}",
                "an audit log must see everything: subscribe it as a wildcard handler",
            )
        )
    elif entries != expected:
        sample = entries[0] if entries else None
        problems.append(
            Problem(
                f"the entries should be (event_type, aggregate_id) tuples in arrival order; the "
                f"first one is {sample!r}",
                "in handle(), append (event.event_type, event.aggregate_id) to self.entries",
            )
        )
    if problems:
        return failed(NAME, problems)
    return passed(
        NAME,
        "subscribe_to_all_events() puts the audit in the bus's wildcard list, which every "
        "publish reaches after the typed handlers: it recorded all four events, RefundIssued "
        "included, a type it never named.",
    )
