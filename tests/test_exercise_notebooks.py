"""Every exercise notebook: its starter fails its check with a specific message, its solution
passes; and the two notebooks differ only in the starter cell, so they cannot drift.

Each notebook runs in its own interpreter (``python -m eventsource_lab.exercises.runner``), all
code cells in order in a fresh namespace, as a learner would run them top to bottom.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from eventsource_lab.brokers import Broker
from eventsource_lab.exercises import EXERCISES
from eventsource_lab.exercises.runner import STARTER_TAG, code_cells

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"

# exercise notebook -> words the starter's feedback must contain (it names what is wrong)
STARTER_SAYS = {
    "ex01_projection": ["does not declare OrderCancelled", "order_counts['placed'] is 3"],
    "ex02_wildcard_audit": ["no wildcard subscription", "missed OrderShipped", "RefundIssued"],
    "ex03_idempotent_handler": ["delivered twice was counted twice", "total_revenue is 200.0"],
    "ex04_background_shutdown": ["without shutting the bus down", "bus.shutdown()"],
    "ex05_dlq_replay": ["still raises IndexError", "'Cher'", "ShippingLabels is still subscribed"],
    "ex06_choose_a_bus": ["checkout_tests: no bus chosen", "clickstream: no bus chosen"],
}
NEEDS_REDIS = {"ex05_dlq_replay"}  # its setup cell starts a Redis
REDIS_IN_SOLUTION = {"ex03_idempotent_handler", "ex05_dlq_replay"}


def _run(path: Path, env: dict[str, str] | None = None) -> dict:
    result = subprocess.run(
        [sys.executable, "-m", "eventsource_lab.exercises.runner", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )
    assert result.returncode == 0, f"{path.name} did not run:\n{result.stderr[-2000:]}"
    return json.loads(result.stdout.strip().splitlines()[-1])


def _param(name: str, redis: bool) -> object:
    return pytest.param(name, marks=pytest.mark.redis if redis else (), id=name)


@pytest.fixture
def redis_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """Point the notebook at the session's Redis, for the tests marked ``redis``."""
    if request.node.get_closest_marker("redis") is None:
        return {}
    broker: Broker = request.getfixturevalue("redis_broker")
    return {"EVENTSOURCE_LAB_REDIS_URL": broker.url}


def test_every_exercise_has_a_notebook_pair() -> None:
    names = {exercise.notebook for exercise in EXERCISES.values()}
    assert names == set(STARTER_SAYS)
    for name in names:
        assert (NOTEBOOKS / "exercises" / f"{name}.ipynb").exists()
        assert (NOTEBOOKS / "solutions" / f"{name}.ipynb").exists()


@pytest.mark.parametrize("name", sorted(STARTER_SAYS))
def test_solution_differs_from_exercise_only_in_the_starter_cell(name: str) -> None:
    exercise = code_cells(NOTEBOOKS / "exercises" / f"{name}.ipynb")
    solution = code_cells(NOTEBOOKS / "solutions" / f"{name}.ipynb")
    assert [tags for tags, _ in exercise] == [tags for tags, _ in solution]
    assert sum(STARTER_TAG in tags for tags, _ in exercise) == 1, "one starter cell"
    for (tags, mine), (_, theirs) in zip(exercise, solution, strict=True):
        if STARTER_TAG in tags:
            assert mine != theirs, f"{name}: the solution leaves the starter as it was"
        else:
            assert mine == theirs, f"{name}: a non-starter cell differs:\n{mine}\n---\n{theirs}"


@pytest.mark.parametrize("name", sorted(STARTER_SAYS))
def test_exercise_is_committed_clean_with_a_title(name: str) -> None:
    notebook = nbformat.read(NOTEBOOKS / "exercises" / f"{name}.ipynb", as_version=4)
    assert notebook.cells[0].source.startswith("# ")
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, "exercises start clean"


@pytest.mark.parametrize("name", [_param(n, n in NEEDS_REDIS) for n in sorted(STARTER_SAYS)])
def test_starter_fails_its_check_saying_what_is_wrong(name: str, redis_env: dict) -> None:
    feedback = _run(NOTEBOOKS / "exercises" / f"{name}.ipynb", redis_env)
    assert feedback["passed"] is False
    assert "Not yet" in feedback["message"] and "Hint:" in feedback["message"]
    for words in STARTER_SAYS[name]:
        assert words in feedback["message"], feedback["message"]


@pytest.mark.parametrize("name", [_param(n, n in REDIS_IN_SOLUTION) for n in sorted(STARTER_SAYS)])
def test_solution_passes_its_check(name: str, redis_env: dict) -> None:
    feedback = _run(NOTEBOOKS / "solutions" / f"{name}.ipynb", redis_env)
    assert feedback["passed"] is True, feedback["message"]
    assert feedback["message"].startswith("✅ Well done!")
    if name == "ex03_idempotent_handler":
        assert "on Redis too" in feedback["message"]  # really redelivered on a broker


@pytest.mark.parametrize("name", sorted(STARTER_SAYS))
def test_solution_is_committed_run_without_errors_or_credentials(name: str) -> None:
    """The rules tests/test_notebooks.py applies to the main notebooks."""
    path = NOTEBOOKS / "solutions" / f"{name}.ipynb"
    notebook = nbformat.read(path, as_version=4)
    assert notebook.cells[0].cell_type == "markdown"
    assert notebook.cells[0].source.startswith("# ")
    cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert [c.execution_count for c in cells] == list(range(1, len(cells) + 1))
    text = json.dumps(notebook)
    assert "Traceback (most recent call last)" not in text
    assert all(o.output_type != "error" for c in cells for o in c.outputs)
    assert "guest:guest" not in text and "redis://" not in text
