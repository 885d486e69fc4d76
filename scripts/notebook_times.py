"""How long the course takes, measured per notebook: cells, words of prose, lines of code, run time.

A careful learner reads the prose, reads every line of code (outputs included) and runs each cell.
The minutes per notebook are estimated from what it contains, at the rates below; the run time is
the one nbconvert saved in the notebook when it was last executed (its cell timings). Exercises
are listed where their first cell says they belong ("*After [07.04 ...](../07_04_....ipynb)*"),
with the minutes the exercise itself allows for solving it.

    python scripts/notebook_times.py            # print the table
    python scripts/notebook_times.py --write    # and put it into docs/teaching.md

It reads every ``notebooks/*.ipynb``, so it stays right when notebooks are added or split.
"""

from __future__ import annotations

import argparse
import re
import sys
import textwrap
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
GUIDE = ROOT / "docs" / "teaching.md"
START, END = "<!-- notebook-times:start -->", "<!-- notebook-times:end -->"

PROSE_WORDS_PER_MINUTE = 200
CODE_LINES_PER_MINUTE = 10
OUTPUT_LINES_PER_MINUTE = 30

WORD = re.compile(r"[\w'\u2019-]+")
AFTER = re.compile(r"\*After \[[^\]]*\]\(\.\./([\w.-]+\.ipynb)\)")
ALLOWED = re.compile(r"About (\d+)\s+minutes")


@dataclass(frozen=True)
class Timing:
    """What one notebook asks of a learner."""

    path: Path
    title: str
    cells: int
    words: int
    code_lines: int
    output_lines: int
    run_seconds: float

    @property
    def minutes(self) -> float:
        """Estimated minutes: prose, code and outputs read at the rates above, plus the run."""
        return (
            self.words / PROSE_WORDS_PER_MINUTE
            + self.code_lines / CODE_LINES_PER_MINUTE
            + self.output_lines / OUTPUT_LINES_PER_MINUTE
            + self.run_seconds / 60
        )


def _lines(text: str) -> int:
    return sum(1 for line in text.splitlines() if line.strip())


def _output_text(output: nbformat.NotebookNode) -> str:
    """What a learner reads of one output: its stream text, or its plain-text form (a widget's
    own picture is counted as one line: its repr)."""
    if output.output_type == "stream":
        return output.text
    if output.output_type == "error":
        return "\n".join(output.traceback)
    data = output.get("data", {})
    if "application/vnd.jupyter.widget-view+json" in data:
        return "widget"
    return data.get("text/plain", "")


def _run_seconds(cell: nbformat.NotebookNode) -> float:
    """The cell's run time as nbconvert recorded it (0 if it was not recorded)."""
    timing = cell.metadata.get("execution", {})
    start, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
    if not (start and end):
        return 0.0
    parse = datetime.fromisoformat
    return (parse(end.replace("Z", "+00:00")) - parse(start.replace("Z", "+00:00"))).total_seconds()


def measure(path: Path) -> Timing:
    """Count what ``path`` contains."""
    notebook = nbformat.read(path, as_version=4)
    markdown = [c for c in notebook.cells if c.cell_type == "markdown"]
    code = [c for c in notebook.cells if c.cell_type == "code"]
    first = notebook.cells[0].source.splitlines()[0] if notebook.cells else path.stem
    return Timing(
        path=path,
        title=first.removeprefix("# ").strip(),
        cells=len(notebook.cells),
        words=sum(len(WORD.findall(c.source)) for c in markdown),
        code_lines=sum(_lines(c.source) for c in code),
        output_lines=sum(_lines(_output_text(o)) for c in code for o in c.get("outputs", [])),
        run_seconds=sum(_run_seconds(c) for c in code),
    )


@dataclass(frozen=True)
class Exercise:
    """An exercise, the notebook it follows and the minutes it allows."""

    path: Path
    title: str
    after: str | None
    minutes: int


def exercise(path: Path) -> Exercise:
    """Read where ``path`` belongs and how long it allows from its first cell."""
    first = nbformat.read(path, as_version=4).cells[0].source
    after, allowed = AFTER.search(first), ALLOWED.search(" ".join(first.split()))
    return Exercise(
        path=path,
        title=first.splitlines()[0].removeprefix("# ").strip(),
        after=after.group(1) if after else None,
        minutes=int(allowed.group(1)) if allowed else 0,
    )


def _hours(minutes: float) -> str:
    hours, rest = divmod(round(minutes), 60)
    return f"{hours} h {rest:02d} min"


def table(timings: list[Timing], exercises: list[Exercise]) -> str:
    """The path as a markdown table: each notebook measured, each exercise after its notebook."""
    placed = {t.path.name for t in timings}
    by_notebook: dict[str | None, list[Exercise]] = {}
    for ex in exercises:
        by_notebook.setdefault(ex.after if ex.after in placed else None, []).append(ex)

    def exercise_rows(key: str | None) -> list[str]:
        return [
            f"|  | **{ex.title}** `{ex.path.stem}` |  |  |  |  | {ex.minutes} (allowed) |"
            for ex in by_notebook.get(key, [])
        ]

    rows = [
        "| Step | Notebook | Cells | Words | Code lines | Run (s) | Minutes |",
        "|---|---|---|---|---|---|---|",
    ]
    for step, t in enumerate(timings, start=1):
        rows.append(
            f"| {step} | `{t.path.stem}` · {t.title.split('·', 1)[-1].strip()} | {t.cells} | "
            f"{t.words} | {t.code_lines} | {t.run_seconds:.0f} | {t.minutes:.0f} |"
        )
        rows.extend(exercise_rows(t.path.name))
    rows.extend(exercise_rows(None))
    reading = sum(t.minutes for t in timings)
    solving = sum(ex.minutes for ex in exercises)
    summary = (
        f"Notebooks: **{_hours(reading)}** ({len(timings)} notebooks, "
        f"{sum(t.cells for t in timings)} cells); exercises: **{_hours(solving)}** "
        f"({len(exercises)} exercises); together **{_hours(reading + solving)}**."
    )
    rates = (
        f"Minutes are estimated from what each notebook contains: prose at "
        f"{PROSE_WORDS_PER_MINUTE} words a minute, code at {CODE_LINES_PER_MINUTE} lines a "
        f"minute, outputs at {OUTPUT_LINES_PER_MINUTE} lines a minute, plus the time its cells "
        "took to run when it was last executed (run time, saved in the notebook). Exercises "
        "count the minutes each one allows. Measured by `python scripts/notebook_times.py`; "
        "run it again with `--write` after changing a notebook."
    )
    rows += ["", textwrap.fill(summary, 95), "", textwrap.fill(rates, 95)]
    return "\n".join(rows)


def write(text: str, guide: Path = GUIDE) -> None:
    """Replace what stands between the markers in ``guide`` with ``text``."""
    content = guide.read_text()
    start, end = content.index(START) + len(START), content.index(END)
    guide.write_text(f"{content[:start]}\n{text}\n{content[end:]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"update {GUIDE.relative_to(ROOT)}")
    args = parser.parse_args(argv)
    timings = [measure(p) for p in sorted(NOTEBOOKS.glob("*.ipynb"))]
    exercises = [exercise(p) for p in sorted((NOTEBOOKS / "exercises").glob("*.ipynb"))]
    text = table(timings, exercises)
    print(text)
    if args.write:
        write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
