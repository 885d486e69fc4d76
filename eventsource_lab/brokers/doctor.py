"""Which ways of getting each broker work on this machine, as data and as a printable table."""

from __future__ import annotations

from dataclasses import dataclass

from ..redact import redact_url
from . import containers, local
from .base import ENV_VARS, KINDS, TRAITS, Traits
from .launch import env_url

__all__ = ["ModeStatus", "diagnose", "format_report"]


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
    mode = next((r.mode for r in rows if r.available), None)
    if mode:
        return mode
    pulling = next((r for r in rows if r.pulls), None)
    if pulling:
        return f"container, once it has pulled {' and '.join(pulling.pulls)}"
    return "nothing (start() raises BrokerUnavailableError)"
