"""A JupyterLab server on a temp copy of the notebooks, and headless Chromium to drive it.

Everything the server, its kernels and the browser write goes into one temp dir: HOME, the
Jupyter dirs, IPYTHONDIR and JupyterLab's settings (news and update checks off, every cell
attached to the page so that a screenshot shows them all).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.conftest import skip_or_fail

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS_DIR = ROOT / "notebooks"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
SERVER_START_TIMEOUT = 30.0
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
}


@dataclass(frozen=True)
class Lab:
    """A running JupyterLab: where it answers, its token, the directory it serves (a copy of
    ``notebooks/`` taken at its start) and its log."""

    url: str
    token: str
    root: Path
    log: Path

    def api(self, path: str, method: str = "GET") -> Any:
        """Call the server's REST API; the decoded JSON answer, if any."""
        request = urllib.request.Request(
            f"{self.url}/api/{path}",
            method=method,
            headers={"Authorization": f"token {self.token}"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def stop_kernels(self) -> None:
        """End every session and its kernel (one notebook's kernel need not outlive its test)."""
        for session in self.api("sessions"):
            self.api(f"sessions/{session['id']}", method="DELETE")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _isolated_env(tmp: Path) -> dict[str, str]:
    """The environment with every per-user directory moved into ``tmp``."""
    dirs = {
        "HOME": "home",
        "JUPYTER_CONFIG_DIR": "jupyter-config",
        "JUPYTER_DATA_DIR": "jupyter-data",
        "JUPYTER_RUNTIME_DIR": "jupyter-runtime",
        "IPYTHONDIR": "ipython",
        "JUPYTERLAB_SETTINGS_DIR": "lab-settings",
        "JUPYTERLAB_WORKSPACES_DIR": "lab-workspaces",
    }
    env = dict(os.environ)
    for name, sub in dirs.items():
        (tmp / sub).mkdir()
        env[name] = str(tmp / sub)
    for plugin, settings in LAB_SETTINGS.items():
        path = tmp / "lab-settings" / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(settings))
    return env


def _wait_for_server(lab: Lab, server: subprocess.Popen[bytes]) -> None:
    """Poll ``/api/status`` until it answers; fail with the server's log if it never does."""
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"jupyter lab exited with {server.returncode}:\n{lab.log.read_text()}")
        try:
            lab.api("status")
            return
        except OSError:
            time.sleep(0.1)  # the polling interval, not a synchronisation
    pytest.fail(
        f"jupyter lab did not answer in {SERVER_START_TIMEOUT:.0f} s:\n{lab.log.read_text()}"
    )


@pytest.fixture(scope="module")
def isolated_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The isolated environment both the server (so its kernels) and Chromium run in."""
    if not CHROMIUM.exists():
        skip_or_fail(f"{CHROMIUM} not found (apt-get install -y chromium)")
    return _isolated_env(tmp_path_factory.mktemp("lab-home"))


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, isolated_env: dict[str, str]) -> Iterator[Lab]:
    """JupyterLab serving a temp copy of ``notebooks/``, on a free loopback port."""
    root = tmp_path_factory.mktemp("lab-notebooks") / "notebooks"
    shutil.copytree(
        NOTEBOOKS_DIR, root, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__")
    )
    port, token = _free_port(), secrets.token_hex(16)
    log = root.parent / "jupyter-lab.log"
    command = [
        sys.executable,
        "-m",
        "jupyter",
        "lab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--notebook-dir={root}",
        "--LabApp.expose_app_in_browser=True",  # window.jupyterapp: the test reads cell outputs
    ]
    if os.geteuid() == 0:
        command.append("--allow-root")
    with log.open("wb") as out:
        server = subprocess.Popen(command, env=isolated_env, stdout=out, stderr=subprocess.STDOUT)
    lab = Lab(f"http://127.0.0.1:{port}", token, root, log)
    try:
        _wait_for_server(lab, server)
        yield lab
    finally:
        server.terminate()  # the server shuts its kernels down on SIGTERM
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.fixture(scope="module")
def browser(isolated_env: dict[str, str]) -> Iterator[Browser]:
    """Headless Chromium (the system's: Playwright cannot download its own here)."""
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, env=isolated_env
        )
        try:
            yield chromium
        finally:
            chromium.close()
