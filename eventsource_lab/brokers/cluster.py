"""A local RabbitMQ cluster: several nodes as processes on 127.0.0.1, joined with rabbitmqctl.

Opt-in, with ``start("rabbitmq", nodes=3)``: three Erlang VMs take several times the memory of
one broker (``CLUSTER_MEMORY_MB``; the doctor prints it). The nodes share one private epmd on its
own port and one Erlang cookie; each has its own ports and data dir inside the cluster's temp
dir. A stopped node keeps its data dir, so it rejoins the cluster when it starts again.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..errors import BrokerError, BrokerUnavailableError
from ..redact import redact_text, redact_url
from . import local, probes
from .base import INSTALL_HINTS, TRAITS, Broker, wait_until_ready, write_private
from .local import READY_TIMEOUT, _Command, _LocalRunner, _Process

__all__ = ["CLUSTER_MEMORY_MB", "ClusterNode", "RabbitMQCluster", "start_cluster"]

#: RSS of every process of a fresh three-node cluster, measured after start on the machine this
#: kit was built on (423 to 458 MB over ten starts; their PSS, shared pages counted once, ~320
#: MB), rounded up to ten: what ``doctor`` says a cluster needs.
CLUSTER_MEMORY_MB = 460
#: How long one rabbitmqctl command (stop_app, join_cluster, start_app, a query) may take.
CTL_TIMEOUT = 30.0


def _write_cookie(home: Path, cookie: str) -> None:
    """The Erlang cookie a node and its rabbitmqctl read from ``HOME``: the same on every node."""
    write_private(home / ".erlang.cookie", cookie)


class ClusterNode:
    """One node of a :class:`RabbitMQCluster`: stop it and start it again to watch failover."""

    def __init__(self, cluster: RabbitMQCluster, runner: _LocalRunner) -> None:
        self._cluster = cluster
        self._runner = runner
        #: The Erlang node name, as rabbitmqctl and ``queue_leader`` name it.
        self.name = runner.node
        #: This node's own AMQP URL (the cluster's ``url`` lists every node's).
        self.url = runner.url

    @property
    def data_dir(self) -> Path | None:
        """This node's directory inside the cluster's; kept while the node is stopped."""
        return self._runner.data_dir

    @property
    def pids(self) -> list[int]:
        """Every live process of this node (its Erlang VM and helpers)."""
        return self._runner.pids()

    def is_running(self, timeout: float = 2.0) -> bool:
        """Whether this node answers AMQP logins right now."""
        try:
            probes.check("rabbitmq", self.url, timeout=timeout)
        except (OSError, probes.ProbeError):
            return False
        return True

    def stop(self) -> None:
        """Stop this node's processes (its data stays); the other nodes go on."""
        with self._cluster._lock:
            self._cluster._check_running()
            self._runner._stop_processes()
            stopped = self._cluster._stop_order
            stopped[:] = [node for node in stopped if node is not self] + [self]

    def start(self) -> None:
        """Start this node again on its ports and data dir; it rejoins the cluster, and this
        returns once it answers. A node that runs is left as it is.

        Raises:
            BrokerError: every node is stopped and this one did not stop last: RabbitMQ would
                keep it waiting for the node that did, so that one must start first.
        """
        with self._cluster._lock:
            self._cluster._check_running()
            last = self._cluster._stop_order[-1] if self._cluster._stop_order else self
            if last is not self and not any(n._runner.processes for n in self._cluster.nodes):
                raise BrokerError(
                    f"every node of the cluster is stopped, and RabbitMQ boots them from the "
                    f"one stopped last: start {last.name} first, then {self.name} (or all at "
                    "once with the cluster's restart())"
                )
            if not self._runner.processes or not self.is_running():
                self._runner.restart()

    async def astop(self) -> None:
        """:meth:`stop` without blocking the event loop (a notebook cell, a widget)."""
        await asyncio.to_thread(self.stop)

    async def astart(self) -> None:
        """:meth:`start` without blocking the event loop: a node takes seconds to boot."""
        await asyncio.to_thread(self.start)

    def __repr__(self) -> str:
        state = "running" if self._runner.processes else "stopped"
        return f"<rabbitmq node {self.name} at {redact_url(self.url)}, {state}>"


class RabbitMQCluster(Broker):
    """A running local RabbitMQ cluster: ``url`` lists every node's URL, comma-separated.

    ``nodes`` are the nodes in start order; stop one with ``nodes[i].stop()`` and the others go on,
    quorum queues elect a new leader among them (:meth:`queue_leader`).
    """

    def __init__(self, runner: _ClusterRunner) -> None:
        self.nodes = [ClusterNode(self, node) for node in runner.nodes]
        #: One AMQP URL per node, in node order.
        self.urls = [node.url for node in self.nodes]
        traits = TRAITS["rabbitmq", "cluster"]
        super().__init__("rabbitmq", "local", ",".join(self.urls), runner, traits)
        self._cluster_runner = runner
        self._stop_order: list[ClusterNode] = []  # stopped by ClusterNode.stop, the last last

    def is_running(self, timeout: float = 2.0) -> bool:
        """Whether any node answers AMQP logins right now."""
        return not self._stopped and any(node.is_running(timeout) for node in self.nodes)

    def running_nodes(self) -> list[str]:
        """The names of the nodes the cluster reports running (rabbitmqctl cluster_status)."""
        status = _json(self._cluster_runner.query("cluster_status", "--formatter", "json"))
        return list(status["running_nodes"])

    def queue_leader(self, queue: str, vhost: str = "/") -> ClusterNode | None:
        """The node holding the leader of quorum queue ``queue``; None if there is no such queue
        (or no leader: a classic queue, or a quorum queue between leaders)."""
        rows = _json(
            self._cluster_runner.query(
                "list_queues", "-p", vhost, "name", "leader", "--formatter", "json"
            )
        )
        leader = next((row.get("leader") for row in rows if row["name"] == queue), None)
        return next((node for node in self.nodes if node.name == leader), None)

    def _check_running(self) -> None:
        if self._stopped:
            raise BrokerError("this rabbitmq cluster was stopped; start a new one")

    def __repr__(self) -> str:
        state = "stopped" if self._stopped else "running"
        urls = ", ".join(redact_url(url) for url in self.urls)
        return f"<rabbitmq cluster of {len(self.nodes)} nodes (local) at {urls}, {state}>"


class _ClusterRunner(_LocalRunner):
    """The cluster's temp dir and epmd (the processes of this runner), and a runner per node."""

    def __init__(self, binary: Path, count: int) -> None:
        super().__init__("rabbitmq", binary)
        self.count = count
        self.ctl = binary.parent / "rabbitmqctl"
        self.nodes: list[_LocalRunner] = []
        self.cookie = secrets.token_hex(16)

    def _pick_ports(self) -> dict[str, int]:
        return {"epmd": super()._pick_ports()["epmd"]}

    def _commands(self) -> list[_Command]:
        return [self._epmd_command()]

    def start(self, retry_on_port_clash: bool = False) -> None:
        """epmd first, then every node at once; each but the first then joins the first."""
        super().start(retry_on_port_clash)
        assert self.data_dir is not None
        prefix = f"eslab-{secrets.token_hex(3)}"
        for number in range(1, self.count + 1):
            home = self.data_dir / f"node-{number}"
            home.mkdir()
            _write_cookie(home, self.cookie)
            node = _LocalRunner(
                "rabbitmq",
                self.binary,
                data_dir=home,
                credentials=(self.user, self.password),  # one user on every node
                node=f"{prefix}-{number}@localhost",
                epmd_port=self.epmd_port,
            )
            self.nodes.append(node)
        seed, seed_done, seed_up = self.nodes[0], threading.Event(), []

        def bring_up(node: _LocalRunner) -> None:
            """Start the node; a joiner then stops its RabbitMQ and, once the seed runs, joins
            it and starts RabbitMQ again (rabbitmqctl stop_app, join_cluster, start_app)."""
            try:
                self._start_node(node, retry_on_port_clash)
                if node is seed:
                    seed_up.append(node)
                else:
                    self._ctl_ok(node, seed, "stop_app")
            finally:
                if node is seed:
                    seed_done.set()
            seed_done.wait()
            if node is not seed and seed_up:  # else the seed's own failure is raised
                self._ctl_ok(node, seed, "join_cluster", seed.node)
                self._ctl_ok(node, seed, "start_app")
                what = f"local cluster node {node.node}"
                wait_until_ready("rabbitmq", what, node._answers, READY_TIMEOUT["rabbitmq"])

        self._each(bring_up, self.nodes)

    @staticmethod
    def _start_node(node: _LocalRunner, retry_on_port_clash: bool) -> None:
        try:
            node.start(retry_on_port_clash)
        except BrokerUnavailableError as e:
            reasons = [f"local cluster: node {node.node} did not start: {r}" for r in e.reasons]
            raise BrokerUnavailableError("rabbitmq", reasons) from e

    def _ctl_ok(self, node: _LocalRunner, seed: _LocalRunner, *command: str) -> None:
        """One step of ``node`` joining ``seed``; its failure names both, in RabbitMQ's words."""
        code, output = self._ctl(node, *command)
        if code != 0:
            reason = (
                f"local cluster: node {node.node} did not join {seed.node}: `rabbitmqctl "
                f"{' '.join(command)}` {_how_it_ended(code)}:\n{_gist(output)}"
            )
            raise BrokerUnavailableError("rabbitmq", [reason])

    def _ctl(self, node: _LocalRunner, *args: str) -> tuple[int | None, str]:
        """Run rabbitmqctl against ``node``: ``(exit code or None on timeout, its output)``."""
        assert node.data_dir is not None
        out = node.data_dir / f"rabbitmqctl-{secrets.token_hex(4)}.out"
        argv = [str(self.ctl), "-n", node.node, "-q", *args]
        process = _Process("rabbitmqctl", argv, node.rabbitmq_env(), node.data_dir, log=out)
        try:
            code: int | None = process.popen.wait(CTL_TIMEOUT)
        except subprocess.TimeoutExpired:
            code = None
        finally:
            process.stop()
        output = out.read_text(errors="replace")
        out.unlink()
        return code, redact_text(output, [self.password])

    def query(self, *args: str) -> str:
        """rabbitmqctl's answer from the first node that gives one."""
        failures = []
        for node in self.nodes:
            if node.processes:
                code, output = self._ctl(node, *args)
                if code == 0:
                    return output
                failures.append(f"{node.node}: {_how_it_ended(code)}: {output.strip()}")
        raise BrokerError(
            f"no node of the cluster answered `rabbitmqctl {' '.join(args)}`: "
            + ("; ".join(failures) or "every node is stopped")
        )

    @staticmethod
    def _each(action: Callable[[_LocalRunner], None], nodes: list[_LocalRunner]) -> None:
        """Run ``action`` on every node at once; once all are done, the first failure is raised.
        As Python exits no thread can be had (the atexit stop): then one node after another."""
        try:
            pool = ThreadPoolExecutor(max_workers=max(len(nodes), 1))
            futures = [pool.submit(action, node) for node in nodes]
        except RuntimeError:  # cannot schedule new futures after interpreter shutdown
            for node in nodes:
                action(node)
            return
        with pool:
            for future in futures:
                future.result()

    def pids(self) -> list[int]:
        return [pid for node in self.nodes for pid in node.pids()] + super().pids()

    def stop(self) -> None:
        self._each(lambda node: node._stop_processes(), self.nodes)
        super().stop()

    def restart(self) -> None:
        """Every node stops, then all start at once: each waits for the others' tables."""
        self._each(lambda node: node._stop_processes(), self.nodes)
        self._each(lambda node: node.restart(), self.nodes)


def _json(output: str) -> Any:
    """rabbitmqctl's JSON answer, past any warning it printed first."""
    start = min((i for i in (output.find("["), output.find("{")) if i >= 0), default=0)
    return json.loads(output[start:])


def _gist(output: str) -> str:
    """rabbitmqctl's error line and what its diagnostics found, without its general advice."""
    head, _, diagnostics = output.partition("DIAGNOSTICS")
    found = diagnostics.split("Current node details:")[0].splitlines()
    found = [line.strip() for line in found if line.strip().startswith("*")]
    first = [line.strip() for line in head.splitlines() if line.strip()][:1]
    return "\n".join(first + found) if found else "\n".join(output.strip().splitlines()[-20:])


def _how_it_ended(code: int | None) -> str:
    return f"did not end within {CTL_TIMEOUT:.0f} s" if code is None else f"exited with {code}"


def start_cluster(nodes: int) -> RabbitMQCluster:
    """Start ``nodes`` local RabbitMQ nodes and join them; return once every node has joined.

    Raises:
        BrokerUnavailableError: RabbitMQ is not installed, a node did not start (within
            ``READY_TIMEOUT``), or did not join (each rabbitmqctl step within ``CTL_TIMEOUT``);
            the message names the node, every process started is ended and the temp dir
            removed first.
    """
    binary, detail = local.local_status("rabbitmq")
    remedy = f"A cluster runs as local processes only: {INSTALL_HINTS['rabbitmq']}."
    if binary is None:
        raise BrokerUnavailableError("rabbitmq", [f"local: {detail}"], remedy)
    if not os.access(binary.parent / "rabbitmqctl", os.X_OK):
        reason = f"local: no rabbitmqctl beside {binary}, and a cluster is joined with it"
        raise BrokerUnavailableError("rabbitmq", [reason], remedy)
    runner = _ClusterRunner(binary, nodes)
    try:
        runner.start(retry_on_port_clash=True)
    except BaseException:
        runner.stop()
        raise
    return RabbitMQCluster(runner)
