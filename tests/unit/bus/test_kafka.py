"""KafkaEventBusConfig without a broker: the spec's fields, derived topics, refused settings."""

from __future__ import annotations

import pytest
from aiokafka import errors
from pydantic import ValidationError

from eventsource_lab.bus.kafka import KafkaEventBus, KafkaEventBusConfig


def test_bootstrap_servers_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVENTSOURCE_LAB_KAFKA_BOOTSTRAP", "10.9.9.9:9093")
    assert KafkaEventBusConfig().bootstrap_servers == "10.9.9.9:9093"
    monkeypatch.delenv("EVENTSOURCE_LAB_KAFKA_BOOTSTRAP")
    assert KafkaEventBusConfig().bootstrap_servers == "localhost:9092"


def test_spec_fields_and_derived_topics() -> None:
    config = KafkaEventBusConfig(
        bootstrap_servers="localhost:9092",
        topic_prefix="events",
        consumer_group="projections",
        enable_metrics=True,
    )
    assert config.topic == "events.events"
    assert config.dlq_topic == "events.projections.dlq"
    assert config.replay_topic == "events.projections.replay"
    assert (config.acks, config.auto_offset_reset, config.enable_dlq) == ("all", "latest", True)


@pytest.mark.parametrize(
    "bad",
    [
        {"partitions": 0},
        {"acks": 2},
        {"compression_type": "brotli"},
        {"auto_offset_reset": "none"},
        {"bootstrap_server": "typo"},
    ],
)
def test_bad_settings_are_refused_by_name(bad: dict) -> None:
    with pytest.raises(ValidationError, match=next(iter(bad))):
        KafkaEventBusConfig(**bad)


@pytest.mark.parametrize("fields", [{"topic_prefix": "my app"}, {"consumer_group": "a/b"}])
def test_names_kafka_cannot_take_are_refused(fields: dict) -> None:
    with pytest.raises(ValidationError, match="no valid Kafka topic name"):
        KafkaEventBusConfig(**fields)


def test_a_new_bus_has_broker_stats_and_is_not_connected() -> None:
    bus = KafkaEventBus()
    assert not bus.is_connected and not bus.is_consuming
    assert bus.get_stats()["messages_dead_lettered"] == 0


@pytest.mark.parametrize(
    "error",
    [
        errors.CommitFailedError,
        errors.KafkaConnectionError,
        errors.RequestTimedOutError,
        errors.NotCoordinatorError,
        errors.UnknownTopicOrPartitionError,
        errors.KafkaTimeoutError,
    ],
)
def test_a_commit_failure_or_a_transient_kafka_error_restarts_the_consumer_loop(error) -> None:
    assert issubclass(error, KafkaEventBus.TRANSIENT)


@pytest.mark.parametrize(
    "error", [errors.TopicAuthorizationFailedError, errors.UnsupportedVersionError]
)
def test_a_kafka_error_no_retry_mends_ends_the_consumer_loop(error) -> None:
    assert not issubclass(error, KafkaEventBus.TRANSIENT)


@pytest.mark.parametrize("max_batch_size", [16_384, 262_144])
async def test_max_batch_size_reaches_the_producer(
    monkeypatch: pytest.MonkeyPatch, max_batch_size: int
) -> None:
    """A batch the bus's producer builds takes records up to ``max_batch_size`` bytes."""

    async def no_broker(self: KafkaEventBus, *args: object) -> None:
        return None

    monkeypatch.setattr(KafkaEventBus, "_start", no_broker)
    monkeypatch.setattr(KafkaEventBus, "_create_topics", no_broker)
    bus = KafkaEventBus(KafkaEventBusConfig(max_batch_size=max_batch_size))
    await bus._connect()
    assert bus._producer is not None
    batch, value, taken = bus._producer.create_batch(), b"x" * 1_000, 0
    while batch.append(key=None, value=value, timestamp=None) is not None:
        taken += 1
    await bus._disconnect()
    assert 0.95 * max_batch_size < taken * len(value) <= max_batch_size


def test_max_batch_size_above_a_request_is_refused() -> None:
    with pytest.raises(ValidationError, match="max_batch_size"):
        KafkaEventBusConfig(max_batch_size=2_000_000)
