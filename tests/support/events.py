"""The tests use the tutorial's own order domain, from its complete example."""

from eventsource_lab.demo import (
    OrderAggregate,
    OrderCancelled,
    OrderPlaced,
    OrderShipped,
    OrderState,
)

__all__ = ["OrderAggregate", "OrderCancelled", "OrderPlaced", "OrderShipped", "OrderState"]
