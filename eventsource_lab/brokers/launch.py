"""``start``: one call that gets a running broker of a kind, whichever way this machine allows."""

from __future__ import annotations

import asyncio
import os
import threading

from ..errors import BrokerUnavailableError
from ..redact import redact_url
from . import cluster, containers, local, probes
from .base import ENV_VARS, KINDS, MODES, Broker, unavailable, wait_until_ready

__all__ = ["astart", "env_url", "start"]

URL_TIMEOUT = 10.0


def env_url(kind: str) -> str | None:
    """The broker address set in the environment for ``kind``, if any."""
    return os.environ.get(ENV_VARS[kind]) or None


def start(kind: str, mode: str = "auto", nodes: int = 1) -> Broker:
    """Get a running ``kind`` broker (``redis``, ``rabbitmq``, ``kafka``); blocks until it answers.

    Args:
        kind: which broker.
        mode: ``"url"`` uses the address in the kind's environment variable as is (and never
            stops it); ``"container"`` starts one with testcontainers; ``"local"`` starts a local
            process on a free loopback port; ``"auto"`` (the default) tries them in that order,
            and pulls a container's missing image only where no local process can be had.
        nodes: 1 for one broker; 2 or more for a RabbitMQ cluster of that many local nodes
            (a :class:`~eventsource_lab.brokers.cluster.RabbitMQCluster`; ``mode`` "auto" or
            "local"). Opt-in: three nodes need several times one broker's memory.

    Raises:
        BrokerUnavailableError: no broker could be had that way; the message says why, and how
            to get one.
        ValueError: an unknown kind or mode, or ``nodes`` that no broker of that kind and mode
            can have.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if isinstance(nodes, bool) or not isinstance(nodes, int) or nodes < 1:
        raise ValueError(f"nodes must be 1 (one broker) or more (a cluster), not {nodes!r}")
    if nodes > 1:
        if kind != "rabbitmq":
            raise ValueError(f"only rabbitmq runs as a cluster here, not {kind}: use nodes=1")
        if mode not in ("auto", "local"):
            raise ValueError(
                f"a RabbitMQ cluster runs as local processes only: use mode='local' or "
                f"'auto', not {mode!r}"
            )
        return cluster.start_cluster(nodes)
    if mode == "url":
        return _from_env(kind)
    if mode == "container":
        return containers.start_container(kind)
    if mode == "local":
        return local.start_local(kind)

    if env_url(kind):
        return _from_env(kind)
    reasons = [f"url: {ENV_VARS[kind]} is not set"]
    binary, detail = local.local_status(kind)
    try:  # a download may take minutes: only where no local process can be had
        return containers.start_container(kind, pull=binary is None)
    except BrokerUnavailableError as e:
        reasons += e.reasons
    if binary is None:
        reasons.append(f"local: {detail}")
        raise unavailable(kind, reasons)
    try:
        return local.start_local(kind)
    except BrokerUnavailableError as e:
        raise unavailable(kind, reasons + e.reasons) from e


async def astart(kind: str, mode: str = "auto", nodes: int = 1) -> Broker:
    """:func:`start` without blocking the event loop (notebooks and widgets await this).

    Cancelled (a cell interrupted while the broker boots), it stops the broker the start goes
    on to make in its thread: nobody else holds it, and a container would outlive the cell."""
    lock, made, abandoned = threading.Lock(), [], False

    def run() -> Broker:
        broker = start(kind, mode, nodes)
        with lock:
            if not abandoned:
                made.append(broker)
                return broker
        broker.stop()
        return broker

    try:
        return await asyncio.to_thread(run)
    except asyncio.CancelledError:
        with lock:
            abandoned = True
        for broker in made:  # finished just as the cancel came: the result is dropped
            await asyncio.shield(asyncio.to_thread(broker.stop))
        raise


def _from_env(kind: str) -> Broker:
    url = env_url(kind)
    if url is None:
        raise unavailable(kind, [f"url: {ENV_VARS[kind]} is not set"])
    what = f"{ENV_VARS[kind]}={redact_url(url)}"
    wait_until_ready(kind, what, lambda: probes.check(kind, url), URL_TIMEOUT)
    return Broker(kind, "url", url)
