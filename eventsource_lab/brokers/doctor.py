"""Which ways of getting each broker work on this machine, as data and as a printable table."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..redact import redact_url
from . import containers, local
from .base import ENV_VARS, KINDS, TRAITS, Traits
from .cluster import CLUSTER_MEMORY_MB
from .launch import env_url

__all__ = ["ModeStatus", "diagnose", "format_report", "memory_available_mb"]


@dataclass(frozen=True)
class ModeStatus:
    """One way (``mode``) of getting one broker (``kind``): usable here or not, and why."""

    kind: str
    mode: str
    available: bool
    detail: str
    #: What this way keeps and lets in, where it is not the mode's default (a container's image).
    image_traits: Traits | None = None
    #: The images auto mode would pull for this way, where no local process can be had.
    pulls: tuple[str, ...] = ()
    #: The memory this way needs, where it is more than a classroom machine may spare (MB).
    memory_mb: int | None = None

    @property
    def traits(self) -> Traits:
        """What a broker had this way keeps across a restart and whom it lets in."""
        return self.image_traits or TRAITS[self.kind, self.mode]

    @property
    def durable(self) -> bool | None:
        """Whether a broker had this way keeps queued events across a restart (None: unknown)."""
        return self.traits.durable


def diagnose() -> list[ModeStatus]:
    """Every kind with each of its modes, in the order ``start(kind, "auto")`` tries them."""
    statuses = containers.container_status()
    rows = []
    for kind in KINDS:
        url = env_url(kind)
        rows.append(
            ModeStatus(
                kind,
                "url",
                url is not None,
                f"{ENV_VARS[kind]}={redact_url(url)}" if url else f"{ENV_VARS[kind]} is not set",
            )
        )
        status = statuses[kind]
        traits = containers.container_traits(kind, status.durable)
        rows.append(
            ModeStatus(kind, "container", status.available, status.detail, traits, status.missing)
        )
        binary, local_detail = local.local_status(kind)
        rows.append(ModeStatus(kind, "local", binary is not None, local_detail))
        if kind == "rabbitmq":
            rows.append(_cluster_status(binary is not None, local_detail))
    return rows


def _cluster_status(installed: bool, local_detail: str) -> ModeStatus:
    """The opt-in three-node RabbitMQ cluster: local processes, and the memory they need."""
    free = memory_available_mb()
    enough = free is None or free >= CLUSTER_MEMORY_MB
    detail = (
        f"opt-in, start('rabbitmq', nodes=3): 3 local nodes need about {CLUSTER_MEMORY_MB} MB "
        f"(measured after start on the machine this kit was built on); "
        + ("free memory here unknown" if free is None else f"{free} MB free here")
    )
    if not installed:
        detail = f"{detail}; {local_detail}"
    return ModeStatus(
        "rabbitmq", "cluster", installed and enough, detail, memory_mb=CLUSTER_MEMORY_MB
    )


def memory_available_mb() -> int | None:
    """Memory free for new processes (MB): the kernel's estimate, or what is left under this
    container's cgroup limit (Binder's ~2 GB) if that is less; None where neither can be read."""
    found = []
    try:
        meminfo = Path("/proc/meminfo").read_text()
        found += [
            int(line.split()[1]) // 1024
            for line in meminfo.splitlines()
            if line.startswith("MemAvailable:")
        ]
    except OSError:
        pass
    for limit, usage in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        ),
    ):
        try:
            cap, used = Path(limit).read_text().strip(), Path(usage).read_text().strip()
        except OSError:
            continue
        if cap.isdigit() and int(cap) < 2**60:  # "max", or v1's "no limit" of ~2**63
            found.append((int(cap) - int(used)) // 2**20)
    return min(found, default=None)


def format_report(rows: list[ModeStatus]) -> str:
    """A table of ``rows``, what each way keeps and lets in, and which mode ``auto`` picks."""
    durable = {True: "yes", False: "no", None: "?"}
    lines = [f"{'kind':<10}{'mode':<11}{'ok':<5}{'durable':<9}detail"]
    lines += [
        f"{r.kind:<10}{r.mode:<11}{'yes' if r.available else 'no':<5}{durable[r.durable]:<9}"
        f"{r.detail}"
        for r in rows
    ]
    facts = [
        f"{r.kind} {r.mode}: durable: {durable[r.durable]} ({r.traits.durability}); "
        f"{r.traits.access}"
        for r in rows
        if r.mode != "url"
    ]
    kinds = dict.fromkeys(r.kind for r in rows)
    picks = [f"{kind} -> {_pick([r for r in rows if r.kind == kind])}" for kind in kinds]
    return "\n".join([*lines, "", *facts, "", "auto mode picks: " + ", ".join(picks)])


def _pick(rows: list[ModeStatus]) -> str:
    """The way ``start(kind)`` takes: the first that works, else a container after its pull."""
    mode = next((r.mode for r in rows if r.available and r.mode != "cluster"), None)
    if mode:
        return mode
    pulling = next((r for r in rows if r.pulls), None)
    if pulling:
        return f"container, once it has pulled {' and '.join(pulling.pulls)}"
    return "nothing (start() raises BrokerUnavailableError)"
