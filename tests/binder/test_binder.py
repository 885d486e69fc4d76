"""``binder/``: its files are well formed, and ``binder/start`` really gives the notebooks brokers.

Binder itself cannot run here; what it does at start-up can: ``binder/start`` runs as an
unprivileged user (``eslab-binder``, created when the tests run as root) on a copy of the repo,
and the command it execs checks, as a notebook would, that every broker answers at the address
in its environment variable, then executes the Redis groups notebook.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from eventsource_lab.brokers import KINDS
from eventsource_lab.brokers.local import find_binary
from tests.conftest import skip_or_fail

ROOT = Path(__file__).resolve().parents[2]
BINDER = ROOT / "binder"
USER = "eslab-binder"
TAG = b"EVENTSOURCE_LAB_PROCESS="
RUN_MARKER = "EVENTSOURCE_LAB_BINDER_RUN"  # in the environment of everything one run starts

CHECK = """
import os
import redis
from eventsource_lab.brokers import start
from eventsource_lab.redact import redact_url
for kind in ("redis", "rabbitmq", "kafka"):
    broker = start(kind)
    assert broker.mode == "url" and broker.is_running(), broker
    print(kind, broker.mode, redact_url(broker.url))
assert redis.Redis.from_url(os.environ["EVENTSOURCE_LAB_REDIS_URL"]).config_get("maxmemory") == {
    "maxmemory": str(64 * 2**20)
}
print("serve pid", os.environ["EVENTSOURCE_LAB_BROKERS_PID"], flush=True)
"""


def test_binder_files_are_well_formed() -> None:
    env = yaml.safe_load((BINDER / "environment.yml").read_text())
    names = {str(d).split(">")[0].split("=")[0] for d in env["dependencies"]}
    assert {"python", "pip", "jupyterlab", "ipywidgets", "redis-py", "aiokafka"} <= names
    assert set((BINDER / "apt.txt").read_text().split()) == {"redis-server", "rabbitmq-server"}
    for name in ("postBuild", "start"):
        script = BINDER / name
        lines = script.read_text().splitlines()
        assert os.access(script, os.X_OK), f"binder/{name} must be executable"
        assert lines[0] == "#!/bin/bash" and "set -euo pipefail" in lines
        subprocess.run(["bash", "-n", str(script)], check=True)  # parses
    assert (BINDER / "start").read_text().rstrip().endswith('exec "$@"')
    assert "saveState" in (BINDER / "postBuild").read_text()


def _tagged(run: bytes) -> set[int]:
    """Processes the broker launcher started for this run: each carries the launcher's tag and
    the run's own marker in its environment (other test sessions, and other pytest-xdist workers
    of this one, start brokers of their own meanwhile)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                environ = (entry / "environ").read_bytes()
            except OSError:
                continue
            if TAG in environ and run in environ.split(b"\0"):
                found.add(int(entry.name))
    return found


def _owned_by(uid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and entry.stat().st_uid == uid:
                found.add(int(entry.name))
        except OSError:
            pass
    return found


def _user() -> tuple[list[str], int]:
    """The command prefix that runs as an unprivileged user, and that user's uid."""
    if os.geteuid() != 0:
        return [], os.geteuid()
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--create-home", USER], check=True)
    return ["runuser", "-u", USER, "--"], pwd.getpwnam(USER).pw_uid


def _user_python(tmp: Path, as_user: list[str]) -> Path:
    """A venv the user can run: a same-version base interpreter the user can execute, seeing
    the repo copy and this venv's packages (a root-only interpreter, as here, is not copied)."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [
        getattr(sys, "_base_executable", ""),
        *(f"{d}/python{version}" for d in ("/usr/local/bin", "/usr/bin")),
    ]
    for base in filter(None, candidates):
        probe = [*as_user, base, "-c", f"import sys; assert sys.version.startswith('{version}.')"]
        if subprocess.run(probe, capture_output=True, check=False).returncode == 0:
            break
    else:
        skip_or_fail(f"no Python {version} that {USER} may run (tried {candidates})")
    venv = tmp / "venv"
    subprocess.run([base, "-m", "venv", "--without-pip", str(venv)], check=True)
    paths = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    site = venv / "lib" / f"python{version}" / "site-packages"
    (site / "eslab.pth").write_text("\n".join([str(tmp / "repo"), *sorted(paths)]) + "\n")
    probe = [*as_user, str(venv / "bin" / "python"), "-c", "import redis, aiokafka, nbconvert"]
    if subprocess.run(probe, capture_output=True, check=False).returncode != 0:
        skip_or_fail(f"{USER} cannot read this venv's packages ({sorted(paths)})")
    return venv / "bin"


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A temp dir the unprivileged user can reach (pytest's own sits under a root-only dir)."""
    path = Path(tempfile.mkdtemp(prefix="eslab-binder-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.mark.redis
@pytest.mark.rabbitmq
@pytest.mark.kafka
@pytest.mark.timeout(300)
def test_binder_start_gives_the_notebooks_running_brokers(shared_tmp: Path) -> None:
    missing = [kind for kind in KINDS if find_binary(kind) is None]
    if missing or shutil.which("redis-cli") is None:
        skip_or_fail(f"binder/start needs every broker binary and redis-cli; missing: {missing}")
    as_user, uid = _user()
    repo = shared_tmp / "repo"
    for part in ("binder", "eventsource_lab", "notebooks"):
        shutil.copytree(ROOT / part, repo / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", repo)
    (shared_tmp / "check.py").write_text(CHECK)
    home = shared_tmp / "home"
    for sub in ("out", "tmp"):
        (home / sub).mkdir(parents=True)
    bin_dir = _user_python(shared_tmp, as_user)
    if as_user:
        shutil.chown(home, USER)
        for sub in ("out", "tmp"):
            shutil.chown(home / sub, USER)

    command = (
        f"python {shared_tmp / 'check.py'} && cd notebooks && python -m nbconvert --to notebook "
        f"--execute 07_13a_redis_groups.ipynb --output-dir {home / 'out'} "
        "--ExecutePreprocessor.timeout=120"
    )
    token = secrets.token_hex(8)
    run = f"{RUN_MARKER}={token}".encode()
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "HOME": str(home),
        "TMPDIR": str(home / "tmp"),
        RUN_MARKER: token,
    }
    started = time.monotonic()
    argv = [*as_user, "env", "-i", *(f"{k}={v}" for k, v in env.items())]
    result = subprocess.run(
        [*argv, "binder/start", "bash", "-c", command],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    elapsed = time.monotonic() - started
    serve = [int(line.split()[-1]) for line in result.stdout.splitlines() if "serve pid" in line]
    if serve:  # binder/start leaves the brokers running (Binder ends them with the container)
        os.kill(serve[0], signal.SIGTERM)
    deadline = time.monotonic() + 30
    leftover = _tagged(run) | (_owned_by(uid) if as_user else set())
    while leftover and time.monotonic() < deadline:
        time.sleep(0.1)
        leftover = _tagged(run) | (_owned_by(uid) if as_user else set())
    for pid in leftover:  # a leak fails the test below; still, leave nothing running
        os.kill(pid, signal.SIGKILL)

    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    for kind in KINDS:
        assert f"{kind} url " in result.stdout
    assert serve, result.stdout
    assert not leftover, f"processes left running: {sorted(leftover)}"
    # The notebook's broker panel used the exported address (mode "url"), not a broker of its own.
    redis_url = next(line.split()[-1] for line in result.stdout.splitlines() if "redis url" in line)
    executed = (home / "out" / "07_13a_redis_groups.ipynb").read_text()
    assert f">url</td><td style='padding:2px 8px'><code>{redis_url}</code>" in executed
    print(f"binder/start + check + notebook: {elapsed:.1f} s")
