"""The local RabbitMQ cluster handled the way users handle it: every node stopped and started
again in whatever order, a start cancelled half way, the cluster stopped under a live view.

One three-node cluster serves the module; the test that stops it comes last.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from uuid import uuid4

import aio_pika
import pytest

from eventsource_lab.brokers import BrokerError
from eventsource_lab.brokers.cluster import RabbitMQCluster
from eventsource_lab.widgets.rabbitmq_nodes import NodesView
from tests.support.waiting import eventually

pytestmark = [pytest.mark.rabbitmq, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def cluster(rabbitmq_cluster: RabbitMQCluster) -> RabbitMQCluster:
    return rabbitmq_cluster


async def _declare(cluster: RabbitMQCluster, **arguments: str) -> str:
    """A new durable queue, declared through the first node; its name."""
    name = f"adv-{uuid4().hex[:8]}"
    connection = await aio_pika.connect(cluster.nodes[0].url)
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue(name, durable=True, arguments=arguments)
    return name


async def test_queue_leader_is_none_for_a_classic_queue_a_missing_one_and_another_vhost(
    cluster: RabbitMQCluster,
) -> None:
    quorum = await _declare(cluster, **{"x-queue-type": "quorum"})
    classic = await _declare(cluster)
    assert await asyncio.to_thread(cluster.queue_leader, quorum) is cluster.nodes[0]
    for queue, vhost in ((classic, "/"), (f"no-{uuid4().hex[:8]}", "/"), (quorum, "no-such")):
        assert await asyncio.to_thread(cluster.queue_leader, queue, vhost) is None


async def test_every_node_stopped_must_start_from_the_last_one_and_the_error_says_so(
    cluster: RabbitMQCluster,
) -> None:
    """RabbitMQ boots a node whose peers are all down only if it stopped last: the first node
    started after all three stopped one by one waited for the others and, 60 s later, failed
    with a log tail that did not say why. Now the start says at once which node to start first,
    and the nodes come back in that order."""
    for node in cluster.nodes:
        await node.astop()
    first, last = cluster.nodes[0], cluster.nodes[-1]
    began = time.monotonic()
    with pytest.raises(BrokerError, match=f"start {last.name} first, then {first.name}"):
        await first.astart()
    assert time.monotonic() - began < 1 and first.pids == []
    for node in reversed(cluster.nodes):
        await node.astart()
    names = sorted(node.name for node in cluster.nodes)
    assert sorted(await asyncio.to_thread(cluster.running_nodes)) == names


async def test_a_start_cancelled_half_way_and_a_stopped_cluster_leave_nothing_behind(
    cluster: RabbitMQCluster,
) -> None:
    """Cancelling ``astart()`` returns at once (the boot goes on in its thread, as a thread
    cannot be cancelled); stopping the cluster then ends that node too, and a live view of the
    stopped cluster shows every node stopped instead of failing."""
    view = NodesView(cluster, "orders")
    node = cluster.nodes[1]
    await node.astop()
    starting = asyncio.ensure_future(node.astart())
    await eventually(lambda: bool(node.pids), timeout=10, what="the node's processes")
    starting.cancel()
    began = time.monotonic()
    with pytest.raises(asyncio.CancelledError):
        await starting
    assert time.monotonic() - began < 1
    data_dir = cluster.data_dir
    await asyncio.to_thread(cluster.stop)
    assert cluster.pids == [] and all(n.pids == [] for n in cluster.nodes)
    assert data_dir is not None and not data_dir.exists()
    await view.refresh()
    assert view.error is None and [row.running for row in view.rows] == [False] * 3
    assert view.leader is None
    await asyncio.to_thread(cluster.stop)  # again: nothing to do
    with pytest.raises(BrokerError, match="was stopped"):
        await node.astart()


def test_a_cluster_left_running_when_python_exits_is_stopped_and_its_directory_removed(
    tmp_path: Path,
) -> None:
    """The atexit stop ran after Python's executors had shut down: stopping the nodes at once
    needs a thread pool, the RuntimeError was swallowed, and the cluster's directory stayed.
    A two-node cluster in a child Python that exits without stopping it."""
    script = tmp_path / "leave_it_running.py"
    script.write_text(
        "from eventsource_lab.brokers import start\n"
        "cluster = start('rabbitmq', 'local', nodes=2)\n"
        "print(cluster.data_dir, flush=True)\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=True
    )
    data_dir = Path(done.stdout.strip())
    assert data_dir.name.startswith("eventsource-lab-rabbitmq-")
    assert not data_dir.exists(), done.stderr
