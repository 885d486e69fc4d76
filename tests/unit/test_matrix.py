"""Formatting the matrix: differences are numbered once, unavailable buses noted once."""

import json

from eventsource_lab.matrix import Cell, Matrix, format_table


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
