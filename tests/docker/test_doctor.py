"""``brokers doctor`` with a real Docker engine: container mode available where the image is
here, with what the image says it keeps; not available, and why, where the image or the engine
is missing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from eventsource_lab.brokers import diagnose, format_report
from eventsource_lab.brokers.doctor import ModeStatus
from eventsource_lab.brokers.images import DEFAULT_IMAGES
from tests.docker.conftest import DockerLab

pytestmark = pytest.mark.docker

MISSING_IMAGE = "eslab-missing:none"


def _containers() -> dict[str, ModeStatus]:
    return {row.kind: row for row in diagnose() if row.mode == "container"}


def test_container_mode_is_available_with_each_image_here(
    docker_engine: DockerLab, connection_mode: str | None
) -> None:
    rows = _containers()
    assert {kind: row.available for kind, row in rows.items()} == {
        "redis": True,
        "rabbitmq": True,
        "kafka": True,
    }
    # the Kafka stand-in's image says it keeps nothing; the doctor believes the image
    assert {kind: row.durable for kind, row in rows.items()} == {
        "redis": True,
        "rabbitmq": True,
        "kafka": False,
    }
    host = docker_engine.expected_host(connection_mode)
    for kind, row in rows.items():
        assert f"{DEFAULT_IMAGES[kind]} here" in row.detail
        assert f"published on {host}" in row.detail
        assert row.pulls == ()


def test_a_missing_image_makes_container_mode_unavailable(docker_env: pytest.MonkeyPatch) -> None:
    docker_env.setenv("EVENTSOURCE_LAB_REDIS_IMAGE", MISSING_IMAGE)
    rows = diagnose()
    redis = next(r for r in rows if (r.kind, r.mode) == ("redis", "container"))
    assert not redis.available
    assert f"{MISSING_IMAGE} not here" in redis.detail
    assert redis.pulls == (MISSING_IMAGE,)
    assert "auto mode picks: redis -> local, rabbitmq -> container" in format_report(rows)


def test_no_engine_makes_container_mode_unavailable(
    docker_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    docker_env.setenv("DOCKER_HOST", f"unix://{tmp_path / 'absent.sock'}")
    rows = _containers()
    assert not any(row.available for row in rows.values())
    assert all("no Docker engine answered" in row.detail for row in rows.values())


def test_the_brokers_doctor_command(docker_env: pytest.MonkeyPatch) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "eventsource_lab", "brokers", "doctor"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert "auto mode picks: redis -> container, rabbitmq -> container, kafka -> container" in (
        done.stdout
    )
