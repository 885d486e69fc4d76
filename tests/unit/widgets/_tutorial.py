"""The tutorial's handlers over the shared test events, for the widget tests.

``eventsource_lab.demo`` registers the same event types as ``tests.support.events``, so one
test process cannot import both; these mirror the demo's handlers on the test events.
"""

from __future__ import annotations

from uuid import uuid4

from eventsource_lab import DomainEvent, InMemoryEventBus
from tests.support.events import OrderCancelled, OrderPlaced, OrderShipped

__all__ = [
    "AuditLogger",
    "Failing",
    "NotificationHandler",
    "OrderCancelled",
    "OrderPlaced",
    "OrderShipped",
    "OrderSummaryProjection",
    "placed",
    "shipped",
    "tutorial_bus",
]


class OrderSummaryProjection:
    """Subscribed to three types through ``subscribe_all``."""

    def __init__(self) -> None:
        self.seen: list[DomainEvent] = []

    def subscribed_to(self) -> list[type[DomainEvent]]:
        return [OrderPlaced, OrderShipped, OrderCancelled]

    async def handle(self, event: DomainEvent) -> None:
        self.seen.append(event)


class NotificationHandler:
    """A typed handler."""

    async def handle(self, event: DomainEvent) -> None:
        pass


class AuditLogger:
    """The wildcard handler."""

    async def handle(self, event: DomainEvent) -> None:
        pass


class Failing:
    """A handler that always raises."""

    async def handle(self, event: DomainEvent) -> None:
        raise RuntimeError("boom")


def placed() -> OrderPlaced:
    return OrderPlaced(aggregate_id=uuid4(), customer_name="Ada", total_amount=10.0)


def shipped() -> OrderShipped:
    return OrderShipped(aggregate_id=uuid4(), tracking_number="T-1")


def tutorial_bus() -> InMemoryEventBus:
    """The tutorial's wiring: a projection on three types, one typed handler, one wildcard."""
    bus = InMemoryEventBus()
    bus.subscribe_all(OrderSummaryProjection())
    bus.subscribe(OrderPlaced, NotificationHandler())
    bus.subscribe_to_all_events(AuditLogger())
    return bus
