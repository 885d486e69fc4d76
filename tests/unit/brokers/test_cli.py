"""``python -m eventsource_lab brokers up|pull`` where no broker is needed."""

from __future__ import annotations

import subprocess
import sys

import pytest
from testcontainers.core.config import testcontainers_config

from eventsource_lab.__main__ import main
from eventsource_lab.brokers.images import IMAGE_ENV_VARS

from .conftest import REGISTRY_DOWN, FakeEngine


def test_brokers_up_without_a_way_exits_one_with_the_reason() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "eventsource_lab", "brokers", "up", "kafka", "--mode", "url"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 1 and result.stdout == ""
    assert "EVENTSOURCE_LAB_KAFKA_BOOTSTRAP is not set" in result.stderr


def test_brokers_pull_pulls_the_images_named(
    engine: FakeEngine, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(IMAGE_ENV_VARS["redis"], "mirror.school/redis:class")
    engine.registry = {"mirror.school/redis:class": {}}
    assert main(["brokers", "pull", "redis"]) == 0
    assert engine.pulls == ["mirror.school/redis:class"]
    assert "pulled mirror.school/redis:class" in capsys.readouterr().out


def test_brokers_pull_without_a_registry_exits_one_naming_each_image(
    engine: FakeEngine, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TESTCONTAINERS_RYUK_DISABLED", "false")
    del engine.images["apache/kafka:3.8.0"]
    assert main(["brokers", "pull"]) == 1
    ryuk = testcontainers_config.ryuk_image
    assert engine.pulls == ["redis:7-alpine", "rabbitmq:3.13-alpine", "apache/kafka:3.8.0", ryuk]
    err = capsys.readouterr().err
    assert f"cannot pull apache/kafka:3.8.0: {REGISTRY_DOWN}" in err
    assert f"cannot pull {ryuk}: {REGISTRY_DOWN}" in err
    assert f"redis:7-alpine: a copy is here, the registry did not answer: {REGISTRY_DOWN}" in err


def test_brokers_pull_of_images_already_here_exits_zero(
    engine: FakeEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["brokers", "pull", "kafka", "redis"]) == 0  # offline, but nothing is missing
    assert engine.pulls == ["apache/kafka:3.8.0", "redis:7-alpine"]


def test_brokers_pull_without_docker_exits_one(
    no_docker: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["brokers", "pull", "redis"]) == 1
    assert capsys.readouterr().err.startswith("nothing pulled: no Docker engine answered")


def test_brokers_pull_refuses_an_unknown_kind(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["brokers", "pull", "mqtt"])
    assert exited.value.code == 2
    assert "'mqtt' is none of redis, rabbitmq, kafka" in capsys.readouterr().err
