"""A local three-node RabbitMQ cluster: real nodes, a real quorum queue, a real failover.

One cluster serves the module (three nodes take ~25 s to start and join on two cores); the test
that stops it comes last. Times and memory are printed (``-s``) for the doctor and the docs.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path
from urllib.parse import urlsplit
from uuid import uuid4

import aio_pika
import pytest

from eventsource_lab.brokers import (
    BrokerError,
    BrokerUnavailableError,
    ClusterNode,
    RabbitMQCluster,
    local,
    start,
)
from eventsource_lab.brokers import cluster as cluster_module
from eventsource_lab.brokers.cluster import CLUSTER_MEMORY_MB
from eventsource_lab.brokers.probes import check
from tests.conftest import skip_or_fail
from tests.support.waiting import eventually

pytestmark = pytest.mark.rabbitmq

LEADER_MOVE_TIMEOUT = 30.0


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def _name(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().strip()


def _rss_mb(pids: list[int]) -> int:
    total_kb = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total_kb += int(line.split()[1])
    return total_kb // 1024


def _listening(pids: list[int]) -> set[tuple[IPv4Address | IPv6Address, int]]:
    """``(address, port)`` of every TCP socket the processes listen on, from /proc."""
    inodes = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            target = os.readlink(fd) if fd.is_symlink() else ""
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                address, port = fields[1].split(":")
                raw = bytes.fromhex(address)  # 32-bit words in host (little-endian) order
                raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
                found.add((ip_address(raw), int(port, 16)))
    return found


def _processes_using(directory: Path) -> list[int]:
    """Live processes whose working dir or environment points into ``directory``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or not _alive(int(entry.name)):
            continue
        try:
            cwd = os.readlink(entry / "cwd")
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if cwd.startswith(str(directory)) or str(directory).encode() in environ:
            found.append(int(entry.name))
    return found


@pytest.fixture(scope="module")
def cluster() -> Iterator[RabbitMQCluster]:
    began = time.monotonic()
    try:
        started = start("rabbitmq", nodes=3)
    except BrokerUnavailableError as e:
        skip_or_fail(f"rabbitmq cluster unavailable: {e}")
        raise  # unreachable: skip_or_fail always raises
    assert isinstance(started, RabbitMQCluster)
    print(
        f"\n3-node cluster: started and joined in {time.monotonic() - began:.1f} s, "
        f"RSS of its processes {_rss_mb(started.pids)} MB (doctor says {CLUSTER_MEMORY_MB} MB)"
    )
    with started:
        yield started


def test_three_nodes_run_joined_and_each_url_answers(cluster: RabbitMQCluster) -> None:
    names = [node.name for node in cluster.nodes]
    assert (cluster.kind, cluster.mode, len(set(names))) == ("rabbitmq", "local", 3)
    assert sorted(cluster.running_nodes()) == sorted(names)
    assert cluster.url == ",".join(cluster.urls) == ",".join(node.url for node in cluster.nodes)
    assert len({urlsplit(url).port for url in cluster.urls}) == 3
    for node in cluster.nodes:
        assert urlsplit(node.url).hostname == "127.0.0.1" and node.is_running()
        check("rabbitmq", node.url)  # the same user and password on every node
        assert node.data_dir is not None and node.data_dir.parent == cluster.data_dir
    assert cluster.is_running()
    # one private epmd shared by the nodes, an Erlang VM per node
    names_of_pids = [_name(pid) for pid in cluster.pids]
    assert (names_of_pids.count("epmd"), names_of_pids.count("beam.smp")) == (1, 3)
    listening = _listening(cluster.pids)
    assert all(address.is_loopback for address, _ in listening)  # epmd adds ::1 to 127.0.0.1
    assert {urlsplit(url).port for url in cluster.urls} < {port for _, port in listening}
    assert _rss_mb(cluster.pids) <= CLUSTER_MEMORY_MB * 1.3  # the doctor's figure holds


async def _leader_of(cluster: RabbitMQCluster, queue: str) -> ClusterNode | None:
    return await asyncio.to_thread(cluster.queue_leader, queue)


async def test_a_quorum_queue_fails_over_to_another_node_and_the_node_rejoins(
    cluster: RabbitMQCluster,
) -> None:
    queue_name = f"orders-{uuid4().hex[:8]}"
    connection = await aio_pika.connect(cluster.nodes[0].url)
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue(queue_name, durable=True, arguments={"x-queue-type": "quorum"})
        await channel.default_exchange.publish(
            aio_pika.Message(b"kept", delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key=queue_name,
        )
    leader = await _leader_of(cluster, queue_name)
    assert leader in cluster.nodes
    assert await _leader_of(cluster, f"no-such-{uuid4().hex[:8]}") is None

    began = time.monotonic()
    await leader.astop()
    stopped_in = time.monotonic() - began
    others = [node for node in cluster.nodes if node is not leader]
    assert not leader.is_running() and leader.pids == []
    assert all(node.is_running() for node in others)

    async def moved() -> bool:
        return await _leader_of(cluster, queue_name) in others

    began = time.monotonic()
    await eventually(moved, timeout=LEADER_MOVE_TIMEOUT, what="a new leader on another node")
    moved_in = time.monotonic() - began
    connection = await aio_pika.connect(others[0].url)  # the message survived the leader
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(queue_name, passive=True)
        message = await queue.get(timeout=10, fail=True)
        await message.ack()
        assert message.body == b"kept"

    began = time.monotonic()
    await leader.astart()
    started_in = time.monotonic() - began
    assert leader.is_running() and leader.pids
    names = sorted(node.name for node in cluster.nodes)
    assert sorted(await asyncio.to_thread(cluster.running_nodes)) == names
    print(
        f"\nnode stop {stopped_in:.1f} s; leader moved within {moved_in:.1f} s (polling "
        f"rabbitmqctl); node start and rejoin {started_in:.1f} s"
    )


def test_stop_leaves_no_process_and_no_directory(cluster: RabbitMQCluster) -> None:
    pids, data_dir = cluster.pids, cluster.data_dir
    assert pids and all(_alive(pid) for pid in pids)
    assert data_dir is not None and data_dir.is_dir()
    cluster.stop()
    assert not [pid for pid in pids if _alive(pid)]
    assert not data_dir.exists() and not _processes_using(data_dir)
    assert not cluster.is_running() and cluster.pids == []
    with pytest.raises(BrokerError, match="was stopped"):
        cluster.nodes[0].start()
    cluster.stop()  # again: a no-op


def test_a_node_that_cannot_join_is_named_and_nothing_is_left(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Node 2 gets a cookie of its own: it starts, but the first node will not let it in."""
    homes: list[Path] = []
    write_cookie = cluster_module._write_cookie

    def wrong_cookie_for_node_2(home: Path, cookie: str) -> None:
        homes.append(home)
        write_cookie(home, cookie[::-1] if home.name == "node-2" else cookie)

    monkeypatch.setattr(cluster_module, "_write_cookie", wrong_cookie_for_node_2)
    began = time.monotonic()
    with pytest.raises(BrokerUnavailableError) as caught:
        start("rabbitmq", nodes=2)
    failed_in = time.monotonic() - began
    message = str(caught.value)
    node_2 = next(line for line in message.splitlines() if "did not join" in line)
    assert "-2@localhost did not join " in node_2 and "-1@localhost" in node_2
    assert "check if the Erlang cookie is identical" in message  # RabbitMQ's own diagnosis
    assert "Most common reasons" not in message  # but not its general advice
    assert failed_in < 3 * cluster_module.CTL_TIMEOUT
    cluster_dir = homes[0].parent
    assert not cluster_dir.exists() and not _processes_using(cluster_dir)
    print(f"\na node that cannot join: error after {failed_in:.1f} s:\n{message}")


def test_a_node_that_does_not_start_is_named_and_nothing_is_left(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A server that dies at once (the real epmd starts first): quick, and no RabbitMQ needed."""
    for name, body in (
        ("rabbitmq-server", 'echo "boot failed on $RABBITMQ_NODENAME"; exit 3'),
        ("rabbitmqctl", "exit 0"),
    ):
        (tmp_path / name).write_text(f"#!/bin/sh\n{body}\n")
        (tmp_path / name).chmod(0o755)
    server = tmp_path / "rabbitmq-server"
    monkeypatch.setattr(local, "local_status", lambda kind: (server, str(server)))
    homes: list[Path] = []
    write_cookie = cluster_module._write_cookie
    monkeypatch.setattr(
        cluster_module,
        "_write_cookie",
        lambda home, cookie: homes.append(home) or write_cookie(home, cookie),
    )
    with pytest.raises(BrokerUnavailableError) as caught:
        start("rabbitmq", mode="local", nodes=3)
    message = str(caught.value)
    assert "-1@localhost did not start: local: rabbitmq-server exited with code 3" in message
    assert "boot failed on eslab-" in message  # the node's own log, in the error
    cluster_dir = homes[0].parent
    assert len(homes) == 3 and not cluster_dir.exists() and not _processes_using(cluster_dir)
