"""The conformance matrix end to end through the command line (in-memory bus and Redis), and the
ordering probes' verdicts on RabbitMQ and Kafka."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from eventsource_lab.brokers import Broker
from eventsource_lab.bus import EventBus, KafkaEventBus
from eventsource_lab.conformance import BEHAVIOURS
from eventsource_lab.matrix import PROBES, BusFactory, Cell, _run_cell, bus_factory
from tests.support.scenarios import KAFKA_SESSION_MS

ORDER_PROBES = ("keeps_aggregate_order_in_a_group", "keeps_aggregate_order_after_a_retry")


@pytest.mark.redis
def test_the_matrix_shows_what_holds_and_how_buses_differ(redis_broker, tmp_path: Path) -> None:
    out = tmp_path / "matrix.json"
    env = {**os.environ, "EVENTSOURCE_LAB_REDIS_URL": redis_broker.url}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "eventsource_lab",
            "conformance",
            "--buses",
            "memory,redis",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    matrix = json.loads(out.read_text())
    assert matrix["buses"] == ["memory", "redis"]
    cells = matrix["cells"]
    for behaviour in BEHAVIOURS:  # the conformance suite holds everywhere
        assert {bus: c["outcome"] for bus, c in cells[behaviour.name].items()} == {
            "memory": "holds",
            "redis": "holds",
        }, behaviour.name
    differs_on_memory = {p.name for p in PROBES if cells[p.name]["memory"]["outcome"] == "differs"}
    assert differs_on_memory == {
        "groups_each_get_everything",
        "group_shares_the_work",
        "keeps_events_for_a_stopped_consumer",
        "retries_a_failing_handler",
        "dead_letters_poison",
    }
    not_on_memory = {p.name for p in PROBES if cells[p.name]["memory"]["outcome"] == "n/a"}
    assert not_on_memory == set(ORDER_PROBES)
    redis_differs = {p.name for p in PROBES if cells[p.name]["redis"]["outcome"] == "differs"}
    assert redis_differs == {"publish_waits_for_handlers", "keeps_aggregate_order_in_a_group"}
    assert "aggregates were handled out of order" in cells[ORDER_PROBES[0]]["redis"]["note"]
    assert "memory retries_a_failing_handler: a failed handler is logged" in result.stdout
    assert result.stdout.splitlines()[0].split() == ["behaviour", "memory", "redis"]


async def _order_cells(kind: str, broker: Broker) -> list[Cell]:
    probes = {p.name: p for p in PROBES}
    factory = bus_factory(kind, broker.url)
    if kind == "kafka" and broker.mode == "local":  # tansu: a real Kafka wants 6 s at least
        factory = _short_sessions(factory)
    return [await _run_cell(factory, probes[name].check, 1) for name in ORDER_PROBES]


def _short_sessions(factory: BusFactory) -> BusFactory:
    """The matrix's Kafka buses, with the test buses' short session: tansu holds each group join
    for half the session timeout, and the group probe joins three consumers."""

    def make(namespace: str, group: str, max_retries: int) -> EventBus:
        bus = factory(namespace, group, max_retries)
        assert isinstance(bus, KafkaEventBus)
        return KafkaEventBus(bus.config.model_copy(update={"session_timeout_ms": KAFKA_SESSION_MS}))

    return make


@pytest.mark.rabbitmq
async def test_rabbitmq_interleaves_an_aggregate_in_a_group_and_after_a_retry(
    rabbitmq_broker,
) -> None:
    group, retry = await _order_cells("rabbitmq", rabbitmq_broker)
    assert group.outcome == "differs", group
    assert group.note.startswith("25 of 25 aggregates were handled out of order"), group
    assert retry.outcome == "differs", retry
    assert "the retried event came back behind later ones" in retry.note, retry


@pytest.mark.kafka
@pytest.mark.timeout(240)
async def test_kafka_keeps_aggregate_order_in_a_group_and_after_a_retry(kafka_broker) -> None:
    group, retry = await _order_cells("kafka", kafka_broker)
    assert group.outcome == "holds", group
    assert group.note.startswith("all 25 aggregates in order, 0 of them split"), group
    assert retry.outcome == "holds", retry
