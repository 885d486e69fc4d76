"""A broker test skips where no broker can be had, but never silently in CI."""

from __future__ import annotations

import pytest

from eventsource_lab.brokers import BrokerUnavailableError
from tests import conftest


@pytest.fixture
def nothing_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    def start(kind: str, mode: str = "auto") -> None:
        raise BrokerUnavailableError(kind, ["local: redis-server not found"])

    monkeypatch.setattr(conftest, "start", start)


def test_without_ci_it_skips_with_the_reason(
    nothing_starts: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="redis-server not found"):
        conftest.broker_or_skip("redis")


def test_in_ci_it_fails(nothing_starts: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="must not silently skip"):
        conftest.broker_or_skip("redis")
