"""Formatting the matrix, and the ordering probes' verdicts where no broker is needed."""

import json
from uuid import uuid4

from eventsource_lab.matrix import (
    PROBES,
    Cell,
    Matrix,
    _reordered,
    _run_cell,
    bus_factory,
    format_table,
)


def test_table_numbers_each_difference_and_each_unavailable_bus_once() -> None:
    matrix = Matrix(
        rows=[("a", "claim a"), ("b", "claim b")],
        buses=["memory", "kafka"],
        cells={
            "a": {"memory": Cell("holds"), "kafka": Cell("unavailable", "no tansu")},
            "b": {
                "memory": Cell("differs", "no retries"),
                "kafka": Cell("unavailable", "no tansu"),
            },
        },
    )
    text = format_table(matrix)
    assert text.splitlines()[1].split() == ["a", "holds", "unavailable", "[1]"]
    assert text.splitlines()[2].split() == ["b", "differs", "[2]", "unavailable", "[1]"]
    assert "[1] kafka: no tansu" in text and "[2] memory b: no retries" in text
    assert json.loads(matrix.to_json())["cells"]["b"]["memory"] == {
        "outcome": "differs",
        "note": "no retries",
    }


def test_table_footnotes_what_does_not_apply_but_not_what_holds() -> None:
    matrix = Matrix(
        rows=[("order", "claim")],
        buses=["memory", "kafka"],
        cells={
            "order": {
                "memory": Cell("n/a", "no consumer groups"),
                "kafka": Cell("holds", "all 25 aggregates in order"),
            }
        },
    )
    text = format_table(matrix)
    assert text.splitlines()[1].split() == ["order", "n/a", "[1]", "holds"]
    assert "[1] memory order: no consumer groups" in text
    assert "all 25 aggregates" not in text  # what holds is kept in the data, not footnoted


def test_reordered_names_each_aggregate_handled_out_of_version_order() -> None:
    a, b, c = uuid4(), uuid4(), uuid4()
    handled = [(a, 1), (b, 2), (a, 2), (b, 1), (c, 1), (b, 3), (c, 3), (c, 2), (b, 0)]
    assert _reordered(handled) == {b: (1, 2), c: (2, 3)}
    assert _reordered([(a, 1), (a, 2), (b, 1)]) == {}


async def test_ordering_probes_do_not_apply_to_the_in_memory_bus() -> None:
    probes = {p.name: p for p in PROBES}
    memory = bus_factory("memory", None)
    group = await _run_cell(memory, probes["keeps_aggregate_order_in_a_group"].check, 1)
    retry = await _run_cell(memory, probes["keeps_aggregate_order_after_a_retry"].check, 1)
    assert group == Cell(
        "n/a",
        "no consumer groups: the publishing process runs every handler itself, inside "
        "publish(), in publish order",
    )
    assert retry.outcome == "n/a"
    assert retry.note.startswith("no retries: each failing event is skipped, so 25 of 200 ")
