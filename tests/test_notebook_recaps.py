"""Every course notebook's recap asks the learner to predict something and keeps the answer
collapsed, with nothing of it on the line JupyterLab shows while the cell is collapsed."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
COURSE = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))


def _hidden(cell: nbformat.NotebookNode) -> bool:
    return bool(cell.metadata.get("jupyter", {}).get("source_hidden"))


@pytest.mark.parametrize("path", COURSE, ids=lambda p: p.stem)
def test_the_recap_asks_for_a_prediction_answered_in_a_collapsed_cell(path: Path) -> None:
    cells = nbformat.read(path, as_version=4).cells
    asks = [
        i for i, c in enumerate(cells) if c.cell_type == "markdown" and "**Predict:**" in c.source
    ]
    assert asks, f"{path.name}: no **Predict:** question"
    answer = cells[asks[-1] + 1]
    assert answer.cell_type == "markdown" and _hidden(answer), (
        f"{path.name}: the cell after the prediction is not a collapsed markdown answer"
    )


@pytest.mark.parametrize("path", COURSE, ids=lambda p: p.stem)
def test_a_collapsed_answer_shows_nothing_of_itself_while_collapsed(path: Path) -> None:
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type == "markdown" and _hidden(cell):
            assert cell.source.split("\n", 1)[0].strip() == "**Answer:**", (
                f"{path.name}: a collapsed cell's first line gives its answer away"
            )
