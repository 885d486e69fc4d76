"""Workers as processes against a real broker: a group of worker processes shares the events,
SIGTERM stops one gracefully, SIGKILL leaves its events to the others, a bad handler fails at
spawn; and no worker process outlives its test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from redis.asyncio import Redis

from eventsource_lab import worker_log, workers
from eventsource_lab.bus import (
    KafkaEventBus,
    KafkaEventBusConfig,
    RabbitMQEventBus,
    RabbitMQEventBusConfig,
    RedisEventBus,
    RedisEventBusConfig,
)
from eventsource_lab.bus.kafka_partitioner import partition_for
from tests.support.processes import end_workers, exists
from tests.support.scenarios import orders
from tests.support.waiting import eventually

HANDLER = "eventsource_lab.worker_log:record"
HANDLER_ENV = {worker_log.DELAY_ENV: "0.005"}  # a real handler's work: kills land mid-stream
EVENTS = ["tests.support.events"]  # the generic recording handler registers no events itself
WAIT = 30.0


def handled(directory: Path) -> dict[int, list[str]]:
    """The event_ids each worker (by pid) recorded in ``directory``."""
    found: dict[int, list[str]] = {}
    for record in worker_log.handled(directory):
        found.setdefault(record.pid, []).append(str(record.event_id))
    return found


@pytest.fixture
def spawned(tmp_path: Path) -> Iterator[Callable[..., list[workers.Worker]]]:
    """``spawn`` with the handlers' log in ``tmp_path``; at teardown every worker is stopped and
    its pid checked gone."""
    started: list[workers.Worker] = []

    def spawn(*args: Any, **kwargs: Any) -> list[workers.Worker]:
        made = workers.spawn(
            *args,
            env={**HANDLER_ENV, worker_log.LOG_ENV: str(tmp_path)},
            imports=EVENTS,
            ready_timeout=WAIT,
            **kwargs,
        )
        started.extend(made)
        return made

    yield spawn
    end_workers(started, WAIT)


def _argv(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_text()


def _ids(events: list[Any]) -> set[str]:
    return {str(e.event_id) for e in events}


def _all_handled(directory: Path) -> list[str]:
    return [i for ids in handled(directory).values() for i in ids]


# -- Redis -----------------------------------------------------------------------------------


@pytest.fixture
def redis_options() -> dict[str, Any]:
    """A fresh stream per test; small batches and a short claim time, so a kill shows soon."""
    return {
        "stream_prefix": f"w-{uuid4().hex[:8]}",
        "block_ms": 100,
        "batch_size": 10,
        "pending_idle_ms": 500,
    }


@pytest.fixture
async def redis_publisher(redis_broker, redis_options) -> AsyncIterator[RedisEventBus]:
    bus = RedisEventBus(
        RedisEventBusConfig(
            redis_url=redis_broker.url, stream_prefix=redis_options["stream_prefix"]
        )
    )
    yield bus
    await bus.shutdown(5)


@pytest.mark.redis
async def test_two_redis_workers_share_the_events_and_stop_gracefully(
    redis_broker, redis_options, redis_publisher, spawned, tmp_path
) -> None:
    pair = spawned("redis", "g", HANDLER, url=redis_broker.url, count=2, options=redis_options)
    for worker in pair:  # the URL, password and all, goes by environment, not the public argv
        assert redis_broker.url not in _argv(worker.pid)
    events = orders(200)
    await redis_publisher.publish(events)

    def processed() -> int:
        return sum(w.stats().get("events_processed", 0) for w in pair)

    await eventually(lambda: processed() >= 200, WAIT, "the workers' stats count every event")
    assert set(_all_handled(tmp_path)) == _ids(events)
    for worker in pair:
        worker.terminate()
    assert [w.wait(WAIT) for w in pair] == [0, 0]
    assert [w.state for w in pair] == ["stopped", "stopped"]
    logged = handled(tmp_path)
    for worker in pair:  # final stats: each worker's count is what its handler logged, not 0
        assert worker.stats()["events_processed"] == len(logged[worker.pid]) > 0
    assert processed() == 200  # nothing handled twice


@pytest.mark.redis
async def test_sigterm_mid_stream_acknowledges_what_the_worker_handled(
    redis_broker, redis_options, redis_publisher, spawned, tmp_path
) -> None:
    first, _ = spawned("redis", "g", HANDLER, url=redis_broker.url, count=2, options=redis_options)
    events = orders(400)
    await redis_publisher.publish(events)
    await eventually(lambda: len(handled(tmp_path).get(first.pid, [])) >= 20, WAIT)
    first.terminate()
    assert first.wait(WAIT) == 0
    await eventually(lambda: set(_all_handled(tmp_path)) == _ids(events), WAIT, "all handled")
    ids = _all_handled(tmp_path)
    assert len(ids) == len(set(ids)), "a graceful stop acknowledged all it handled: no repeats"
    assert len(handled(tmp_path)[first.pid]) < 400, "stopped mid-stream"
    client = Redis.from_url(redis_broker.url)
    try:
        pending = await client.xpending(f"{redis_options['stream_prefix']}:events", "g")
    finally:
        await client.aclose()
    assert pending["pending"] == 0


@pytest.mark.redis
async def test_sigkill_mid_stream_leaves_the_rest_to_the_group(
    redis_broker, redis_options, redis_publisher, spawned, tmp_path
) -> None:
    victim, survivor = spawned(
        "redis", "g", HANDLER, url=redis_broker.url, count=2, options=redis_options
    )
    events = orders(400)
    await redis_publisher.publish(events)
    await eventually(lambda: len(handled(tmp_path).get(victim.pid, [])) >= 20, WAIT)
    victim.kill()
    assert victim.wait(WAIT) == -9
    assert victim.state == "killed"
    await eventually(lambda: set(_all_handled(tmp_path)) == _ids(events), WAIT, "all handled")
    assert len(handled(tmp_path)[victim.pid]) < 400, "killed mid-stream"
    await eventually(
        lambda: survivor.stats().get("messages_recovered", 0) > 0,
        WAIT,
        "the survivor claimed what the killed worker held",
    )


@pytest.mark.redis
def test_a_worker_whose_parent_is_gone_stops_gracefully(
    redis_broker, redis_options, spawned
) -> None:
    (worker,) = spawned("redis", "g", HANDLER, url=redis_broker.url, options=redis_options)
    assert worker.state in ("ready", "running")
    worker._process.stdin.close()  # as when the spawning process dies: its end of the pipe closes
    assert worker.wait(WAIT) == 0
    assert worker.state == "stopped"


@pytest.mark.redis
@pytest.mark.parametrize(
    "handler, why",
    [
        ("tests.support.no_such_module:record", "No module named 'tests.support.no_such_module'"),
        ("eventsource_lab.worker_log:no_such_handler", "has no attribute 'no_such_handler'"),
        ("eventsource_lab.worker_log:LOG_ENV", "not callable"),
        ("eventsource_lab.worker_log", "package.module:callable"),
    ],
)
def test_a_bad_handler_path_fails_at_spawn_and_leaves_no_process(
    redis_broker, monkeypatch, handler, why
) -> None:
    started: list[workers.Worker] = []
    real_worker = workers.Worker

    def tracked(process: Any) -> workers.Worker:
        started.append(real_worker(process))
        return started[-1]

    monkeypatch.setattr(workers, "Worker", tracked)
    with pytest.raises(workers.WorkerError, match="exited with 2") as error:
        workers.spawn("redis", "g", handler, url=redis_broker.url, count=2, ready_timeout=WAIT)
    assert why in str(error.value)
    assert len(started) == 2
    assert not any(exists(w.pid) for w in started)


@pytest.mark.redis
def test_a_module_to_import_that_does_not_import_fails_at_spawn(redis_broker) -> None:
    with pytest.raises(workers.WorkerError, match="exited with 2") as error:
        workers.spawn(
            "redis",
            "g",
            HANDLER,
            url=redis_broker.url,
            imports=["tests.support.events", "tests.support.no_such_events"],
            ready_timeout=WAIT,
        )
    assert "cannot import 'tests.support.no_such_events'" in str(error.value)


# -- RabbitMQ --------------------------------------------------------------------------------


@pytest.mark.rabbitmq
async def test_rabbitmq_workers_share_the_events_and_survive_a_kill(
    rabbitmq_broker, spawned, tmp_path
) -> None:
    options = {"exchange_name": f"w-{uuid4().hex[:8]}", "durable": False, "prefetch_count": 10}
    victim, survivor = spawned(
        "rabbitmq", "g", HANDLER, url=rabbitmq_broker.url, count=2, options=options
    )
    publisher = RabbitMQEventBus(
        RabbitMQEventBusConfig(rabbitmq_url=rabbitmq_broker.url, **options)
    )
    try:
        events = orders(400)
        await publisher.publish(events)
        await eventually(lambda: len(handled(tmp_path).get(victim.pid, [])) >= 20, WAIT)
        victim.kill()
        assert victim.wait(WAIT) == -9
        await eventually(lambda: set(_all_handled(tmp_path)) == _ids(events), WAIT, "all handled")
        assert len(handled(tmp_path)[victim.pid]) < 400, "killed mid-stream"
        survivor.terminate()
        assert survivor.wait(WAIT) == 0
        assert survivor.stats()["events_processed"] == len(handled(tmp_path)[survivor.pid]) > 0
    finally:
        await publisher.shutdown(5)


# -- Kafka -----------------------------------------------------------------------------------


@pytest.mark.kafka
async def test_kafka_workers_share_the_events_and_survive_a_kill(
    kafka_broker, spawned, tmp_path
) -> None:
    options = {"topic_prefix": f"w-{uuid4().hex[:8]}", "auto_offset_reset": "earliest"}
    publisher = KafkaEventBus(KafkaEventBusConfig(bootstrap_servers=kafka_broker.url, **options))
    try:
        await publisher.connect()  # creates the topic before the workers join
        victim, survivor = spawned(
            "kafka", "g", HANDLER, url=kafka_broker.url, count=2, options=options
        )
        events = orders(400)
        await publisher.publish(events)
        await eventually(lambda: len(handled(tmp_path).get(victim.pid, [])) >= 1, WAIT)
        victim.kill()
        assert victim.wait(WAIT) == -9
        await eventually(lambda: set(_all_handled(tmp_path)) == _ids(events), WAIT, "all handled")
        logged = handled(tmp_path)
        partition = {str(e.event_id): _partition(e) for e in events}
        victims = {partition[i] for i in logged[victim.pid]}
        assert victims & {partition[i] for i in logged[survivor.pid]}, (
            "the survivor took over the killed worker's partitions"
        )
        survivor.terminate()
        assert survivor.wait(WAIT) == 0
        assert survivor.state == "stopped"
        assert survivor.stats()["events_processed"] == len(handled(tmp_path)[survivor.pid]) > 0
    finally:
        await publisher.shutdown(5)


def _partition(event: Any) -> int:
    """The partition of the four of the events topic that ``event`` went to (by aggregate id)."""
    return partition_for(str(event.aggregate_id).encode(), [0, 1, 2, 3])
