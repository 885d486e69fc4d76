"""The tutorial's "Complete Working Example", as ``python -m eventsource_lab demo`` runs it.

Kept as close to the tutorial text as possible (``eventsource`` -> ``eventsource_lab``, and the
tutorial's ``bus`` typo in ``main()`` read as ``event_bus``), so its output matches the tutorial's.
"""

import asyncio
from collections import defaultdict
from uuid import UUID, uuid4

from pydantic import BaseModel

from eventsource_lab import (
    AggregateRepository,
    AggregateRoot,
    DomainEvent,
    InMemoryEventBus,
    InMemoryEventStore,
    register_event,
)

# =============================================================================
# Events
# =============================================================================


@register_event
class OrderPlaced(DomainEvent):
    event_type: str = "OrderPlaced"
    aggregate_type: str = "Order"
    customer_name: str
    total_amount: float


@register_event
class OrderShipped(DomainEvent):
    event_type: str = "OrderShipped"
    aggregate_type: str = "Order"
    tracking_number: str


@register_event
class OrderCancelled(DomainEvent):
    event_type: str = "OrderCancelled"
    aggregate_type: str = "Order"
    reason: str


# =============================================================================
# Aggregate
# =============================================================================


class OrderState(BaseModel):
    order_id: UUID
    customer_name: str = ""
    total_amount: float = 0.0
    status: str = "draft"


class OrderAggregate(AggregateRoot[OrderState]):
    aggregate_type = "Order"

    def _get_initial_state(self) -> OrderState:
        return OrderState(order_id=self.aggregate_id)

    def _apply(self, event: DomainEvent) -> None:
        if isinstance(event, OrderPlaced):
            self._state = OrderState(
                order_id=self.aggregate_id,
                customer_name=event.customer_name,
                total_amount=event.total_amount,
                status="placed",
            )
        elif isinstance(event, OrderShipped):
            if self._state:
                self._state = self._state.model_copy(update={"status": "shipped"})
        elif isinstance(event, OrderCancelled):
            if self._state:
                self._state = self._state.model_copy(update={"status": "cancelled"})

    def place(self, customer_name: str, total_amount: float) -> None:
        if self.version > 0:
            raise ValueError("Order already placed")
        event = OrderPlaced(
            aggregate_id=self.aggregate_id,
            customer_name=customer_name,
            total_amount=total_amount,
            aggregate_version=self.get_next_version(),
        )
        self.apply_event(event)

    def ship(self, tracking_number: str) -> None:
        if not self.state or self.state.status != "placed":
            raise ValueError("Order must be placed to ship")
        event = OrderShipped(
            aggregate_id=self.aggregate_id,
            tracking_number=tracking_number,
            aggregate_version=self.get_next_version(),
        )
        self.apply_event(event)

    def cancel(self, reason: str) -> None:
        if not self.state or self.state.status in ("shipped", "cancelled"):
            raise ValueError("Cannot cancel this order")
        event = OrderCancelled(
            aggregate_id=self.aggregate_id,
            reason=reason,
            aggregate_version=self.get_next_version(),
        )
        self.apply_event(event)


# =============================================================================
# Projections
# =============================================================================


class OrderSummaryProjection:
    """Maintains order counts and revenue."""

    def __init__(self):
        self.order_counts: dict[str, int] = defaultdict(int)
        self.total_revenue: float = 0.0

    def subscribed_to(self) -> list[type[DomainEvent]]:
        return [OrderPlaced, OrderShipped, OrderCancelled]

    async def handle(self, event: DomainEvent) -> None:
        if isinstance(event, OrderPlaced):
            self.order_counts["placed"] += 1
            self.total_revenue += event.total_amount
        elif isinstance(event, OrderShipped):
            if self.order_counts["placed"] > 0:
                self.order_counts["placed"] -= 1
            self.order_counts["shipped"] += 1
        elif isinstance(event, OrderCancelled):
            for status in ["placed", "shipped"]:
                if self.order_counts[status] > 0:
                    self.order_counts[status] -= 1
                    break
            self.order_counts["cancelled"] += 1


# =============================================================================
# Handlers
# =============================================================================


class NotificationHandler:
    """Sends notifications when orders are placed."""

    def __init__(self):
        self.notifications_sent = 0

    async def handle(self, event: DomainEvent) -> None:
        if isinstance(event, OrderPlaced):
            print(f"   [Notification] Order placed by {event.customer_name}")
            self.notifications_sent += 1


class AuditLogger:
    """Logs all events for audit trail."""

    def __init__(self):
        self.audit_log: list[dict] = []

    async def handle(self, event: DomainEvent) -> None:
        entry = {
            "event_type": event.event_type,
            "aggregate_id": str(event.aggregate_id),
            "aggregate_type": event.aggregate_type,
            "timestamp": event.occurred_at,
        }
        self.audit_log.append(entry)


# =============================================================================
# Demo
# =============================================================================


async def main():
    print("=" * 60)
    print("Tutorial 7: Event Bus")
    print("=" * 60)

    # Setup infrastructure
    print("\n1. Setting up infrastructure...")
    event_store = InMemoryEventStore()
    event_bus = InMemoryEventBus()
    repo = AggregateRepository(
        event_store=event_store,
        aggregate_factory=OrderAggregate,
        aggregate_type="Order",
        event_publisher=event_bus,  # Auto-publish on save
    )
    print("   - Event store, bus, and repository initialized")

    # Create handlers and projections
    print("\n2. Creating handlers and projections...")
    projection = OrderSummaryProjection()
    notifications = NotificationHandler()
    audit_logger = AuditLogger()

    # Subscribe to event bus
    print("\n3. Subscribing to event bus...")
    event_bus.subscribe_all(projection)  # OrderPlaced, OrderShipped, OrderCancelled
    event_bus.subscribe(OrderPlaced, notifications)  # Specific event type
    event_bus.subscribe_to_all_events(audit_logger)  # Wildcard - all events
    print(f"   - Projection subscribed to {len(projection.subscribed_to())} event types")
    print("   - Notification handler subscribed to OrderPlaced")
    print("   - Audit logger subscribed to all events")

    # Create and publish orders
    print("\n4. Creating orders...")
    order_ids = []
    for i in range(3):
        order_id = uuid4()
        order_ids.append(order_id)
        order = repo.create_new(order_id)
        order.place(f"Customer {i + 1}", 100.0 + i * 50)
        await repo.save(order)  # Triggers event bus automatically
    print(f"   Created {len(order_ids)} orders")

    # Ship one order
    print("\n5. Shipping an order...")
    order = await repo.load(order_ids[0])
    order.ship("TRACK-123")
    await repo.save(order)
    print("   Order shipped")

    # Cancel one order
    print("\n6. Cancelling an order...")
    order = await repo.load(order_ids[1])
    order.cancel("Customer request")
    await repo.save(order)
    print("   Order cancelled")

    # Query projection
    print("\n7. Querying projection:")
    print(f"   Total revenue: ${projection.total_revenue:.2f}")
    print(f"   Order counts: {dict(projection.order_counts)}")

    # Check notifications
    print("\n8. Notification handler:")
    print(f"   Notifications sent: {notifications.notifications_sent}")

    # Check audit log
    print("\n9. Audit log:")
    print(f"   Total events logged: {len(audit_logger.audit_log)}")
    for entry in audit_logger.audit_log[:3]:  # Show first 3
        print(f"   - {entry['event_type']} on {entry['aggregate_type']}")

    # Event bus statistics
    print("\n10. Event bus statistics:")
    stats = event_bus.get_stats()
    print(f"   Events published: {stats['events_published']}")
    print(f"   Handlers invoked: {stats['handlers_invoked']}")
    print(f"   Handler errors: {stats['handler_errors']}")
    print(f"\n   Subscribers for OrderPlaced: {event_bus.get_subscriber_count(OrderPlaced)}")
    print(f"   Wildcard subscribers: {event_bus.get_wildcard_subscriber_count()}")

    # Shutdown
    print("\n11. Shutting down...")
    await event_bus.shutdown()
    print("   Event bus shutdown complete")

    print("\n" + "=" * 60)
    print("Tutorial complete!")
    print("=" * 60)


if __name__ == "__main__":
    asyncio.run(main())
