"""Run an exercise notebook's code cells outside Jupyter and report what its check said.

The tests use it so the notebooks and the tests cannot drift: the starter (in
``notebooks/exercises``) must fail its check, the solution (``notebooks/solutions``) must pass.
Every code cell runs in order in one fresh namespace, top-level ``await`` allowed; the value of
the last expression of the cell tagged ``check`` is the feedback. From a shell (one notebook per
process, so each gets a clean interpreter)::

    python -m eventsource_lab.exercises.runner notebooks/solutions/ex01_projection.ipynb

prints ``{"exercise": ..., "passed": ..., "message": ...}`` as JSON.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["code_cells", "run_notebook"]

STARTER_TAG = "starter"
CHECK_TAG = "check"


def code_cells(path: str | Path) -> list[tuple[list[str], str]]:
    """``(tags, source)`` of each code cell of the notebook at ``path``."""
    notebook = json.loads(Path(path).read_text(encoding="utf-8"))
    cells = []
    for cell in notebook["cells"]:
        if cell["cell_type"] != "code":
            continue
        source = cell["source"]
        text = "".join(source) if isinstance(source, list) else source
        cells.append((list(cell.get("metadata", {}).get("tags", [])), text))
    return cells


def _compile(source: str, name: str, capture: bool) -> Any:
    tree = ast.parse(source, name)
    if capture and tree.body and isinstance(tree.body[-1], ast.Expr):
        last = tree.body[-1]
        tree.body[-1] = ast.copy_location(
            ast.Assign(targets=[ast.Name("__feedback__", ast.Store())], value=last.value), last
        )
        ast.fix_missing_locations(tree)
    return compile(tree, name, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


async def _run(path: Path) -> Any:
    namespace: dict[str, Any] = {"__name__": "__exercise__"}
    for index, (tags, source) in enumerate(code_cells(path)):
        code = _compile(source, f"{path.name}[{index}]", capture=CHECK_TAG in tags)
        result = eval(code, namespace)
        if inspect.iscoroutine(result):
            await result
    if "__feedback__" not in namespace:
        raise LookupError(f"{path}: no cell tagged {CHECK_TAG!r} ends with the check() call")
    feedback = namespace["__feedback__"]
    if inspect.isawaitable(feedback):
        feedback = await feedback
    return feedback


def run_notebook(path: str | Path) -> dict[str, Any]:
    """Run the notebook's cells in a fresh namespace; what its check returned, as a dict."""
    feedback = asyncio.run(_run(Path(path)))
    return {"exercise": feedback.exercise, "passed": feedback.passed, "message": feedback.message}


def main(argv: list[str] | None = None) -> int:
    (path,) = argv if argv is not None else sys.argv[1:]
    print(json.dumps(run_notebook(path)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
