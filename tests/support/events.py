"""Events and an aggregate shared by the tests: the tutorial's order domain."""

from __future__ import annotations

from uuid import UUID

from pydantic import BaseModel

from eventsource_lab import AggregateRoot, DomainEvent, register_event


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
        assert self._state is not None
        if isinstance(event, OrderPlaced):
            self._state = self._state.model_copy(
                update={
                    "customer_name": event.customer_name,
                    "total_amount": event.total_amount,
                    "status": "placed",
                }
            )
        elif isinstance(event, OrderShipped):
            self._state = self._state.model_copy(update={"status": "shipped"})
        elif isinstance(event, OrderCancelled):
            self._state = self._state.model_copy(update={"status": "cancelled"})

    def place(self, customer_name: str, total_amount: float) -> None:
        self.apply_event(
            OrderPlaced(
                aggregate_id=self.aggregate_id,
                customer_name=customer_name,
                total_amount=total_amount,
                aggregate_version=self.get_next_version(),
            )
        )

    def ship(self, tracking_number: str) -> None:
        self.apply_event(
            OrderShipped(
                aggregate_id=self.aggregate_id,
                tracking_number=tracking_number,
                aggregate_version=self.get_next_version(),
            )
        )
