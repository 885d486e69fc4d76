"""The fan-out picture as SVG text: publisher -> event types -> handlers, wildcards apart.

Pure drawing: it takes the subscription table and the counters and returns a string, so the
picture is the same live, in a static snapshot and in a test.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ._html import FAILED_COLOR, escape, truncate

__all__ = ["FanoutGraph", "draw_fanout"]

NODE_H = 40
PORT = 16  # vertical room per incoming edge on a handler
GAP = 12
TOP = 30
PUBLISHER = (16, 150)  # x, width
TYPES = (230, 200)
HANDLERS = (520, 220)
WIDTH = HANDLERS[0] + HANDLERS[1] + 16
FONT = "system-ui, -apple-system, 'Segoe UI', sans-serif"
COLORS = {
    "publisher": ("#dbe4ff", "#4263eb"),
    "type": ("#e7f5ff", "#1c7ed6"),
    "hub": ("#f1f3f5", "#868e96"),
    "handler": ("#ebfbee", "#2f9e44"),
}


@dataclass
class FanoutGraph:
    """What to draw: typed subscriptions (type -> handler names), wildcard handler names, and
    the counters keyed as in ``FanoutView.counts`` (``"T"``, ``"T->H"``, ``"*->H"``)."""

    bus_name: str
    typed: dict[str, list[str]]
    wildcard: list[str]
    counts: dict[str, int] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class _Box:
    x: float
    y: float
    w: float
    h: float = NODE_H

    @property
    def right(self) -> tuple[float, float]:
        return self.x + self.w, self.y + self.h / 2

    def port(self, index: int, of: int) -> tuple[float, float]:
        """Where incoming edge ``index`` of ``of`` arrives on the left side."""
        return self.x, self.y + self.h * (index + 1) / (of + 1)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _column(
    x: float, w: float, names: list[str], top: float, height: float, heights: dict[str, float]
) -> dict[str, _Box]:
    """Boxes for ``names`` stacked in a column ``height`` tall, centred vertically."""
    used = sum(heights.get(n, NODE_H) + GAP for n in names)
    y = top + (height - used) / 2
    boxes = {}
    for name in names:
        boxes[name] = _Box(x, y, w, heights.get(name, NODE_H))
        y += boxes[name].h + GAP
    return boxes


def _stack_height(names: list[str], heights: dict[str, float]) -> float:
    return sum(heights.get(n, NODE_H) + GAP for n in names)


def _node(box: _Box, kind: str, title: str, label: str, detail: str, failed: int = 0) -> str:
    fill, stroke = COLORS[kind]
    if failed:
        stroke = FAILED_COLOR
    chars = int((box.w - 16) / 7)
    bad = (
        f"<tspan fill='{FAILED_COLOR}' font-weight='bold'> · ✗ {failed} failed</tspan>"
        if failed
        else ""
    )
    return (
        f"<g class='node {kind}'><title>{escape(title)}</title>"
        f"<rect x='{box.x}' y='{box.y}' width='{box.w}' height='{box.h}' rx='6' "
        f"fill='{fill}' stroke='{stroke}' stroke-width='1.5'/>"
        f"<text x='{box.x + 8}' y='{box.y + box.h / 2 - 4}' font-weight='bold'>"
        f"{escape(truncate(label, chars))}</text>"
        f"<text x='{box.x + 8}' y='{box.y + box.h / 2 + 12}' fill='#495057'>"
        f"{escape(detail)}{bad}</text></g>"
    )


def _edge(start: tuple[float, float], end: tuple[float, float], count: int, failed: int) -> str:
    """A curve from ``start`` to ``end``, its count written on it just before the arrow."""
    (x1, y1), (x2, y2) = start, end
    mid = (x1 + x2) / 2
    stroke = FAILED_COLOR if failed else ("#868e96" if count else "#ced4da")
    dash = "" if count else " stroke-dasharray='4 3'"
    bad = f"<tspan fill='{FAILED_COLOR}' font-weight='bold'> ✗{failed}</tspan>" if failed else ""
    return (
        f"<g class='edge'><path d='M{x1},{y1} C{mid},{y1} {mid},{y2} {x2 - 4},{y2}' fill='none' "
        f"stroke='{stroke}' stroke-width='1.5'{dash} marker-end='url(#esl-arrow)'/>"
        f"<text x='{x2 - 12}' y='{y2 + 4}' text-anchor='end' stroke='white' stroke-width='4' "
        f"paint-order='stroke'>{count}{bad}</text></g>"
    )


def _handler(box: _Box, name: str, keys: list[str], graph: FanoutGraph) -> str:
    calls = sum(graph.counts.get(k, 0) for k in keys)
    failed = sum(graph.failures.get(k, 0) for k in keys)
    return _node(box, "handler", name, name, _plural(calls, "call"), failed)


def draw_fanout(graph: FanoutGraph) -> str:
    """The SVG of ``graph``: one node per event type and per handler, counts on every edge."""
    seen = [t for t in graph.counts if "->" not in t and t not in graph.typed]
    types = list(graph.typed) + seen
    feeds: dict[str, list[str]] = {}  # handler -> the event types it gets, top to bottom
    for event_type, names in graph.typed.items():
        for name in dict.fromkeys(names):
            feeds.setdefault(name, []).append(event_type)
    # each handler level with the middle of its event types: fewer crossing edges
    handlers = sorted(feeds, key=lambda h: sum(types.index(t) for t in feeds[h]) / len(feeds[h]))
    heights = {h: max(NODE_H, PORT * len(feeds[h]) + 8) for h in handlers}
    wildcard = list(dict.fromkeys(graph.wildcard))

    section = max(_stack_height(types, {}), _stack_height(handlers, heights))
    type_boxes = _column(*TYPES, types, TOP, section, {})
    handler_boxes = _column(*HANDLERS, handlers, TOP, section, heights)
    bottom = TOP + section
    wild_boxes: dict[str, _Box] = {}
    parts: list[str] = []
    if wildcard:
        group_top = bottom + (8 if types else 0)
        top = group_top + 22
        height = _stack_height(wildcard, {})
        hub = _column(*TYPES, ["*"], top, height, {})["*"]
        wild_boxes = _column(*HANDLERS, wildcard, top, height, {})
        bottom = top + height
        parts.append(
            f"<g class='wildcard-group'><rect x='{TYPES[0] - 10}' y='{group_top}' "
            f"width='{WIDTH - TYPES[0]}' height='{bottom - group_top}' rx='8' fill='none' "
            f"stroke='#adb5bd' stroke-dasharray='6 4'/><text x='{TYPES[0] - 2}' "
            f"y='{group_top + 15}' fill='#868e96'>wildcard handlers: every event</text></g>"
        )
    bottom = max(bottom, TOP + NODE_H + GAP)  # room for the publisher on an empty bus
    height = bottom + 18
    publisher = _Box(PUBLISHER[0], (TOP + bottom - GAP - NODE_H) / 2, PUBLISHER[1])
    total = sum(graph.counts.get(t, 0) for t in types)

    for event_type, box in type_boxes.items():
        parts.append(_edge(publisher.right, box.port(0, 1), graph.counts.get(event_type, 0), 0))
    for name in handlers:
        for index, event_type in enumerate(feeds[name]):
            key = f"{event_type}->{name}"
            end = handler_boxes[name].port(index, len(feeds[name]))
            count, failed = graph.counts.get(key, 0), graph.failures.get(key, 0)
            parts.append(_edge(type_boxes[event_type].right, end, count, failed))
    if wildcard:
        parts.append(_edge(publisher.right, hub.port(0, 1), total, 0))
        for name, box in wild_boxes.items():
            key = f"*->{name}"
            count, failed = graph.counts.get(key, 0), graph.failures.get(key, 0)
            parts.append(_edge(hub.right, box.port(0, 1), count, failed))
        parts.append(
            _node(hub, "hub", "every event type", "* every event", _plural(total, "event"))
        )
        parts.extend(_handler(box, n, [f"*->{n}"], graph) for n, box in wild_boxes.items())

    for event_type, box in type_boxes.items():
        detail = _plural(graph.counts.get(event_type, 0), "event")
        if event_type not in graph.typed:
            detail += " · no handler"
        parts.append(_node(box, "type", event_type, event_type, detail))
    parts.extend(
        _handler(box, n, [f"{t}->{n}" for t in feeds[n]], graph) for n, box in handler_boxes.items()
    )
    parts.append(_node(publisher, "publisher", graph.bus_name, "publish()", graph.bus_name))
    if not types and not wildcard:
        parts.append(
            f"<text x='{TYPES[0]}' y='{TOP + 25}' fill='#868e96'>no subscriptions yet</text>"
        )
    return _svg(graph.bus_name, height, "".join(parts))


def _svg(bus_name: str, height: float, body: str) -> str:
    headings = "".join(
        f"<text x='{x}' y='16' fill='#868e96' font-weight='bold'>{label}</text>"
        for x, label in (
            (PUBLISHER[0], "publisher"),
            (TYPES[0], "event types"),
            (HANDLERS[0], "handlers"),
        )
    )
    legend = (
        f"<text x='{PUBLISHER[0]}' y='{height - 6}' fill='#868e96'>numbers: deliveries so far "
        f"(on edges, retries included) · <tspan fill='{FAILED_COLOR}'>✗ n</tspan>: failed</text>"
    )
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' class='eventsource-lab-fanout' width='{WIDTH}' "
        f"height='{height}' viewBox='0 0 {WIDTH} {height}' role='img' "
        f"aria-label='fan-out of {escape(bus_name)}' font-family=\"{FONT}\" font-size='12'>"
        "<defs><marker id='esl-arrow' viewBox='0 0 10 10' refX='9' refY='5' markerWidth='7' "
        "markerHeight='7' orient='auto-start-reverse'><path d='M0,0 L10,5 L0,10 z' "
        "fill='#868e96'/></marker></defs>"
        f"{headings}{body}{legend}</svg>"
    )
