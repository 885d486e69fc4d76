"""Container mode: where ports are published, which images run, bounded starts, labels."""

from __future__ import annotations

import time

import pytest
from testcontainers.core.config import ConnectionMode, testcontainers_config

from eventsource_lab.brokers import BrokerUnavailableError, containers, probes, publish, start
from eventsource_lab.brokers.images import DURABLE_LABEL, IMAGE_ENV_VARS

from .conftest import GATEWAY, REGISTRY_DOWN, FakeContainer, FakeEngine


@pytest.mark.parametrize(
    ("inside", "mode_env", "docker_host", "expected"),
    [
        (False, None, None, ("docker_host", "127.0.0.1", "127.0.0.1")),  # a laptop
        (True, None, None, ("gateway_ip", GATEWAY, GATEWAY)),  # devcontainer, these machines
        (True, "docker_host", None, ("docker_host", "127.0.0.1", "127.0.0.1")),
        (False, "gateway_ip", None, ("gateway_ip", GATEWAY, GATEWAY)),
        (True, "bridge_ip", None, ("bridge_ip", GATEWAY, GATEWAY)),  # served as gateway_ip
        (True, None, "tcp://192.0.2.10:2375", ("docker_host", "192.0.2.10", "192.0.2.10")),
        (True, None, "unix:///run/user/docker.sock", ("gateway_ip", GATEWAY, GATEWAY)),
    ],
)
def test_the_port_is_published_where_the_client_reaches_it(
    inside: bool,
    mode_env: str | None,
    docker_host: str | None,
    expected: tuple[str, str, str],
    docker_answers: list[FakeContainer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(publish, "inside_container", lambda: inside)
    if mode_env:
        monkeypatch.setenv("TESTCONTAINERS_CONNECTION_MODE", mode_env)
    if docker_host:
        monkeypatch.setenv("DOCKER_HOST", docker_host)
    mode, host, bind = expected
    assert publish.connection_mode(publish.engine_host()) == mode
    with start("kafka", mode="container") as broker:
        (container,) = docker_answers
        assert container.published[0] == bind
        assert (broker.host, broker.port) == (host, container.published[1])
        assert container.env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{host}:{broker.port}"


def test_the_connection_mode_is_read_when_start_is_called(
    docker_answers: list[FakeContainer], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(publish, "inside_container", lambda: True)
    monkeypatch.setenv("TESTCONTAINERS_CONNECTION_MODE", "docker_host")
    with start("redis", mode="container") as loopback:
        assert loopback.host == "127.0.0.1"
        assert testcontainers_config.connection_mode_override == ConnectionMode.docker_host
    monkeypatch.delenv("TESTCONTAINERS_CONNECTION_MODE")
    with start("redis", mode="container") as gateway:
        assert gateway.host == GATEWAY and docker_answers[1].published[0] == GATEWAY
        assert testcontainers_config.connection_mode_override is None  # its own default again


def test_a_gateway_comes_from_the_subnet_when_docker_names_none(
    engine: FakeEngine, docker_answers: list[FakeContainer], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(publish, "inside_container", lambda: True)
    engine.ipam = [{"Subnet": "fd00::/64"}, {"Subnet": "172.30.0.0/16"}]
    with start("redis", mode="container") as broker:
        assert broker.host == "172.30.0.1" == docker_answers[0].published[0]


def test_no_gateway_or_a_bad_mode_is_a_reason_and_auto_goes_local(
    engine: FakeEngine,
    docker_answers: list[FakeContainer],
    local_starts: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(publish, "inside_container", lambda: True)
    engine.ipam = []
    with pytest.raises(BrokerUnavailableError, match="bridge network names no IPv4 gateway"):
        start("redis", mode="container")
    monkeypatch.setenv("TESTCONTAINERS_CONNECTION_MODE", "bridge")
    with pytest.raises(BrokerUnavailableError, match="CONNECTION_MODE='bridge' is none of"):
        start("redis", mode="container")
    assert start("redis").mode == "local" and docker_answers == []


@pytest.mark.parametrize("kind", list(IMAGE_ENV_VARS))
def test_an_image_named_in_the_environment_replaces_the_default(
    kind: str,
    engine: FakeEngine,
    docker_answers: list[FakeContainer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(IMAGE_ENV_VARS[kind], f"mirror.school:5000/{kind}:class")
    engine.images[f"mirror.school:5000/{kind}:class"] = {}
    with start(kind, mode="container"):
        assert docker_answers[0].image == f"mirror.school:5000/{kind}:class"
    assert engine.pulls == []


def test_testcontainers_hub_prefix_is_part_of_the_name_asked_for(
    engine: FakeEngine, docker_answers: list[FakeContainer], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TESTCONTAINERS_HUB_IMAGE_NAME_PREFIX", "hub.school/")
    engine.images["hub.school/redis:7-alpine"] = {}
    del engine.images["redis:7-alpine"]
    with start("redis", mode="container"):
        assert docker_answers[0].image == "redis:7-alpine"  # testcontainers adds the prefix
        assert testcontainers_config.hub_image_name_prefix == "hub.school/"
    assert engine.pulls == []


def test_auto_does_not_pull_where_a_local_broker_can_be_had(
    engine: FakeEngine, docker_answers: list[FakeContainer], local_starts: list[str]
) -> None:
    engine.images.clear()
    engine.registry = {"redis:7-alpine": {}}
    broker = start("redis")
    assert broker.mode == "local" and engine.pulls == [] and docker_answers == []


def test_auto_pulls_where_nothing_else_would_do(
    engine: FakeEngine, docker_answers: list[FakeContainer], no_binaries: None
) -> None:
    engine.images.clear()
    engine.registry = {"redis:7-alpine": {}}
    with start("redis") as broker:
        assert broker.mode == "container" and engine.pulls == ["redis:7-alpine"]


def test_a_missing_image_says_how_to_pull_it(
    engine: FakeEngine, docker_answers: list[FakeContainer]
) -> None:
    del engine.images["rabbitmq:3.13-alpine"]
    with pytest.raises(BrokerUnavailableError) as raised:
        containers.start_container("rabbitmq", pull=False)
    (reason,) = raised.value.reasons
    assert "rabbitmq:3.13-alpine not here" in reason
    assert "python -m eventsource_lab brokers pull rabbitmq" in reason


def test_a_pull_without_a_registry_fails_at_once_with_the_engines_words(
    engine: FakeEngine, docker_answers: list[FakeContainer]
) -> None:
    del engine.images["apache/kafka:3.8.0"]
    begun = time.monotonic()
    with pytest.raises(BrokerUnavailableError) as raised:
        start("kafka", mode="container")
    assert time.monotonic() - begun < 1
    assert raised.value.reasons == [f"container: cannot pull apache/kafka:3.8.0: {REGISTRY_DOWN}"]
    engine.registry = {}  # a registry that answers, without the image
    with pytest.raises(BrokerUnavailableError) as raised:
        start("kafka", mode="container")
    assert "manifest for apache/kafka:3.8.0 not found" in raised.value.reasons[0]
    assert docker_answers == []  # no container made for an image the engine lacks


def test_the_reaper_image_is_needed_too_unless_disabled(
    engine: FakeEngine,
    docker_answers: list[FakeContainer],
    local_starts: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TESTCONTAINERS_RYUK_DISABLED", "false")
    ryuk = testcontainers_config.ryuk_image
    with pytest.raises(BrokerUnavailableError, match=f"container: {ryuk} not here"):
        containers.start_container("redis", pull=False)
    engine.images[ryuk] = {}
    with start("redis") as broker:
        assert broker.mode == "container" and testcontainers_config.ryuk_disabled is False
    assert containers.images_to_pull(["redis", "kafka"]) == [
        "redis:7-alpine",
        "apache/kafka:3.8.0",
        ryuk,
    ]


@pytest.mark.parametrize(("label", "durable"), [(None, True), ("false", False), ("true", True)])
def test_durable_comes_from_the_image_label(
    label: str | None,
    durable: bool,
    engine: FakeEngine,
    docker_answers: list[FakeContainer],
) -> None:
    if label is not None:
        engine.images["redis:7-alpine"] = {DURABLE_LABEL: label}
    with start("redis", mode="container") as broker:
        assert broker.durable is durable
        assert ("nothing" in broker.traits.durability) is not durable


def test_a_container_that_never_answers_fails_in_bounded_time_and_is_removed(
    docker_answers: list[FakeContainer],
    local_starts: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refused(kind: str, url: str, timeout: float = 2.0) -> None:
        raise ConnectionRefusedError(f"nothing at {url}")

    monkeypatch.setattr(probes, "check", refused)
    monkeypatch.setattr(containers, "READY_TIMEOUT", dict.fromkeys(containers.READY_TIMEOUT, 0.2))
    begun = time.monotonic()
    with pytest.raises(BrokerUnavailableError) as raised:
        start("redis", mode="container")
    assert time.monotonic() - begun < 2
    (reason,) = raised.value.reasons
    assert reason.startswith("container at redis://***@127.0.0.1:")
    assert "did not answer within 0 s (ConnectionRefusedError" in reason
    password = docker_answers[0].command[2]
    assert password not in reason and docker_answers[0].stopped
    broker = start("redis")  # auto: the same, then a local process
    assert broker.mode == "local" and local_starts == ["redis"] and docker_answers[1].stopped


def test_a_container_that_exits_fails_at_once_with_its_log(
    docker_answers: list[FakeContainer], monkeypatch: pytest.MonkeyPatch
) -> None:
    def exits(kind: str, url: str, timeout: float = 2.0) -> None:
        (container,) = docker_answers
        password = url.split(":")[2].split("@")[0]
        container.wrapped.status = "exited"
        container.wrapped.attrs = {"State": {"ExitCode": 1}}
        container.wrapped.log = f"Bad directive: requirepass {password}\n".encode()
        raise ConnectionRefusedError("refused")

    monkeypatch.setattr(probes, "check", exits)
    begun = time.monotonic()
    with pytest.raises(BrokerUnavailableError) as raised:
        start("redis", mode="container")
    assert time.monotonic() - begun < 1  # not READY_TIMEOUT
    (reason,) = raised.value.reasons
    assert reason.startswith("container: it exited (code 1) before it answered")
    assert "Bad directive: requirepass ***" in reason and docker_answers[0].stopped
