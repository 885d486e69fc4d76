"""URLs, addresses, the "no broker" message, readiness polling and the Broker's own behaviour."""

from __future__ import annotations

import pytest

from eventsource_lab.brokers import Broker, BrokerError, BrokerUnavailableError
from eventsource_lab.brokers.base import build_url, free_port, unavailable, wait_until_ready
from eventsource_lab.brokers.probes import address
from eventsource_lab.errors import EventSourceLabError


def test_urls_are_what_the_bus_configs_take() -> None:
    assert build_url("redis", "127.0.0.1", 6400) == "redis://127.0.0.1:6400/0"
    assert build_url("redis", "127.0.0.1", 6400, None, "pw") == "redis://:pw@127.0.0.1:6400/0"
    assert build_url("rabbitmq", "127.0.0.1", 5673, "u", "p") == "amqp://u:p@127.0.0.1:5673/"
    assert build_url("rabbitmq", "h", 5673) == "amqp://h:5673/"
    assert build_url("kafka", "127.0.0.1", 9094) == "127.0.0.1:9094"


@pytest.mark.parametrize(
    ("kind", "url", "expected"),
    [
        ("redis", "redis://127.0.0.1:6400/0", ("127.0.0.1", 6400)),
        ("redis", "redis://:secret@cache.local/3", ("cache.local", 6379)),
        ("rabbitmq", "amqp://u:p@127.0.0.1:5673/", ("127.0.0.1", 5673)),
        ("rabbitmq", "amqp://mq.local/vhost", ("mq.local", 5672)),
        ("kafka", "127.0.0.1:9094", ("127.0.0.1", 9094)),
        ("kafka", "k1:9092, k2:9092", ("k1", 9092)),
        ("kafka", "PLAINTEXT://k1:9093", ("k1", 9093)),
    ],
)
def test_address_is_the_first_host_and_port(kind: str, url: str, expected: tuple) -> None:
    assert address(kind, url) == expected


def test_free_port_is_a_loopback_port() -> None:
    assert 1024 < free_port() < 65536


def test_the_unavailable_error_is_one_of_ours() -> None:
    error = unavailable("redis", ["url: not set", "local: missing"])
    assert isinstance(error, BrokerError) and isinstance(error, EventSourceLabError)
    assert str(error).splitlines()[:3] == [
        "no redis broker could be had:",
        "  - url: not set",
        "  - local: missing",
    ]


def test_waiting_ends_at_once_when_starting_has_failed() -> None:
    def never() -> None:
        raise ConnectionRefusedError

    with pytest.raises(BrokerUnavailableError, match="exited with code 1"):
        wait_until_ready("redis", "x", never, timeout=60, failed=lambda: "exited with code 1")


def test_waiting_times_out_with_the_last_error_and_an_explanation() -> None:
    def refused() -> None:
        raise ConnectionRefusedError("refused")

    with pytest.raises(BrokerUnavailableError) as raised:
        wait_until_ready("kafka", "tansu", refused, timeout=0.2, explain=lambda: "log tail here")
    assert "tansu did not answer within 0 s (ConnectionRefusedError: refused)" in str(raised.value)
    assert "log tail here" in str(raised.value)


def test_waiting_returns_once_the_check_passes() -> None:
    answers = iter([OSError("not yet"), OSError("not yet"), None])

    def check() -> None:
        answer = next(answers)
        if answer:
            raise answer

    wait_until_ready("redis", "x", check, timeout=5)
    assert next(answers, "done") == "done"


class Runner:
    data_dir = None

    def __init__(self) -> None:
        self.stops = 0

    def stop(self) -> None:
        self.stops += 1

    def restart(self) -> None:
        pass

    def pids(self) -> list[int]:
        return [42]


def test_stop_is_idempotent_and_a_stopped_broker_cannot_restart() -> None:
    runner = Runner()
    broker = Broker("redis", "local", "redis://127.0.0.1:1/0", runner)
    assert repr(broker) == "<redis broker (local) at redis://127.0.0.1:1/0, running>"
    assert broker.pids == [42]
    broker.stop()
    broker.stop()
    assert runner.stops == 1 and broker.pids == [] and not broker.is_running()
    assert repr(broker).endswith("stopped>")
    with pytest.raises(BrokerError, match="was stopped"):
        broker.restart()


def test_the_repr_shows_where_but_never_the_password() -> None:
    url = "amqp://eslab-1:hunter2@127.0.0.1:5673/"
    broker = Broker("rabbitmq", "local", url, Runner())
    assert broker.url == url  # the buses need the real thing
    assert repr(broker) == "<rabbitmq broker (local) at amqp://***@127.0.0.1:5673/, running>"
    assert "hunter2" not in repr(Broker("redis", "url", "redis://:hunter2@h:1/0"))
    broker.stop()


@pytest.mark.parametrize(
    ("kind", "mode", "durable"),
    [
        ("redis", "local", True),
        ("rabbitmq", "local", True),
        ("kafka", "local", False),  # tansu keeps topics in memory
        ("kafka", "container", True),
        ("redis", "url", None),  # someone else's: not ours to know
    ],
)
def test_a_broker_says_whether_it_keeps_events_across_a_restart(
    kind: str, mode: str, durable: bool | None
) -> None:
    broker = Broker(kind, mode, build_url(kind, "127.0.0.1", 1), Runner())
    assert broker.durable is durable
    broker.stop()


async def test_async_with_stops_it() -> None:
    runner = Runner()
    async with Broker("kafka", "local", "127.0.0.1:1", runner) as broker:
        assert broker.port == 1
    assert runner.stops == 1
