"""DomainEvent defaults and validation; the registry's rules."""

from __future__ import annotations

from datetime import timezone
from uuid import UUID, uuid4

import pytest
from pydantic import ValidationError

import eventsource_lab
import eventsource_lab.events
from eventsource_lab import DomainEvent, EventRegistry, get_event_registry
from eventsource_lab.bus.redis import RedisEventBus
from eventsource_lab.errors import DuplicateEventTypeError, UnknownEventTypeError
from tests.support.events import OrderPlaced


class Unnamed(DomainEvent):
    note: str = ""


def test_defaults_fill_identity_and_time() -> None:
    a = OrderPlaced(aggregate_id=uuid4(), customer_name="A", total_amount=1.0)
    b = OrderPlaced(aggregate_id=uuid4(), customer_name="A", total_amount=1.0)
    assert isinstance(a.event_id, UUID) and a.event_id != b.event_id
    assert a.occurred_at.tzinfo is timezone.utc
    assert a.aggregate_version == 1
    assert (a.event_type, a.aggregate_type) == ("OrderPlaced", "Order")


def test_event_type_defaults_to_the_class_name() -> None:
    assert Unnamed(aggregate_id=uuid4()).event_type == "Unnamed"


def test_events_are_immutable() -> None:
    event = Unnamed(aggregate_id=uuid4())
    with pytest.raises(ValidationError):
        event.note = "changed"  # type: ignore[misc]


@pytest.mark.parametrize(
    "fields",
    [{}, {"aggregate_id": "not-a-uuid"}, {"aggregate_id": uuid4(), "aggregate_version": 0}],
    ids=["no-aggregate-id", "bad-uuid", "version-0"],
)
def test_invalid_events_are_refused(fields: dict) -> None:
    with pytest.raises(ValidationError):
        Unnamed(**fields)


def test_json_round_trip_keeps_every_field() -> None:
    event = OrderPlaced(aggregate_id=uuid4(), customer_name="Ü", total_amount=2.5)
    assert OrderPlaced.model_validate_json(event.model_dump_json()) == event


def test_registry_returns_the_registered_class() -> None:
    registry = EventRegistry()
    assert registry.register(OrderPlaced) is OrderPlaced
    assert registry.get("OrderPlaced") is OrderPlaced
    assert "OrderPlaced" in registry and len(registry) == 1
    assert registry.event_types() == ["OrderPlaced"]


def test_registering_the_same_class_twice_is_harmless() -> None:
    registry = EventRegistry()
    registry.register(OrderPlaced)
    registry.register(OrderPlaced)
    assert len(registry) == 1


def test_two_classes_under_one_event_type_is_an_error() -> None:
    registry = EventRegistry()
    registry.register(OrderPlaced)

    class Impostor(DomainEvent):
        event_type: str = "OrderPlaced"

    with pytest.raises(DuplicateEventTypeError, match=r"already registered to .*OrderPlaced"):
        registry.register(Impostor)
    assert registry.get("OrderPlaced") is OrderPlaced


def test_redefining_a_class_in_place_replaces_it() -> None:
    """Re-running a notebook cell defines a new class with the same module and name."""
    registry = EventRegistry()

    def define() -> type[DomainEvent]:
        class Rerun(DomainEvent):
            pass

        return registry.register(Rerun)

    first, second = define(), define()
    assert first is not second
    assert registry.get("Rerun") is second


def test_unknown_event_type_names_what_is_registered() -> None:
    registry = EventRegistry()
    registry.register(OrderPlaced)
    with pytest.raises(UnknownEventTypeError, match=r"'Nope'.*OrderPlaced.*@register_event"):
        registry.get("Nope")


def test_register_rejects_what_is_not_an_event_class() -> None:
    with pytest.raises(TypeError, match="DomainEvent subclass"):
        EventRegistry().register(dict)  # type: ignore[type-var]


def test_default_registry_is_shared_and_filled_by_the_decorator() -> None:
    assert eventsource_lab.get_event_registry() is eventsource_lab.events.get_event_registry()
    assert get_event_registry().get("OrderPlaced") is OrderPlaced


def test_an_empty_registry_filled_later_is_the_one_used() -> None:
    """``registry or get_event_registry()`` must not swap a caller's empty registry away."""
    mine = EventRegistry()
    assert mine and len(mine) == 0
    assert (mine or get_event_registry()) is mine
    bus = RedisEventBus(event_registry=mine)

    class FilledLater(DomainEvent):
        pass

    mine.register(FilledLater)
    assert bus.event_registry is mine
    assert bus.event_registry.get("FilledLater") is FilledLater
    assert "FilledLater" not in get_event_registry()
