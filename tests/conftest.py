"""Real brokers for the whole test session: one of each kind, started once, stopped at the end.

``start(kind)`` in auto mode: the address in the kind's environment variable if set, else a
container where Docker runs, else a local process of our own (never the machine's own services).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from eventsource_lab.brokers import Broker, BrokerUnavailableError, start


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
