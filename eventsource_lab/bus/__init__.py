"""The event-bus family: one API (:class:`EventBus`), one module per transport."""

from ..events import DomainEvent
from .base import EventBus
from .broker import BrokerEventBus, DeadLetter
from .kafka import KafkaEventBus, KafkaEventBusConfig
from .memory import InMemoryEventBus
from .rabbitmq import RabbitMQEventBus, RabbitMQEventBusConfig
from .redis import RedisEventBus, RedisEventBusConfig

__all__ = [
    "BrokerEventBus",
    "DeadLetter",
    "DomainEvent",
    "EventBus",
    "InMemoryEventBus",
    "KafkaEventBus",
    "KafkaEventBusConfig",
    "RabbitMQEventBus",
    "RabbitMQEventBusConfig",
    "RedisEventBus",
    "RedisEventBusConfig",
]
