"""Feedback, the registry of exercises, and ``check()`` itself."""

from __future__ import annotations

import html
import inspect
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["EXERCISES", "Exercise", "Feedback", "PendingCheck", "Problem", "check", "exercise"]


@dataclass(frozen=True)
class Problem:
    """One thing that is wrong (``what``) and how to go about fixing it (``hint``)."""

    what: str
    hint: str = ""


@dataclass(frozen=True)
class Feedback:
    """What ``check()`` found: true in a boolean context when the answer is right.

    ``problems`` say what is wrong, each with a hint; ``why`` explains, when it is right, why
    it works; ``notes`` are extras either way (an accepted alternative, a part skipped).
    """

    exercise: str
    passed: bool
    problems: tuple[Problem, ...] = ()
    why: str = ""
    notes: tuple[str, ...] = field(default=())

    def __bool__(self) -> bool:
        return self.passed

    @property
    def message(self) -> str:
        """The feedback as plain text (what ``repr()`` shows)."""
        if self.passed:
            lines = [f"✅ Well done! ({self.exercise})"]
            if self.why:
                lines.append(self.why)
        else:
            count = len(self.problems)
            things = "1 thing" if count == 1 else f"{count} things"
            lines = [f"❌ Not yet ({self.exercise}): {things} to fix."]
            for problem in self.problems:
                lines.append(f"• {problem.what}")
                if problem.hint:
                    lines.append(f"  Hint: {problem.hint}")
        lines += [f"Note: {note}" for note in self.notes]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.message

    def __str__(self) -> str:
        return self.message

    def _repr_html_(self) -> str:
        colour, background = ("#1a7f37", "#eefbf0") if self.passed else ("#b35900", "#fff6e5")
        esc = html.escape
        if self.passed:
            body = f"<b>✅ Well done!</b> <small>({esc(self.exercise)})</small>"
            if self.why:
                body += f"<p style='margin:4px 0'>{esc(self.why)}</p>"
        else:
            items = "".join(
                f"<li>{esc(p.what)}"
                + (f"<br><i>Hint:</i> {esc(p.hint)}" if p.hint else "")
                + "</li>"
                for p in self.problems
            )
            body = (
                f"<b>❌ Not yet</b> <small>({esc(self.exercise)})</small>"
                f"<ul style='margin:4px 0'>{items}</ul>"
            )
        body += "".join(f"<p style='margin:4px 0'><i>Note:</i> {esc(n)}</p>" for n in self.notes)
        return (
            f"<div style='border-left:4px solid {colour};background:{background};"
            f"padding:6px 10px;color:#222'>{body}</div>"
        )


def passed(exercise: str, why: str, notes: list[str] | tuple[str, ...] = ()) -> Feedback:
    return Feedback(exercise, True, why=why, notes=tuple(notes))


def failed(
    exercise: str, problems: list[Problem], notes: list[str] | tuple[str, ...] = ()
) -> Feedback:
    return Feedback(exercise, False, problems=tuple(problems), notes=tuple(notes))


@dataclass(frozen=True)
class Exercise:
    """A registered exercise: its check function, and where it sits in the course."""

    name: str
    title: str
    notebook: str
    after: str
    run: Callable[..., Feedback | Awaitable[Feedback]]

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.run)


EXERCISES: dict[str, Exercise] = {}


def exercise(
    name: str, title: str, notebook: str, after: str
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a check function under ``name``."""

    def register(run: Callable[..., Any]) -> Callable[..., Any]:
        EXERCISES[name] = Exercise(name, title, notebook, after, run)
        return run

    return register


def _raised(name: str, error: BaseException) -> Feedback:
    return failed(
        name,
        [
            Problem(
                f"running your answer raised {type(error).__name__}: {error}",
                "run your code on one event yourself to see the full traceback, fix that, then "
                "check again",
            )
        ],
    )


class PendingCheck:
    """An asynchronous check not yet run: ``await`` it to get the :class:`Feedback`."""

    def __init__(self, name: str, run: Callable[[], Awaitable[Feedback]]) -> None:
        self._name = name
        self._run = run

    def __await__(self) -> Generator[Any, None, Feedback]:
        return self._result().__await__()

    async def _result(self) -> Feedback:
        try:
            return await self._run()
        except Exception as error:
            return _raised(self._name, error)

    def __repr__(self) -> str:
        return (
            f"The {self._name!r} check runs a bus, so it is asynchronous: "
            f"write `await check({self._name!r}, ...)`."
        )


def check(name: str, *answer: Any, **options: Any) -> Feedback | PendingCheck:
    """Check your answer to exercise ``name``; see ``EXERCISES`` for the names.

    Synchronous checks return a :class:`Feedback` at once; the ones that run a bus return a
    :class:`PendingCheck` to ``await`` (``await check("background_shutdown", publish_orders)``).
    Each notebook's check cell shows the exact call.
    """
    if name not in EXERCISES:
        known = ", ".join(sorted(EXERCISES))
        raise ValueError(f"there is no exercise {name!r}; the exercises are: {known}")
    run = EXERCISES[name].run
    if inspect.iscoroutinefunction(run):
        return PendingCheck(name, lambda: run(*answer, **options))
    try:
        return run(*answer, **options)
    except Exception as error:
        return _raised(name, error)
