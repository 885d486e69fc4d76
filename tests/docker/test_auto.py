"""``start(kind)`` in auto mode with a real Docker engine: the container where the engine has
the image; a local process, at once and without a word on the console, where it has not."""

from __future__ import annotations

import logging
import time

import docker
import pytest

from eventsource_lab.brokers import start
from eventsource_lab.brokers.images import DEFAULT_IMAGES
from eventsource_lab.brokers.quiet import LOGGERS
from tests.docker.conftest import DockerLab

pytestmark = pytest.mark.docker

MISSING_IMAGE = "eslab-missing:none"
FALLBACK_LIMIT = 5.0  # seconds: the engine says "no such image" at once; Redis starts in < 1 s


def test_auto_chooses_the_container_where_docker_answers(
    docker_engine: DockerLab, docker_env: pytest.MonkeyPatch, docker_client: docker.DockerClient
) -> None:
    docker_engine.require("redis")
    with start("redis") as broker:
        assert (broker.mode, broker.host) == ("container", docker_engine.expected_host(None))
        (container,) = docker_client.containers.list(filters={"ancestor": DEFAULT_IMAGES["redis"]})
        assert broker.is_running()
    assert docker_client.containers.list(all=True, filters={"id": container.id}) == []


def test_auto_falls_back_to_local_at_once_and_quietly_when_the_image_is_missing(
    docker_env: pytest.MonkeyPatch,
    docker_client: docker.DockerClient,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    recwarn: pytest.WarningsRecorder,
) -> None:
    docker_env.setenv("EVENTSOURCE_LAB_REDIS_IMAGE", MISSING_IMAGE)
    before = {c.id for c in docker_client.containers.list(all=True)}
    capfd.readouterr()
    caplog.set_level(logging.DEBUG)
    began = time.monotonic()
    with start("redis") as broker:
        took = time.monotonic() - began
        assert broker.mode == "local"
        assert broker.is_running()
    assert took < FALLBACK_LIMIT, f"the fallback took {took:.1f} s"
    assert capfd.readouterr() == ("", "")  # a notebook cell shows nothing of the attempt
    assert [r for r in caplog.records if r.name.split(".")[0] in LOGGERS] == []
    assert [str(w.message) for w in recwarn] == []
    assert {c.id for c in docker_client.containers.list(all=True)} == before
