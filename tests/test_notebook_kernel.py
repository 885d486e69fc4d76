"""nbval's kernel start as the notebooks' conftest wraps it: a kernel that dies before it
answers gets one more try; any other failure, or a second death, is raised."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import nbval.kernel
import pytest

CONFTEST = Path(__file__).resolve().parents[1] / "notebooks" / "conftest.py"


@pytest.fixture
def conftest(monkeypatch):
    # loading it wraps nbval's start again: undone after the test, as monkeypatch restores
    monkeypatch.setattr(nbval.kernel, "start_new_kernel", nbval.kernel.start_new_kernel)
    spec = importlib.util.spec_from_file_location("notebooks_conftest_under_test", CONFTEST)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def starts(*outcomes):
    calls = []

    def start(*args, **kwargs):
        calls.append(args)
        outcome = outcomes[len(calls) - 1]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    return start, calls


def test_a_kernel_that_died_at_start_is_started_once_more(conftest, monkeypatch):
    start, calls = starts(RuntimeError("Kernel died before replying to kernel_info"), "kernel")
    monkeypatch.setattr(conftest, "_start_kernel", start)
    assert conftest._start_kernel_once_more() == "kernel"
    assert len(calls) == 2


def test_a_second_death_and_other_failures_are_raised(conftest, monkeypatch):
    died = RuntimeError("Kernel died before replying to kernel_info")
    start, calls = starts(died, died)
    monkeypatch.setattr(conftest, "_start_kernel", start)
    with pytest.raises(RuntimeError, match="died"):
        conftest._start_kernel_once_more()
    assert len(calls) == 2

    start, calls = starts(RuntimeError("no such kernel"))
    monkeypatch.setattr(conftest, "_start_kernel", start)
    with pytest.raises(RuntimeError, match="no such kernel"):
        conftest._start_kernel_once_more()
    assert len(calls) == 1
