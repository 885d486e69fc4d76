"""NodesView: the nodes of a RabbitMQ cluster, which of them holds a quorum queue's leader, and
which node each bus is connected to, so a notebook can watch a failover happen."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from ..errors import BrokerError
from ..redact import redact_url
from ._html import FAILED_COLOR, escape, snapshot, table
from ._live import LiveView

if TYPE_CHECKING:
    from ..brokers.cluster import RabbitMQCluster
    from ..bus.rabbitmq import RabbitMQEventBus

__all__ = ["NodeRow", "NodesView"]

_LEADER = "<b>★ leader</b>"
_STOPPED = f"<span style='color:{FAILED_COLOR}'>stopped</span>"


@dataclass(frozen=True)
class NodeRow:
    """One node as last read: its name, whether it answers, whether it holds the queue's
    leader, and the names of the buses connected to it."""

    name: str
    running: bool
    leader: bool
    buses: tuple[str, ...]


class NodesView(LiveView):
    """A row per node of ``cluster``: running or stopped, ★ on the node holding the leader of
    quorum queue ``queue``, and the buses (by the names given) connected to it.

    :meth:`refresh` reads the cluster (an AMQP login per node, a ``rabbitmqctl`` query for the
    leader) in a thread, so the event loop, and the buses on it, go on meanwhile.

    Args:
        cluster: a running :class:`~eventsource_lab.brokers.cluster.RabbitMQCluster`.
        queue: the quorum queue whose leader to show (a bus's ``config.queue``).
        buses: buses to place on the nodes, by the name to show for each.
    """

    def __init__(
        self,
        cluster: RabbitMQCluster,
        queue: str,
        buses: Mapping[str, RabbitMQEventBus] | None = None,
        **kwargs: Any,
    ) -> None:
        self._cluster = cluster
        self._queue = queue
        self._buses = dict(buses or {})
        self._rows: list[NodeRow] = []
        self._error: str | None = None
        self._table = widgets.HTML()
        super().__init__(children=[self._table], **kwargs)
        self._draw()

    @property
    def rows(self) -> list[NodeRow]:
        """The nodes as last read, in the cluster's node order (empty before a refresh)."""
        return list(self._rows)

    @property
    def leader(self) -> str | None:
        """The name of the node holding the queue's leader, as last read."""
        return next((row.name for row in self._rows if row.leader), None)

    @property
    def error(self) -> str | None:
        """Why the last read failed, if it did (the rows before it stay)."""
        return self._error

    async def refresh(self) -> None:
        """Read the nodes and the leader now (in a thread) and redraw."""
        try:
            self._rows = await asyncio.to_thread(self._read)
        except (BrokerError, OSError, ValueError) as exc:
            self._error = f"{type(exc).__name__}: {exc}"
        else:
            self._error = None
        self._draw()

    def _read(self) -> list[NodeRow]:
        running = {node.name: node.is_running() for node in self._cluster.nodes}
        leader = self._cluster.queue_leader(self._queue) if any(running.values()) else None
        connected = {name: bus.connected_url for name, bus in self._buses.items()}
        return [
            NodeRow(
                node.name,
                running[node.name],
                leader is not None and leader.name == node.name,
                tuple(name for name, url in connected.items() if url == redact_url(node.url)),
            )
            for node in self._cluster.nodes
        ]

    # -- drawing -----------------------------------------------------------------------------

    def _html(self) -> str:
        cells = [
            (
                escape(row.name),
                "running" if row.running else _STOPPED,
                _LEADER if row.leader else "",
                escape(", ".join(row.buses)),
            )
            for row in self._rows
        ]
        title = f"queue <b>{escape(self._queue)}</b> · {len(self._cluster.nodes)} nodes"
        html = title + table(
            ["node", "state", "queue leader", "buses connected"], cells, empty="not read yet"
        )
        if self._error:
            html += f"<div style='color:{FAILED_COLOR};font-size:12px'>{escape(self._error)}</div>"
        return html

    def _draw(self) -> None:
        self._table.value = self._html()

    def _final_frame(self) -> None:
        self._draw()  # refresh() asks the cluster, which may be gone: show what is known

    def snapshot_html(self) -> str:
        """The nodes as last read, as a static table."""
        return snapshot(self._html())

    def __repr__(self) -> str:
        rows = "; ".join(
            f"{row.name} {'running' if row.running else 'stopped'}"
            + (" leader" if row.leader else "")
            + (f" [{', '.join(row.buses)}]" if row.buses else "")
            for row in self._rows
        )
        return f"NodesView({self._queue}: {rows or 'not read yet'})"
