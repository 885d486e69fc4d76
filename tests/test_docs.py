"""The docs' Python snippets run, in order, in one fresh interpreter, as notebook cells would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "notebooks" / "README.md"]

# Runs every ```python block of the file in argv[1] in one namespace, top-level await allowed.
RUNNER = """
import ast, asyncio, re, sys
blocks = re.findall(r"```python\\n(.*?)```", open(sys.argv[1]).read(), flags=re.S)
assert blocks, "no python snippet"
async def run():
    namespace = {"__name__": "__main__"}
    for block in blocks:
        code = compile(block, sys.argv[1], "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        result = eval(code, namespace)
        if result is not None:
            await result
asyncio.run(run())
"""


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_snippets_run(doc: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", RUNNER, str(doc)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    if doc == ROOT / "README.md":
        assert result.stdout.startswith("Order placed by Alice for $99.99\n")
        assert "Order placed by Carol for $7.5\n" in result.stdout  # through a real Redis
        assert "every order handled by the billing workers\n" in result.stdout  # by processes
        assert "handler test_" not in result.stderr
        assert "RuntimeError: this handler is broken" in result.stderr  # logged, not raised
