"""Learner-facing notebooks call their source "Tutorial 7", never "the spec".

"The spec" is the project's word for the tutorial it was built from; a learner never met it and
the notebooks never defined it. Markdown, code (comments included) and saved outputs all count.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
LEARNER_NOTEBOOKS = sorted(
    path
    for pattern in ("*.ipynb", "exercises/*.ipynb", "solutions/*.ipynb")
    for path in NOTEBOOKS_DIR.glob(pattern)
)
SPEC = re.compile(r"\bspec\b|\bspec's\b", re.IGNORECASE)


def _texts(cell: nbformat.NotebookNode) -> list[str]:
    """The cell's source and everything its saved outputs show as text."""
    texts = [cell.source]
    for output in cell.get("outputs", []):
        if "text" in output:
            texts.append(output.text)
        texts.extend(v for v in output.get("data", {}).values() if isinstance(v, str))
        texts.extend(output.get("traceback", []))
    return texts


def spec_mentions(path: Path) -> list[str]:
    """Each line of ``path`` that says "spec", as ``cell N: line``."""
    notebook = nbformat.read(path, as_version=4)
    return [
        f"cell {index}: {line.strip()}"
        for index, cell in enumerate(notebook.cells)
        for text in _texts(cell)
        for line in text.splitlines()
        if SPEC.search(line)
    ]


def test_the_notebooks_are_found() -> None:
    names = {path.relative_to(NOTEBOOKS_DIR).parts[0] for path in LEARNER_NOTEBOOKS}
    assert {"00_start_here.ipynb", "exercises", "solutions"} <= names


@pytest.mark.parametrize("path", LEARNER_NOTEBOOKS, ids=lambda p: str(p.relative_to(NOTEBOOKS_DIR)))
def test_notebook_says_tutorial_not_spec(path: Path) -> None:
    found = spec_mentions(path)
    assert not found, (
        f"{path.relative_to(NOTEBOOKS_DIR)} says 'spec' where a learner reads "
        "'Tutorial 7' or 'the tutorial':\n" + "\n".join(found)
    )


@pytest.mark.parametrize(
    ("line", "found"),
    [
        ("the spec's code", True),
        ("As the Spec says", True),
        ("(spec)", True),
        ("a specific handler", False),
        ("the specification's inspect", False),
        ("spectrum", False),
    ],
)
def test_the_pattern_finds_the_word_only(line: str, found: bool) -> None:
    assert bool(SPEC.search(line)) is found
