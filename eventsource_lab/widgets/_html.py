"""Escaping and small static-HTML pieces the widgets share, so every name is shown, not run."""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from uuid import UUID

__all__ = ["FAILED_COLOR", "escape", "short_id", "snapshot", "table", "truncate"]

FAILED_COLOR = "#c92a2a"
"""The one red every widget uses for failures."""


def escape(value: object) -> str:
    """``value`` as text safe inside HTML or SVG, attributes included (names are user data)."""
    return html.escape(str(value), quote=True)


def truncate(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, with an ellipsis when cut."""
    return text if len(text) <= width else text[: width - 1] + "…"


def short_id(value: UUID | str) -> str:
    """The first 8 hex digits of an id and an ellipsis (the notebooks' sanitizer knows it)."""
    return str(value).replace("-", "")[:8] + "…"


def table(
    headers: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    css_class: str = "",
    empty: str = "nothing yet",
) -> str:
    """A plain HTML table; ``headers`` are escaped here, cells must already be safe HTML."""
    head = "".join(f"<th style='text-align:left;padding:2px 8px'>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td style='padding:2px 8px'>{cell}</td>" for cell in row) + "</tr>"
        for row in rows
    )
    if not body:
        cell = f"<td colspan='{len(headers)}' style='padding:2px 8px'><i>{escape(empty)}</i></td>"
        body = f"<tr>{cell}</tr>"
    return (
        f"<table class='{escape(css_class)}' style='border-collapse:collapse;font-size:13px'>"
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    )


def snapshot(inner: str) -> str:
    """``inner`` (safe HTML) wrapped as a widget's static snapshot."""
    return f"<div class='eventsource-lab-widget'>{inner}</div>"
