"""Static charts for comparing buses: the conformance matrix as a table, benchmark figures as bars.

Pure functions from data (the JSON that ``python -m eventsource_lab conformance --json`` and
``benchmarks/run_all.py --json`` write) to HTML or SVG text, so a saved notebook shows them
without a kernel and a test can read them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ._html import escape

__all__ = ["OUTCOMES", "bar_chart_svg", "matrix_table_html"]

OUTCOMES = {
    "holds": ("✓ holds", "#ebfbee", "#2b8a3e"),
    "differs": ("✗ differs", "#fff4e6", "#d9480f"),
    "unavailable": ("n/a", "#f1f3f5", "#868e96"),
}
"""How each outcome of a matrix cell is shown: label, background, text colour."""

_FONT = "system-ui, -apple-system, Segoe UI, sans-serif"
_CELL = "padding:4px 8px;border:1px solid #dee2e6;vertical-align:top"


def matrix_table_html(matrix_json: str | Mapping[str, Any]) -> str:
    """The conformance matrix as an HTML table: a row per behaviour (name and claim), a coloured
    cell per bus, and under it one numbered note per difference saying how that bus differs.

    Args:
        matrix_json: the matrix as ``Matrix.to_json()`` writes it, as text or already parsed.
    """
    matrix = json.loads(matrix_json) if isinstance(matrix_json, str) else matrix_json
    buses: list[str] = list(matrix["buses"])
    notes: dict[str, int] = {}
    head = "".join(f"<th style='{_CELL};text-align:center'>{escape(b)}</th>" for b in buses)
    body = []
    for name, claim in matrix["rows"]:
        cells = []
        for bus in buses:
            cell = matrix["cells"][name][bus]
            label, background, color = OUTCOMES.get(cell["outcome"], OUTCOMES["unavailable"])
            mark = ""
            if cell["outcome"] != "holds" and cell.get("note"):
                number = notes.setdefault(f"{bus}: {cell['note']}", len(notes) + 1)
                mark = f" <sup>[{number}]</sup>"
            cells.append(
                f"<td style='{_CELL};background:{background};color:{color};"
                f"text-align:center;white-space:nowrap'>{escape(label)}{mark}</td>"
            )
        title = (
            f"<code>{escape(name)}</code><br>"
            f"<span style='color:#495057;font-size:12px'>{escape(claim)}</span>"
        )
        body.append(f"<tr><td style='{_CELL}'>{title}</td>{''.join(cells)}</tr>")
    footnotes = "".join(
        f"<li value='{number}'>{escape(note)}</li>" for note, number in notes.items()
    )
    return (
        f"<div style='font-family:{_FONT};font-size:13px'>"
        "<table style='border-collapse:collapse'>"
        f"<thead><tr><th style='{_CELL};text-align:left'>behaviour</th>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>"
        + (f"<ol style='margin:6px 0 0 0;color:#495057'>{footnotes}</ol>" if footnotes else "")
        + "</div>"
    )


def bar_chart_svg(
    rows: Sequence[Mapping[str, Any]],
    *,
    value: str = "ratio",
    label: str = "bus",
    title: str = "",
    reference: float | None = 1.0,
    reference_label: str = "baseline",
    clip: float | None = None,
    fmt: str = "{:.2f}\N{MULTIPLICATION SIGN}",
) -> str:
    """Horizontal bars, one per row, as SVG text (benchmark rows by default: each bus's
    throughput as a multiple of its raw client's, with a line at 1).

    Args:
        rows: mappings with a ``label`` and a numeric ``value``; a row without the value (a bus
            that was unavailable) gets a label and "n/a" instead of a bar.
        title: drawn above the bars.
        reference: where to draw a dashed line (``None``: none), named ``reference_label``.
        clip: the axis ends here; a longer bar is cut, marked with a break and its value.
        fmt: how a value is written beside its bar.
    """
    values = [float(r[value]) for r in rows if isinstance(r.get(value), (int, float))]
    top = clip or max([*values, reference or 0.0, 1e-9]) * 1.1
    left, width, bar_h, gap = 100, 360, 22, 8
    y0 = 28 if title else 8
    height = y0 + len(rows) * (bar_h + gap) + 24
    scale = width / top
    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{left + width + 90}' height='{height}' "
        f"font-family=\"{_FONT}\" font-size='13'>"
    ]
    if title:
        parts.append(f"<text x='0' y='16' font-weight='bold'>{escape(title)}</text>")
    for i, row in enumerate(rows):
        y = y0 + i * (bar_h + gap)
        text_y = y + bar_h / 2 + 4
        parts.append(
            f"<text x='{left - 8}' y='{text_y}' text-anchor='end'>{escape(row[label])}</text>"
        )
        number = row.get(value)
        if not isinstance(number, (int, float)):
            parts.append(f"<text x='{left + 4}' y='{text_y}' fill='#868e96'>n/a</text>")
            continue
        cut = clip is not None and number > clip
        length = width if cut else max(1.0, number * scale)
        parts.append(
            f"<rect x='{left}' y='{y}' width='{length:.1f}' height='{bar_h}' fill='#4c6ef5'>"
            f"<title>{escape(row[label])}: {escape(fmt.format(number))}</title></rect>"
        )
        if cut:
            x = left + width - 14
            parts.append(
                f"<path d='M{x} {y - 2} l6 {bar_h + 4} M{x + 6} {y - 2} l6 {bar_h + 4}' "
                "stroke='white' stroke-width='3'/>"
            )
        parts.append(
            f"<text x='{left + length + 6:.1f}' y='{text_y}'>{escape(fmt.format(number))}</text>"
        )
    if reference is not None and reference <= top:
        x = left + reference * scale
        bottom = height - 20
        parts.append(
            f"<line x1='{x:.1f}' y1='{y0 - 4}' x2='{x:.1f}' y2='{bottom}' stroke='#495057' "
            "stroke-dasharray='4 3'/>"
            f"<text x='{x:.1f}' y='{bottom + 14}' text-anchor='middle' fill='#495057' "
            f"font-size='11'>{escape(reference_label)} ({escape(fmt.format(reference))})</text>"
        )
    parts.append("</svg>")
    return "".join(parts)
