"""RabbitMQEventBus without a broker: its configuration, names, routing keys and bindings."""

from __future__ import annotations

from uuid import uuid4

import pytest
from pydantic import ValidationError

from eventsource_lab import DomainEvent
from eventsource_lab.bus.rabbitmq import RabbitMQEventBus, RabbitMQEventBusConfig, _routing_key
from tests.support.events import OrderPlaced


def test_url_comes_from_the_environment_else_localhost(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVENTSOURCE_LAB_RABBITMQ_URL", "amqp://10.9.9.9:5673/vh")
    assert RabbitMQEventBusConfig().rabbitmq_url == "amqp://10.9.9.9:5673/vh"
    monkeypatch.delenv("EVENTSOURCE_LAB_RABBITMQ_URL")
    assert RabbitMQEventBusConfig().rabbitmq_url == "amqp://localhost:5672/"


def test_spec_fields_defaults_and_queue_names() -> None:
    config = RabbitMQEventBusConfig(
        rabbitmq_url="amqp://localhost:5672/",
        exchange_name="events",
        consumer_group="projections",
        max_retries=3,
        enable_dlq=True,
    )
    assert (config.exchange_type, config.prefetch_count, config.durable) == ("topic", 100, True)
    assert (config.heartbeat, config.retry_delay) == (60, 0.1)
    assert config.queue == "events.projections"
    assert config.retry_queue == "events.projections.retry"
    assert config.dlq_queue == "events.projections.dlq"
    assert RabbitMQEventBusConfig().consumer_name != RabbitMQEventBusConfig().consumer_name


@pytest.mark.parametrize(
    "bad",
    [
        {"exchange_type": "headers"},
        {"prefetch_count": 0},
        {"heartbeat": -1},
        {"exchange_name": ""},
        {"max_retries": -1},
        {"rabbit_url": "typo"},
    ],
)
def test_bad_settings_are_refused_by_name(bad: dict) -> None:
    with pytest.raises(ValidationError, match=next(iter(bad))):
        RabbitMQEventBusConfig(**bad)


def test_routing_key_is_aggregate_type_dot_event_type() -> None:
    event = OrderPlaced(aggregate_id=uuid4(), customer_name="a", total_amount=1)
    assert _routing_key(event) == "Order.OrderPlaced"


@pytest.mark.parametrize(
    ("exchange_type", "keys"), [("topic", ["#.OrderPlaced"]), ("direct", ["Order.OrderPlaced"])]
)
async def test_bind_event_type_before_connecting_records_the_binding_key(
    exchange_type: str, keys: list[str]
) -> None:
    bus = RabbitMQEventBus(RabbitMQEventBusConfig(exchange_type=exchange_type))
    await bus.bind_event_type(OrderPlaced)
    await bus.bind_event_type(OrderPlaced)
    assert bus._bindings == keys
    assert not bus.is_connected  # applied at the broker when consuming starts


async def test_a_fanout_exchange_refuses_single_type_bindings() -> None:
    bus = RabbitMQEventBus(RabbitMQEventBusConfig(exchange_type="fanout"))
    with pytest.raises(ValueError, match="fanout exchange gives every queue every event"):
        await bus.bind_event_type(OrderPlaced)
    assert bus._bindings == []


@pytest.mark.parametrize("not_a_type", [DomainEvent, str])
async def test_binding_needs_a_domain_event_subclass(not_a_type: type) -> None:
    bus = RabbitMQEventBus()
    with pytest.raises(TypeError):
        await bus.bind_event_type(not_a_type)
    assert bus._bindings == []
