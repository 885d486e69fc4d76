"""The static charts: the matrix table numbers each difference once; the bar chart is valid SVG
with a bar per measured row."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from eventsource_lab.matrix import Cell, Matrix
from eventsource_lab.widgets.charts import bar_chart_svg, matrix_table_html

SVG = "{http://www.w3.org/2000/svg}"


def _matrix() -> Matrix:
    return Matrix(
        rows=[("a", "claim <a>"), ("b", "claim b")],
        buses=["memory", "redis"],
        cells={
            "a": {"memory": Cell("differs", "no retries"), "redis": Cell("holds")},
            "b": {"memory": Cell("differs", "no retries"), "redis": Cell("unavailable", "gone")},
        },
    )


def test_matrix_table_shows_every_cell_and_numbers_each_note_once() -> None:
    html = matrix_table_html(_matrix().to_json())
    assert html.count("<tr>") == 3  # header and two rows
    assert html.count("✓ holds") == 1 and html.count("✗ differs") == 2
    assert html.count("<li ") == 2  # "memory: no retries" once, "redis: gone" once
    assert "claim &lt;a&gt;" in html  # escaped, never run


def test_matrix_table_takes_parsed_json_too() -> None:
    text = _matrix().to_json()
    assert matrix_table_html(json.loads(text)) == matrix_table_html(text)


def test_bar_chart_is_svg_with_a_bar_per_measured_row() -> None:
    rows = [
        {"bus": "memory", "ratio": 5.4},
        {"bus": "redis", "ratio": 0.8},
        {"bus": "kafka", "unavailable": "no broker"},
    ]
    svg = ET.fromstring(bar_chart_svg(rows, title="bus / baseline", clip=2.0))
    bars = svg.findall(f"{SVG}rect")
    assert [bar.find(f"{SVG}title").text for bar in bars] == [
        "memory: 5.40\N{MULTIPLICATION SIGN}",
        "redis: 0.80\N{MULTIPLICATION SIGN}",
    ]
    assert float(bars[0].get("width")) > 2 * float(bars[1].get("width"))  # clipped, not scaled
    texts = [t.text for t in svg.iter(f"{SVG}text")]
    assert "n/a" in texts and "baseline (1.00\N{MULTIPLICATION SIGN})" in texts
    assert svg.findall(f"{SVG}line"), "the reference line at 1"
