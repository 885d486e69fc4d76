"""The first screen: JupyterLab opens at 00_start_here with no news or update prompt over it.

``jupyter/overrides.json`` holds the kit's JupyterLab defaults; ``jupyter/install-settings``
puts them where JupyterLab reads defaults, and both ``make lab`` and ``binder/postBuild`` run it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from jupyterlab.commands import get_app_dir
from jupyterlab_server.settings_utils import get_settings

ROOT = Path(__file__).resolve().parents[1]
OVERRIDES = ROOT / "jupyter" / "overrides.json"
INSTALL = ROOT / "jupyter" / "install-settings"
INSTALLED = Path("settings", "overrides.d", "eventsource-lab.json")
NOTIFICATION = "@jupyterlab/apputils-extension:notification"
SCHEMAS = Path(get_app_dir(), "schemas")
FIRST_NOTEBOOK = "00_start_here.ipynb"


def _schema(plugin: str) -> dict:
    package, name = plugin.split(":")
    return json.loads((SCHEMAS / package / f"{name}.json").read_text())


def test_overrides_turn_off_the_news_prompt_and_the_update_check() -> None:
    overrides = json.loads(OVERRIDES.read_text())
    assert overrides[NOTIFICATION] == {"fetchNews": "false", "checkForUpdates": False}


def test_every_override_is_a_setting_of_this_jupyterlab() -> None:
    for plugin, values in json.loads(OVERRIDES.read_text()).items():
        schema = _schema(plugin)
        assert set(values) <= set(schema["properties"]), f"{plugin}: unknown setting"
        jsonschema.validate(values, schema)


def _install(app_dir: Path) -> Path:
    env = dict(os.environ, JUPYTERLAB_DIR=str(app_dir))
    subprocess.run([str(INSTALL), sys.executable], env=env, check=True, timeout=60)
    return app_dir / INSTALLED


def test_install_settings_puts_them_where_jupyterlab_reads_defaults(tmp_path: Path) -> None:
    installed = _install(tmp_path)
    assert json.loads(installed.read_text()) == json.loads(OVERRIDES.read_text())

    settings, _ = get_settings(
        str(tmp_path / "settings"),
        str(SCHEMAS),
        str(tmp_path / "user-settings"),
        schema_name=NOTIFICATION,
    )
    defaults = {k: v["default"] for k, v in settings["schema"]["properties"].items()}
    assert defaults["fetchNews"] == "false"
    assert defaults["checkForUpdates"] is False


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_lab_installs_them_and_opens_start_here() -> None:
    plan = subprocess.run(
        ["make", "-n", "lab"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    install = plan.index("jupyter/install-settings .venv/bin/python")
    lab = plan.index(".venv/bin/jupyter lab")
    assert install < lab, "make lab must install the settings before it starts JupyterLab"
    assert f"--LabApp.default_url=/lab/tree/{FIRST_NOTEBOOK}" in plan[lab:]
    assert (ROOT / "notebooks" / FIRST_NOTEBOOK).exists()


def test_binder_post_build_installs_them(tmp_path: Path) -> None:
    home, app_dir = tmp_path / "home", tmp_path / "lab"
    home.mkdir()
    env = dict(
        os.environ,
        HOME=str(home),
        JUPYTERLAB_DIR=str(app_dir),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    )
    subprocess.run([str(ROOT / "binder" / "postBuild")], cwd=ROOT, env=env, check=True, timeout=120)
    assert json.loads((app_dir / INSTALLED).read_text()) == json.loads(OVERRIDES.read_text())
