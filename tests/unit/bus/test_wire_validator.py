"""``wire.decode`` validates through ``__pydantic_validator__.validate_json`` rather than
``model_validate_json``: every body must still give what ``model_validate_json`` gives (the same
event, or a refusal), and nothing but a ``wire.DecodeError`` may escape ``decode``."""

from __future__ import annotations

import math
from typing import Any
from uuid import UUID, uuid4

import pytest
from pydantic import BaseModel, ValidationError, field_validator, model_validator

from eventsource_lab import DomainEvent, EventRegistry
from eventsource_lab.bus import wire

AGGREGATE = UUID("12345678-1234-5678-1234-567812345678")


class Checked(DomainEvent):
    """Field and model validators, and ``model_post_init``, all of which must run on decode."""

    name: str
    amount: float = 0.0
    count: int = 0

    @field_validator("name")
    @classmethod
    def _upper(cls, value: str) -> str:
        if value == "reject":
            raise ValueError("name may not be 'reject'")
        return value.upper()

    @model_validator(mode="before")
    @classmethod
    def _count_from_alias(cls, data: Any) -> Any:
        if isinstance(data, dict) and "n" in data:
            data = {**data, "count": data["n"]}
            del data["n"]
        return data

    @model_validator(mode="after")
    def _positive(self) -> Checked:
        if self.count < 0:
            raise ValueError("count must not be negative")
        return self

    def model_post_init(self, context: Any, /) -> None:
        object.__setattr__(self, "_seen", True)  # frozen: only object.__setattr__ gets through


class Forward(DomainEvent):
    """Defined with a forward reference to a model declared after it."""

    detail: Later


class Later(BaseModel):
    text: str


Forward.model_rebuild()


class Nested(DomainEvent):
    items: list[dict[str, Any]] = []


@pytest.fixture
def registry() -> EventRegistry:
    registry = EventRegistry()
    for cls in (Checked, Forward, Nested):
        registry.register(cls)
    return registry


def _body(event_type: str, **fields: Any) -> str:
    import json

    base = {
        "event_type": event_type,
        "event_id": "00000000-0000-4000-8000-000000000001",
        "aggregate_id": str(AGGREGATE),
        "occurred_at": "2026-01-01T00:00:00Z",
    }
    return json.dumps({**base, **fields})


BODIES: list[tuple[str, str | bytes]] = [
    ("plain", _body("Checked", name="abc", amount=1.5)),
    ("field validator rejects", _body("Checked", name="reject")),
    ("before model validator", _body("Checked", name="x", n=3)),
    ("after model validator rejects", _body("Checked", name="x", count=-1)),
    ("extra field", _body("Checked", name="x", unknown={"a": 1})),
    ("huge int", _body("Checked", name="x", count=10**40)),
    ("huge int as float", _body("Checked", name="x", amount=10**400)),
    ("bool for int", _body("Checked", name="x", count=True)),
    ("int as string", _body("Checked", name="x", count="7")),
    ("float for int", _body("Checked", name="x", count=2.5)),
    ("NaN constant", _body("Checked", name="x").replace("}", ', "amount": NaN}')),
    ("Infinity constant", _body("Checked", name="x").replace("}", ', "amount": -Infinity}')),
    ("forward ref", _body("Forward", detail={"text": "t"})),
    ("forward ref wrong", _body("Forward", detail={"text": 1})),
    ("version 0", _body("Checked", name="x", aggregate_version=0)),
    ("naive time", _body("Checked", name="x", occurred_at="2026-01-01T00:00:00")),
    ("nested", _body("Nested", items=[{"a": [1, 2, {"b": None}]}] * 50)),
    ("non-ASCII", _body("Checked", name="Zoë ✓ \U0001f600")),
    ("lone surrogate escape", _body("Checked", name="x").replace('"X"', '"\\ud800"')),
    ("duplicate key", _body("Checked", name="a")[:-1] + ', "name": "b"}'),
    ("trailing garbage", _body("Checked", name="x") + " xx"),
]


def _outcome(call: Any) -> tuple[str, Any]:
    try:
        event = call()
    except ValidationError as exc:
        return "invalid", [(e["type"], e["loc"]) for e in exc.errors()]
    return "event", (type(event), event.model_dump_json())  # JSON: NaN equals NaN


@pytest.mark.parametrize("kind", ["bytes", "bytearray", "memoryview"])
@pytest.mark.parametrize(("name", "body"), BODIES, ids=[name for name, _ in BODIES])
def test_decode_gives_what_model_validate_json_gives(registry, name, body, kind) -> None:
    raw = body.encode() if isinstance(body, str) else body
    data = {"bytes": raw, "bytearray": bytearray(raw), "memoryview": memoryview(raw)}[kind]
    cls = registry.get(raw.split(b'"event_type": "')[1].split(b'"')[0].decode())
    expected = _outcome(lambda: cls.model_validate_json(data))  # type: ignore[arg-type]
    try:
        decoded = wire.decode(data, registry)
    except wire.MalformedMessageError:
        got: tuple[str, Any] = ("invalid", None)
    else:
        got = ("event", (type(decoded), decoded.model_dump_json()))
        if isinstance(decoded, Checked):
            assert decoded.__dict__ is not None and getattr(decoded, "_seen", False)
    assert got[0] == expected[0], (name, expected)
    if got[0] == "event":
        assert got == expected


def test_the_decoded_event_is_frozen_like_model_validate_jsons(registry) -> None:
    data = _body("Checked", name="x").encode()
    decoded = wire.decode(data, registry)
    with pytest.raises(ValidationError):
        decoded.name = "y"  # type: ignore[misc]
    assert decoded == Checked.model_validate_json(data)


def test_nan_round_trips_as_model_validate_json_reads_it(registry) -> None:
    event = Checked(aggregate_id=AGGREGATE, name="x", amount=math.nan)
    data = wire.encode(event)
    decoded = wire.decode(data, registry)
    assert math.isnan(decoded.amount)
    assert math.isnan(Checked.model_validate_json(data).amount)


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xfe\x00{}",
        b'{"event_type": "Checked", "name": "\xff\xfe"}',
        b'{"event_type": "Checked", "aggregate_id": "' + str(AGGREGATE).encode() + b'", '
        b'"name": "\xed\xa0\x80"}',  # an encoded surrogate: invalid UTF-8
        b'{"event_type": "Checked"' + b", " * 0 + b"}" + b"\x00",
        b'{"event_type": "Checked", "name": ' + b"[" * 20_000 + b"]" * 20_000 + b"}",
        b'{"event_type": "Checked", "aggregate_id": "'
        + str(AGGREGATE).encode()
        + b'", "name": "x", "count": '
        + b"9" * 5_000
        + b"}",
        b'{"event_type": "Checked", "aggregate_id": "'
        + str(AGGREGATE).encode()
        + b'", "name": "x", "amount": 1e400}',
    ],
)
@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_bad_bodies_raise_only_decode_errors(registry, data, kind) -> None:
    try:
        event = wire.decode(kind(data), registry)
    except wire.DecodeError:
        return
    # Accepted: then model_validate_json must have accepted it too, to the same event.
    expected = Checked.model_validate_json(data)
    assert event.model_dump_json(exclude={"event_id", "occurred_at"}) == expected.model_dump_json(
        exclude={"event_id", "occurred_at"}
    )


def test_a_forward_reference_rebuilt_later_decodes(registry) -> None:
    event = Forward(aggregate_id=uuid4(), detail=Later(text="t"))
    assert wire.decode(wire.encode(event), registry) == event


class Unbuilt(DomainEvent):
    """A forward reference nobody rebuilds: the first decode must complete the class."""

    detail: Afterwards


class Afterwards(BaseModel):
    text: str


class Unresolvable(DomainEvent):
    """A forward reference to a name that never exists."""

    detail: NeverDefined  # type: ignore[name-defined]  # noqa: F821


def test_a_forward_reference_never_rebuilt_decodes_as_model_validate_json_does() -> None:
    registry = EventRegistry()
    registry.register(Unbuilt)
    data = _body("Unbuilt", detail={"text": "t"}).encode()
    decoded = wire.decode(data, registry)
    assert decoded == Unbuilt.model_validate_json(data)
    assert decoded.detail == Afterwards(text="t")


def test_an_unresolvable_forward_reference_is_a_decode_error() -> None:
    registry = EventRegistry()
    registry.register(Unresolvable)
    data = _body("Unresolvable", detail={"text": "t"}).encode()
    with pytest.raises(wire.MalformedMessageError):
        wire.decode(data, registry)
