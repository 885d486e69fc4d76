"""Every notebook of the course exists and is committed as a learner should first see it.

nbval (configured in pyproject.toml) re-runs each notebook and compares its outputs; these checks
catch what it cannot: a missing notebook, one saved without outputs or with an error, or one
that carries a credential.
"""

from __future__ import annotations

import io
import json
import re
import tokenize
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = [
    "00_start_here",
    "01_events",
    "02_aggregates",
    "03_event_store",
    "04_repository",
    "05_projections",
    "07_01_the_event_bus",
    "07_02_in_memory_bus",
    "07_03_handlers",
    "07_04_projections_subscribe_all",
    "07_05_repository_integration",
    "07_06_fan_out_and_error_isolation",
    "07_07_wildcards",
    "07_08_background_and_shutdown",
    "07_09_statistics",
    "07_10_complete_example",
    "07_11_patterns",
    "07_12_unsubscribe_and_clear",
    "07_13a_redis_groups",
    "07_13b_redis_failures",
    "07_13c_redis_workers",
    "07_14a_rabbitmq_groups",
    "07_14b_rabbitmq_failures",
    "07_14c_rabbitmq_workers",
    "07_14d_rabbitmq_cluster",
    "07_15a_kafka_groups",
    "07_15b_kafka_failures",
    "07_15c_kafka_rebalancing",
    "07_15d_kafka_workers",
    "07_15e_kafka_replay",
    "07_16_choosing_a_bus",
    "08_testing",
]

# A password in a URL (``scheme://user:secret@host``) unless it is redacted as ``***``.
URL_WITH_PASSWORD = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s/:@'\"]+:(?!\*\*\*@)[^\s/@'\"]+@")


def _load(name: str) -> nbformat.NotebookNode:
    path = NOTEBOOKS_DIR / f"{name}.ipynb"
    assert path.exists(), f"notebooks/{name}.ipynb is missing"
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    return notebook


def _code_cells(notebook: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def _output_texts(notebook: nbformat.NotebookNode) -> list[str]:
    texts = []
    for cell in _code_cells(notebook):
        for output in cell.outputs:
            if output.output_type == "stream":
                texts.append(output.text)
            for value in output.get("data", {}).values():
                texts.append(value if isinstance(value, str) else str(value))
    return texts


def _code_without_comments(source: str) -> str:
    """``source`` without its comments, so a comment quoting the spec is not code."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, SyntaxError):
        return source
    return " ".join(t.string for t in tokens if t.type != tokenize.COMMENT)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_committed_with_outputs(name: str) -> None:
    cells = _code_cells(_load(name))
    assert cells, f"{name} has no code cell"
    counts = [cell.execution_count for cell in cells]
    assert counts == list(range(1, len(cells) + 1)), (
        f"{name} was not run top to bottom in a fresh kernel and saved (execution counts "
        f"{counts}); run: .venv/bin/jupyter nbconvert --to notebook --execute --inplace"
    )
    assert any(cell.outputs for cell in cells), f"{name} is saved without outputs"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_has_no_error_output(name: str) -> None:
    notebook = _load(name)
    for index, cell in enumerate(notebook.cells):
        for output in cell.get("outputs", []):
            assert output.output_type != "error", f"{name} cell {index}: {output.get('ename')}"
    tracebacks = [t for t in _output_texts(notebook) if "Traceback (most recent call last)" in t]
    assert not tracebacks, f"{name} shows a traceback: {tracebacks[0][:300]}"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_starts_with_a_title(name: str) -> None:
    first = _load(name).cells[0]
    assert first.cell_type == "markdown", f"{name}: the first cell must be markdown"
    assert first.source.startswith("# "), f"{name}: the first cell must start with a '# ' title"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_has_no_credentials(name: str) -> None:
    notebook = _load(name)
    sources = [cell.source for cell in notebook.cells]
    widget_state = json.dumps(notebook.metadata.get("widgets", {}))
    for text in [*sources, *_output_texts(notebook), widget_state]:
        assert "guest:guest" not in text, f"{name} contains the guest:guest login"
        match = URL_WITH_PASSWORD.search(text)
        assert match is None, f"{name} contains a URL with a password: {match.group(0)}"
    for cell in _code_cells(notebook):
        assert "redis://" not in _code_without_comments(cell.source), (
            f"{name} types a redis:// URL; take it from the launcher (broker.url)"
        )
