"""Real brokers as local processes: they answer real clients, and stop leaves nothing behind."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import subprocess
from pathlib import Path
from urllib.parse import urlsplit
from uuid import uuid4

import aio_pika
import pytest
import redis
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from eventsource_lab.brokers import ENV_VARS, Broker, BrokerError, astart, local, start
from eventsource_lab.brokers.base import TRAITS, free_port
from eventsource_lab.brokers.probes import ProbeError, check

KINDS = [
    pytest.param("redis", marks=pytest.mark.redis),
    pytest.param("rabbitmq", marks=pytest.mark.rabbitmq),
    pytest.param("kafka", marks=pytest.mark.kafka),
]
SYSTEM_PORTS = {6379, 5672, 9092}  # the machine's own services: never ours to use or stop


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def shared(kind: str, request: pytest.FixtureRequest) -> Broker:
    """The session's broker of this kind (from tests/integration/conftest.py)."""
    return request.getfixturevalue(f"{kind}_broker")


def _state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2]


def _alive(pid: int) -> bool:
    return _state(pid) not in (None, "Z")


def _name(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().strip()


async def _write(kind: str, url: str, name: str) -> None:
    """Leave a mark named ``name`` in the broker, through its real client."""
    if kind == "redis":
        client = aioredis.from_url(url)
        try:
            assert await client.ping()
            await client.set(name, b"here")
        finally:
            await client.aclose()
    elif kind == "rabbitmq":
        connection = await aio_pika.connect_robust(url)
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(name, durable=True)
            await channel.default_exchange.publish(aio_pika.Message(b"here"), routing_key=name)
            message = await queue.get(timeout=10, fail=True)
            await message.ack()
            assert message.body == b"here"
    else:
        producer = AIOKafkaProducer(bootstrap_servers=url)
        await producer.start()
        try:
            await producer.send_and_wait(name, b"here")
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            name, bootstrap_servers=url, group_id=None, auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            record = await asyncio.wait_for(consumer.getone(), 10)
            assert record.value == b"here"
        finally:
            await consumer.stop()


async def _has(kind: str, url: str, name: str) -> bool:
    """Whether the mark ``name`` is in the broker at ``url``."""
    if kind == "redis":
        client = aioredis.from_url(url)
        try:
            return await client.get(name) == b"here"
        finally:
            await client.aclose()
    if kind == "rabbitmq":
        connection = await aio_pika.connect_robust(url)
        async with connection:
            channel = await connection.channel()
            try:
                await channel.declare_queue(name, passive=True)
            except aio_pika.exceptions.ChannelNotFoundEntity:
                return False
            return True
    consumer = AIOKafkaConsumer(bootstrap_servers=url)
    await consumer.start()
    try:
        return name in await consumer.topics()
    finally:
        await consumer.stop()


async def test_the_session_broker_is_our_own_and_answers_its_client(
    kind: str, shared: Broker
) -> None:
    if not os.environ.get(ENV_VARS[kind]):
        assert shared.mode in ("container", "local")
        assert shared.port not in SYSTEM_PORTS
    name = f"mark-{uuid4().hex[:8]}"
    await _write(kind, shared.url, name)
    assert await _has(kind, shared.url, name)
    assert shared.is_running()


async def test_a_second_start_is_independent_and_stop_leaves_nothing(
    kind: str, shared: Broker
) -> None:
    other = await astart(kind, mode="local")
    try:
        assert other.port != shared.port and other.data_dir != shared.data_dir
        name = f"mark-{uuid4().hex[:8]}"
        await _write(kind, other.url, name)
        assert await _has(kind, other.url, name)
        assert not await _has(kind, shared.url, name)
        pids, data_dir = other.pids, other.data_dir
        assert pids and all(_alive(pid) for pid in pids)
        assert data_dir is not None and data_dir.is_dir()
        if kind == "rabbitmq":  # our own epmd and Erlang VM, by their PIDs
            assert {"epmd", "beam.smp"} <= {_name(pid) for pid in pids}
    finally:
        await other.astop()
    assert not [pid for pid in pids if _alive(pid)]
    assert not data_dir.exists()
    assert not other.is_running() and other.pids == []
    other.stop()  # again: a no-op
    assert shared.is_running()


async def test_restart_keeps_the_url_and_answers_again_and_no_password_shows(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    """One broker of our own for both (a RabbitMQ start and restart take seconds): the restart
    keeps the URL and data, and no repr or log line of start, restart and stop shows the
    password."""
    caplog.set_level(logging.DEBUG)
    async with await astart(kind, mode="local") as broker:
        shown = [repr(broker)]
        url, data_dir, before = broker.url, broker.data_dir, broker.pids
        name = f"mark-{uuid4().hex[:8]}"
        await _write(kind, url, name)
        await asyncio.to_thread(broker.restart)
        shown.append(repr(broker))
        assert (broker.url, broker.data_dir) == (url, data_dir)
        assert not [pid for pid in before if _alive(pid)]
        assert broker.pids and set(broker.pids).isdisjoint(before)
        assert broker.is_running()
        await _write(kind, broker.url, f"mark-{uuid4().hex[:8]}")
        # Same data dir: RabbitMQ keeps its durable queues, Redis its append-only file; tansu
        # keeps everything in memory, so its topics are gone.
        assert broker.durable is (kind != "kafka")
        assert await _has(kind, url, name) is broker.durable
    shown += [repr(broker), *(record.getMessage() for record in caplog.records)]
    secret = urlsplit(broker.url).password
    if kind == "kafka":  # tansu has no password to leak (and no usable way to set one)
        assert secret is None and TRAITS["kafka", "local"].access.startswith("open to every")
    else:
        assert secret and not [line for line in shown if secret in line]
        assert f"***@127.0.0.1:{broker.port}" in shown[0]


async def test_an_env_url_is_used_as_is_and_never_stopped(
    kind: str, shared: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_VARS[kind], shared.url)
    with start(kind) as given:
        assert (given.mode, given.url, given.pids, given.data_dir) == ("url", shared.url, [], None)
        with pytest.raises(BrokerError, match="restart it there"):
            given.restart()
    given.stop()
    assert shared.is_running()
    await _write(kind, shared.url, f"mark-{uuid4().hex[:8]}")


@pytest.mark.rabbitmq
def test_rabbitmq_has_its_own_user_not_guest(rabbitmq_broker: Broker) -> None:
    assert "guest" not in rabbitmq_broker.url
    check("rabbitmq", rabbitmq_broker.url)
    with pytest.raises(ProbeError, match="ACCESS_REFUSED"):
        check("rabbitmq", f"amqp://guest:guest@127.0.0.1:{rabbitmq_broker.port}/")


@pytest.mark.redis
async def test_redis_wants_its_password_and_keeps_it_across_a_restart() -> None:
    async with await astart("redis", mode="local") as broker:
        password = urlsplit(broker.url).password
        assert password and len(password) >= 24
        assert broker.url == f"redis://default:{password}@127.0.0.1:{broker.port}/0"
        if shutil.which("redis-cli"):  # binder/start configures Redis through it
            cli = ["redis-cli", "-u", broker.url, "ping"]
            done = await asyncio.to_thread(subprocess.run, cli, capture_output=True, timeout=10)
            assert done.stdout.strip() == b"PONG", done.stderr
        anyone = aioredis.Redis(host="127.0.0.1", port=broker.port, protocol=2)
        try:
            with pytest.raises(redis.AuthenticationError):
                await anyone.ping()
        finally:
            await anyone.aclose()
        with pytest.raises(ProbeError, match="NOAUTH"):
            check("redis", f"redis://127.0.0.1:{broker.port}/0")
        with pytest.raises(ProbeError, match="refused AUTH"):
            check("redis", f"redis://:wrong@127.0.0.1:{broker.port}/0")
        cmdline = await asyncio.to_thread(Path(f"/proc/{broker.pids[0]}/cmdline").read_bytes)
        assert password.encode() not in cmdline  # `ps` shows argv to every local user
        await asyncio.to_thread(broker.restart)
        assert urlsplit(broker.url).password == password
        await _write("redis", broker.url, "after-restart")


@pytest.mark.redis
def test_a_port_taken_before_the_broker_binds_it_is_retried_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        picks = iter([busy])
        monkeypatch.setattr(local, "free_port", lambda: next(picks, 0) or free_port())
        with start("redis", mode="local") as broker:
            assert broker.port != busy and broker.is_running()
            assert (
                "Address already in use"
                not in broker.data_dir.joinpath("redis-server.log").read_text()
            )
