"""Real brokers for the whole test session: one of each kind, started once (under pytest-xdist,
once per worker, each on ports of its own), stopped at the end.

``start(kind)`` in auto mode: the address in the kind's environment variable if set, else a
container where Docker runs, else a local process of our own (never the machine's own services).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from eventsource_lab.brokers import Broker, BrokerUnavailableError, start
from eventsource_lab.brokers.cluster import RabbitMQCluster


def skip_or_fail(reason: str) -> None:
    """Skip the test, printing ``reason``; but fail under ``CI=true``: CI never silently skips."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}\n(CI=true: this test must not silently skip)", pytrace=False)
    pytest.skip(reason)


def broker_or_skip(kind: str, mode: str = "auto") -> Broker:
    """Start a ``kind`` broker, or skip the test that needs it (fail instead under CI)."""
    try:
        return start(kind, mode)
    except BrokerUnavailableError as e:
        skip_or_fail(f"{kind} broker unavailable: {e}")
        raise  # unreachable: skip_or_fail always raises


@pytest.fixture(scope="session")
def redis_broker() -> Iterator[Broker]:
    with broker_or_skip("redis") as broker:
        yield broker


@pytest.fixture(scope="session")
def rabbitmq_broker() -> Iterator[Broker]:
    with broker_or_skip("rabbitmq") as broker:
        yield broker


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[Broker]:
    with broker_or_skip("kafka") as broker:
        yield broker


@pytest.fixture(scope="module")
def rabbitmq_cluster() -> Iterator[RabbitMQCluster]:
    """A local three-node RabbitMQ cluster for one test module (a start takes some 20 s); a
    module stops and kills nodes as it likes, so none shares its cluster with another."""
    try:
        running = start("rabbitmq", "local", nodes=3)
    except BrokerUnavailableError as e:
        skip_or_fail(f"no local RabbitMQ cluster: {e}")
        raise
    assert isinstance(running, RabbitMQCluster)
    with running:
        yield running


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under ``pytest -n N`` (pytest-xdist), hand out whole files, the container tests as one.

    A file's tests share module fixtures (the fault tests' own brokers) and a notebook's cells
    one kernel, so a file stays on one worker; all of tests/docker shares one Docker engine of
    the session's own, so it goes to one worker too, instead of an engine (and image builds) per
    worker.
    """
    from xdist.scheduler import LoadFileScheduling

    class _FilesAndTheDockerTests(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            scope = super()._split_scope(nodeid)
            return "tests/docker" if scope.startswith("tests/docker/") else scope

    return _FilesAndTheDockerTests(config, log)
