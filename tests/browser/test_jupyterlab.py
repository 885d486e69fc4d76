"""The notebooks in a real browser: JupyterLab runs every cell and the widgets render live.

For each notebook: open it, clear the committed outputs, "Run > Run All Cells", wait until every
code cell has its execution count, then read the page: no traceback and no widget that failed
to display; as many live widgets as the committed notebook has; the fan-out SVG with the
expected event types and handlers and their counts; the stats panel with the expected totals;
the broker panel's rows; and the widget state committed with the notebook saying the same.
A full-page screenshot of each notebook goes to ``test-artifacts/browser/``.

``EVENTSOURCE_LAB_README_IMAGE=1`` also writes ``docs/images/fanout-and-stats.png`` (the 07.06
widgets alone) for the README.
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import re
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from .conftest import ROOT, Lab

pytestmark = pytest.mark.browser

ARTIFACTS = ROOT / "test-artifacts" / "browser"
README_IMAGE = ROOT / "docs" / "images" / "fanout-and-stats.png"
README_IMAGE_FLAG = "EVENTSOURCE_LAB_README_IMAGE"
README_IMAGE_MAX_BYTES = 300_000
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
SVG = "{http://www.w3.org/2000/svg}"

# Timeouts, in milliseconds.
OPEN_TIMEOUT = 30_000
RUN_TIMEOUT = 60_000
RENDER_TIMEOUT = 10_000


@dataclass(frozen=True)
class Expected:
    """What a notebook shows once all its cells ran, each widget kind in page order.

    ``fanouts``: per FanoutView, every event-type and handler node's name and detail line as
    drawn (``"2 events"``, ``"1 call · ✗ 1 failed"``). ``stats``: per StatsPanel, totals that
    must show (a subset of its counters). ``brokers``: per BrokerPanel row, its kind and a
    pattern its status line matches. ``clusters``: per ClusterView, its rows' states (sorted)
    and its backlog line. ``printed``: ``Label: n`` lines some cell prints.
    """

    fanouts: list[dict[str, str]] = field(default_factory=list)
    stats: list[dict[str, int]] = field(default_factory=list)
    brokers: list[tuple[str, str]] = field(default_factory=list)
    clusters: list[dict[str, Any]] = field(default_factory=list)
    printed: dict[str, int] = field(default_factory=dict)


STOPPED_REDIS = r"^stopped · \w+ · redis://\S+ · not answering"

NOTEBOOKS = {
    # One OrderPlaced to the four handlers the view was drawn with, then one more after
    # charge_card joined and failed: 2 events, 9 handler calls, 1 error.
    "07_06_fan_out_and_error_isolation.ipynb": Expected(
        fanouts=[
            {
                "OrderPlaced": "2 events",
                "send_email": "2 calls",
                "update_inventory": "2 calls",
                "send_slack_notification": "2 calls",
                "OrderAnalytics": "2 calls",
                "charge_card": "1 call · ✗ 1 failed",
            }
        ],
        stats=[{"events_published": 2, "handlers_invoked": 9, "handler_errors": 1}],
        printed={"Events published": 2, "Handlers invoked": 9, "Handler errors": 1},
    ),
    # A split broker notebook, the quickest: four consumers in three groups share ten orders (30
    # handler calls); the panel, shown once, ends with the broker stopped.
    "07_13a_redis_groups.ipynb": Expected(
        brokers=[("redis", STOPPED_REDIS)],
        printed={"handler calls in all": 30},
    ),
    # The lab bus: Finn's order fails three times (max_retries=2) and goes to the DLQ; its
    # replay succeeds. The panel is shown twice, and ends with the broker stopped.
    "07_13b_redis_failures.ipynb": Expected(
        stats=[
            {
                "handlers_invoked": 4,
                "handler_errors": 3,
                "events_consumed": 2,
                "events_processed": 1,
                "events_failed": 1,
                "messages_dead_lettered": 1,
            }
        ],
        brokers=[("redis", STOPPED_REDIS), ("redis", STOPPED_REDIS)],
    ),
    # Worker processes: one, then three sharing 600 events; one SIGKILLed mid-stream, the two
    # others stopped at the end with nothing left pending. Every event handled at least once.
    "07_13c_redis_workers.ipynb": Expected(
        brokers=[("redis", STOPPED_REDIS)],
        clusters=[
            {
                "states": ["killed", "stopped", "stopped"],
                "backlog": "group shipping backlog: pending 0, DLQ 0",
            }
        ],
        printed={"published": 600, "missing": 0, "workers in the group": 3},
    ),
}

# -- reading the page -------------------------------------------------------------------------

# Everything the test reads from the rendered widgets: live views only (a widget's output also
# carries a static HTML snapshot, rendered only where no widget manager is).
READ_WIDGETS = """() => {
    const live = [...document.querySelectorAll(
        '.jp-NotebookPanel .jp-OutputArea-output > .jupyter-widgets')];
    const all = selector => live.flatMap(w => [...w.querySelectorAll(selector)]);
    const text = e => e ? e.textContent : null;
    return {
        live: live.length,
        fanouts: all('svg.eventsource-lab-fanout').map(svg => Object.fromEntries(
            [...svg.querySelectorAll('g.node.type, g.node.hub, g.node.handler')].map(g =>
                [text(g.querySelector('title')), text(g.querySelectorAll('text')[1])]))),
        stats: all('table').filter(t =>
                [...t.querySelectorAll('thead th')].map(text).join('|').startsWith('counter|total'))
            .map(t => Object.fromEntries([...t.querySelectorAll('tbody tr')]
                .map(tr => [...tr.querySelectorAll('td')].map(text))
                .filter(cells => cells.length >= 2).map(([k, v]) => [k, Number(v)]))),
        brokers: all('.widget-hbox').filter(row => row.querySelector(':scope > .widget-hprogress'))
            .map(row => {
                const html = row.querySelectorAll(':scope > .widget-html .widget-html-content');
                return [text(html[0]), text(html[html.length - 1])];
            }),
        clusters: live.flatMap(w => w.matches('.eventsource-lab-cluster') ? [w]
                : [...w.querySelectorAll('.eventsource-lab-cluster')])
            .map(view => ({
                states: [...view.querySelectorAll('.eventsource-lab-worker')]
                    .map(row => text(row.querySelectorAll('.widget-html-content')[1])).sort(),
                backlog: text(view.querySelector(
                    '.eventsource-lab-backlog .widget-html-content')),
            })),
    };
}"""

# Whether the widgets, as READ_WIDGETS reads them, show what is expected.
MATCHES = """(got, expected) => {
    const same = (a, b) => Object.keys(a).length === Object.keys(b).length
        && Object.entries(b).every(([k, v]) => a[k] === v);
    const shows = (table, wanted) => Object.entries(wanted).every(([k, v]) => table[k] === v);
    return got.fanouts.length === expected.fanouts.length
        && got.fanouts.every((f, i) => same(f, expected.fanouts[i]))
        && got.stats.length === expected.stats.length
        && got.stats.every((s, i) => shows(s, expected.stats[i]))
        && got.brokers.length === expected.brokers.length
        && got.brokers.every(([kind, status], i) =>
            kind === expected.brokers[i][0] && new RegExp(expected.brokers[i][1]).test(status))
        && JSON.stringify(got.clusters) === JSON.stringify(expected.clusters);
}"""

# They redraw a moment after the cell that changed them (the fan-out throttles its redraws, the
# stats panel refreshes on a timer): wait for that.
WIDGETS_SETTLED = f"expected => ({MATCHES})(({READ_WIDGETS})(), expected)"

# The run is over: no cell queued or running any more, and at least one ran (a cell that fails
# ends "Run All": the cells after it keep an empty prompt).
RUN_FINISHED = """() => {
    const prompts = [...document.querySelectorAll('.jp-NotebookPanel .jp-CodeCell .jp-InputPrompt')]
        .map(p => p.textContent.trim());
    return !prompts.includes('[*]:') && prompts.some(p => /^\\[\\d+\\]:$/.test(p));
}"""

# What went wrong on the page: error outputs (from the notebook model, which knows an error from
# a stderr stream), tracebacks written to stderr, widgets that failed to display.
READ_ERRORS = """() => {
    const errors = [];
    for (const cell of window.jupyterapp.shell.currentWidget.content.model.cells) {
        if (cell.type !== 'code') continue;
        for (const output of cell.outputs.toJSON()) {
            if (output.output_type === 'error') errors.push(`${output.ename}: ${output.evalue}`);
        }
    }
    for (const output of document.querySelectorAll('.jp-NotebookPanel .jp-OutputArea-output')) {
        const text = output.textContent;
        if ((output.dataset.mimeType === 'application/vnd.jupyter.stderr'
                && text.includes('Traceback')) || text.includes('Error displaying widget')) {
            errors.push(text.slice(0, 2000));
        }
    }
    return errors;
}"""


def printed(page: Page, labels: dict[str, int]) -> dict[str, int | None]:
    """The last ``Label: n`` line the outputs show for each label."""
    text = "\n".join(page.locator(".jp-NotebookPanel .jp-OutputArea").all_inner_texts())
    found: dict[str, int | None] = {}
    for label in labels:
        numbers = re.findall(rf"^{re.escape(label)}: (\d+)$", text, flags=re.M)
        found[label] = int(numbers[-1]) if numbers else None
    return found


def subset(tables: list[dict[str, int]], wanted: list[dict[str, int]]) -> list[dict[str, Any]]:
    """Of each stats table, the counters ``wanted`` names (what the test compares)."""
    return [{k: table.get(k) for k in keys} for table, keys in zip(tables, wanted, strict=True)]


def assert_brokers(rows: list[list[str]], expected: list[tuple[str, str]], where: str) -> None:
    assert [kind for kind, _ in rows] == [kind for kind, _ in expected], f"{where}: {rows}"
    for (_, status), (_, pattern) in zip(rows, expected, strict=True):
        assert re.search(pattern, status), f"{where}: {status!r} does not match {pattern!r}"


# -- reading the committed notebook -----------------------------------------------------------


class _Cells(HTMLParser):
    """The text of each table cell, row by row."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self.rows:
            self.rows[-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _fanout_nodes(svg: str) -> dict[str, str]:
    """``{name: detail}`` of the event-type, hub and handler nodes of a fan-out SVG."""
    nodes = {}
    for g in ET.fromstring(svg).iter(f"{SVG}g"):
        if set(g.get("class", "").split()) & {"type", "hub", "handler"}:
            title, texts = g.find(f"{SVG}title"), g.findall(f"{SVG}text")
            nodes[title.text if title is not None else ""] = "".join(texts[1].itertext())
    return nodes


def _stats_table(value: str) -> dict[str, int] | None:
    """``{counter: total}`` of a stats table, or ``None`` if ``value`` holds none."""
    parser = _Cells()
    parser.feed(value)
    if not parser.rows or tuple(parser.rows[0][:2]) != ("counter", "total"):
        return None
    return {row[0]: int(row[1]) for row in parser.rows[1:] if len(row) >= 2}


def _text(value: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", value))


@dataclass
class Widgets:
    """The fan-outs, stats tables, broker rows and cluster views of a notebook, in page order."""

    fanouts: list[dict[str, str]] = field(default_factory=list)
    stats: list[dict[str, int]] = field(default_factory=list)
    brokers: list[list[str]] = field(default_factory=list)
    clusters: list[dict[str, Any]] = field(default_factory=list)


def committed_widgets(notebook: dict[str, Any]) -> tuple[int, Widgets]:
    """How many widget outputs the committed notebook has, and what its stored widget state
    (saved by nbconvert at the end of the run) shows in them."""
    state = notebook["metadata"].get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    found, views = Widgets(), 0

    def model(ref: str) -> dict[str, Any]:
        return state.get(ref.removeprefix("IPY_MODEL_"), {})

    def html_text(ref: str) -> str:
        return _text(model(ref).get("state", {}).get("value", ""))

    def cluster(ref: str) -> dict[str, Any]:
        """A ClusterView's rows' states (the second cell of each row) and backlog line."""
        states, backlog = [], ""
        pending = [ref]
        while pending:
            m = model(pending.pop())
            classes = m.get("state", {}).get("_dom_classes", [])
            children = m.get("state", {}).get("children", [])
            if "eventsource-lab-worker" in classes:
                states.append(html_text(children[1]))
            elif "eventsource-lab-backlog" in classes:
                backlog = _text(m["state"].get("value", ""))
            pending.extend(children)
        return {"states": sorted(states), "backlog": backlog}

    def walk(ref: str) -> None:
        m = model(ref)
        if "eventsource-lab-cluster" in m.get("state", {}).get("_dom_classes", []):
            found.clusters.append(cluster(ref))
            return
        value = m.get("state", {}).get("value")
        if m.get("model_name") == "HTMLModel" and isinstance(value, str):
            if "eventsource-lab-fanout" in value:
                found.fanouts.append(_fanout_nodes(value))
            elif (table := _stats_table(value)) is not None:
                found.stats.append(table)
        children = m.get("state", {}).get("children", [])
        kinds = [model(c).get("model_name") for c in children]
        if m.get("model_name") == "HBoxModel" and "IntProgressModel" in kinds:
            first, last = (model(c)["state"]["value"] for c in (children[0], children[-1]))
            found.brokers.append([_text(first), _text(last)])
        for child in children:
            walk(child)

    for cell in notebook["cells"]:
        for output in cell.get("outputs", []):
            view = output.get("data", {}).get(WIDGET_VIEW)
            if view is not None:
                views += 1
                walk(view["model_id"])
    return views, found


# -- driving JupyterLab -----------------------------------------------------------------------


def menu(page: Page, menu_name: str, command: str) -> None:
    """Click ``menu_name`` in the menu bar, then its item that runs ``command``."""
    page.locator(".lm-MenuBar-item").filter(has_text=re.compile(f"^{menu_name}$")).click()
    page.locator(f".lm-Menu-item[data-command='{command}']").click()


def open_notebook(page: Page, lab: Lab, name: str, cells: int) -> None:
    """Open ``name``, alone in a workspace of its own: every cell on the page, the file browser
    closed, the kernel idle."""
    workspace = Path(name).stem
    page.goto(f"{lab.url}/lab/workspaces/{workspace}/tree/{name}?reset&token={lab.token}")
    page.wait_for_function(
        "n => document.querySelectorAll('.jp-NotebookPanel .jp-Notebook .jp-Cell').length === n",
        arg=cells,
        timeout=OPEN_TIMEOUT,
    )
    sidebar = page.locator(".jp-SideBar.jp-mod-left .lm-TabBar-tab.lm-mod-current")
    if sidebar.count():  # the file browser is open: close it, the notebook gets the width
        sidebar.click()
        page.locator("#jp-left-stack").wait_for(state="hidden")
    page.wait_for_function(
        """() => {
            const name = document.querySelector('.jp-NotebookPanel .jp-Toolbar-kernelName');
            const status = document.querySelector(
                '.jp-NotebookPanel .jp-Notebook-ExecutionIndicator');
            return name && !name.textContent.includes('No Kernel')
                && status?.dataset.status === 'idle';
        }""",
        timeout=OPEN_TIMEOUT,
    )


def run_all(page: Page) -> None:
    """Clear the committed outputs, then run every cell and wait for the run to end."""
    menu(page, "Edit", "editmenu:clear-all")
    page.wait_for_function(
        """() => !document.querySelector('.jp-NotebookPanel .jp-OutputArea-output') &&
            [...document.querySelectorAll('.jp-NotebookPanel .jp-CodeCell .jp-InputPrompt')]
                .every(p => p.textContent.trim() === '[ ]:')""",
        timeout=OPEN_TIMEOUT,
    )
    menu(page, "Run", "runmenu:run-all")
    page.wait_for_function(RUN_FINISHED, timeout=RUN_TIMEOUT)


def screenshot(page: Page, path: Path) -> None:
    """The whole notebook in one image: the viewport grows until the last cell shows."""
    extra = page.evaluate(
        """() => {
            const outer = document.querySelector('.jp-NotebookPanel .jp-WindowedPanel-outer');
            const cells = document.querySelectorAll('.jp-NotebookPanel .jp-Cell');
            if (!outer || !cells.length) return 0;
            outer.scrollTop = 0;
            const last = cells[cells.length - 1].getBoundingClientRect().bottom;
            return Math.max(0, Math.ceil(last + 24 - outer.getBoundingClientRect().bottom));
        }"""
    )
    size = page.viewport_size or {"width": 1280, "height": 900}
    page.set_viewport_size({"width": size["width"], "height": min(size["height"] + extra, 16_000)})
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)


def readme_image(page: Page, path: Path) -> None:
    """The fan-out and stats widgets alone: every other cell, input and output hidden, and the
    image cropped to the pictures and tables themselves."""
    page.evaluate(
        """() => {
            const keep = [...document.querySelectorAll(
                    '.jp-NotebookPanel .jp-OutputArea-output > .jupyter-widgets')]
                .filter(w => w.querySelector('svg.eventsource-lab-fanout, table'));
            for (const widget of keep) {
                const output = widget.closest('.jp-OutputArea-output');
                output.classList.add('esl-keep');
                output.closest('.jp-OutputArea-child').classList.add('esl-keep');
                output.closest('.jp-Cell').classList.add('esl-keep');
                widget.querySelectorAll('.widget-html-content > *')
                    .forEach(e => e.classList.add('esl-shot'));
            }
            const style = document.createElement('style');
            style.textContent = `
                .jp-Notebook .jp-Cell:not(.esl-keep),
                .jp-Cell.esl-keep .jp-Cell-inputWrapper,
                .jp-Cell.esl-keep .jp-OutputArea-child:not(.esl-keep),
                .jp-Cell.esl-keep .jp-OutputPrompt,
                .jp-Cell.esl-keep .jp-Collapser { display: none !important; }`;
            document.head.append(style);
            document.querySelector('.jp-NotebookPanel .jp-WindowedPanel-outer').scrollTop = 0;
        }"""
    )
    boxes = [box for e in page.locator(".esl-shot").all() if (box := e.bounding_box())]
    assert boxes, "no fan-out or stats widget on the page to photograph"
    pad = 12
    left = min(b["x"] for b in boxes) - pad
    top = min(b["y"] for b in boxes) - pad
    right = max(b["x"] + b["width"] for b in boxes) + pad
    bottom = max(b["y"] + b["height"] for b in boxes) + pad
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(
        path=str(path), clip={"x": left, "y": top, "width": right - left, "height": bottom - top}
    )


# -- the test ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(NOTEBOOKS), ids=lambda n: n.removesuffix(".ipynb"))
def test_notebook_runs_and_widgets_render(lab: Lab, browser: Browser, name: str) -> None:
    notebook = json.loads((lab.root / name).read_text())  # the copy being served
    expected = NOTEBOOKS[name]
    readme = name.startswith("07_06") and os.environ.get(README_IMAGE_FLAG) == "1"
    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, device_scale_factor=2 if readme else 1
    )
    page = context.new_page()
    page_errors: list[str] = []
    page.on("pageerror", lambda error: page_errors.append(str(error)))
    shot, failed_shot = (ARTIFACTS / f"{Path(name).stem}{suffix}.png" for suffix in ("", "-failed"))
    shot.unlink(missing_ok=True)
    failed_shot.unlink(missing_ok=True)
    try:
        open_notebook(page, lab, name, len(notebook["cells"]))
        run_all(page)
        try:
            page.wait_for_function(WIDGETS_SETTLED, arg=asdict(expected), timeout=RENDER_TIMEOUT)
        except PlaywrightTimeout:
            pass  # the screenshot first; the assertions below then say what differs
        screenshot(page, shot)

        errors = page.evaluate(READ_ERRORS)
        assert not errors, "error outputs:\n" + "\n---\n".join(errors)
        prompts = page.locator(".jp-NotebookPanel .jp-CodeCell .jp-InputPrompt").all_inner_texts()
        assert all(re.fullmatch(r"\[\d+\]:", p.strip()) for p in prompts), prompts

        views, committed = committed_widgets(notebook)
        live = page.evaluate(READ_WIDGETS)
        assert live["live"] == views, "live widget views on the page vs. in the committed file"
        assert live["fanouts"] == expected.fanouts
        assert len(live["stats"]) == len(expected.stats)
        assert subset(live["stats"], expected.stats) == expected.stats
        assert_brokers(live["brokers"], expected.brokers, "on the page")
        assert live["clusters"] == expected.clusters
        assert printed(page, expected.printed) == expected.printed

        assert committed.fanouts == expected.fanouts, "the committed widget state differs"
        assert len(committed.stats) == len(expected.stats)
        assert subset(committed.stats, expected.stats) == expected.stats
        assert_brokers(committed.brokers, expected.brokers, "in the committed widget state")
        assert committed.clusters == expected.clusters, "the committed cluster views differ"

        if readme:
            readme_image(page, README_IMAGE)
            assert README_IMAGE.stat().st_size < README_IMAGE_MAX_BYTES
        assert not page_errors, f"JavaScript errors on the page: {page_errors}"
    finally:
        if not shot.exists():  # stopped before the screenshot: show where
            with contextlib.suppress(PlaywrightError):
                screenshot(page, failed_shot)
        context.close()
        lab.stop_kernels()
