"""Which ways of getting each broker work on this machine, as data and as a printable table."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import BrokerUnavailableError
from ..redact import redact_url
from . import containers, local
from .base import ENV_VARS, KINDS, TRAITS
from .launch import env_url

__all__ = ["ModeStatus", "diagnose", "format_report"]


@dataclass(frozen=True)
class ModeStatus:
    """One way (``mode``) of getting one broker (``kind``): usable here or not, and why."""

    kind: str
    mode: str
    available: bool
    detail: str

    @property
    def durable(self) -> bool | None:
        """Whether a broker had this way keeps queued events across a restart (None: unknown)."""
        return TRAITS[self.kind, self.mode].durable


def diagnose() -> list[ModeStatus]:
    """Every kind with each of its modes, in the order ``start(kind, "auto")`` tries them."""
    docker_ok, docker_detail = containers.docker_status()
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
        container_ok, container_detail = docker_ok, docker_detail
        if docker_ok:
            try:
                containers.container_class(kind)
            except BrokerUnavailableError as e:
                container_ok, container_detail = False, e.reasons[0]
        rows.append(ModeStatus(kind, "container", container_ok, container_detail))
        binary, local_detail = local.local_status(kind)
        rows.append(ModeStatus(kind, "local", binary is not None, local_detail))
    return rows


def format_report(rows: list[ModeStatus]) -> str:
    """A table of ``rows``, what each way keeps and lets in, and which mode ``auto`` picks."""
    durable = {True: "yes", False: "no", None: "?"}
    lines = [f"{'kind':<10}{'mode':<11}{'ok':<5}{'durable':<9}detail"]
    lines += [
        f"{r.kind:<10}{r.mode:<11}{'yes' if r.available else 'no':<5}{durable[r.durable]:<9}"
        f"{r.detail}"
        for r in rows
    ]
    facts = []
    for r in rows:
        if r.mode != "url":
            traits = TRAITS[r.kind, r.mode]
            facts.append(
                f"{r.kind} {r.mode}: durable: {durable[traits.durable]} ({traits.durability}); "
                f"{traits.access}"
            )
    picks = []
    for kind in dict.fromkeys(r.kind for r in rows):
        mode = next((r.mode for r in rows if r.kind == kind and r.available), None)
        picks.append(f"{kind} -> {mode or 'nothing (start() raises BrokerUnavailableError)'}")
    return "\n".join([*lines, "", *facts, "", "auto mode picks: " + ", ".join(picks)])
