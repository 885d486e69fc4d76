"""Bus metrics: real instruments through the OpenTelemetry SDK, no-ops without the API."""

from __future__ import annotations

import sys

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from eventsource_lab.bus.metrics import COUNTERS, DURATIONS, BusMetrics

ATTRIBUTES = {"messaging.system": "test", "messaging.consumer.group.name": "g"}


def recorded(reader: InMemoryMetricReader) -> dict[str, list]:
    data = reader.get_metrics_data()
    if data is None:
        return {}
    return {
        metric.name: list(metric.data.data_points)
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }


def test_counters_and_durations_reach_the_sdk_with_the_bus_attributes() -> None:
    reader = InMemoryMetricReader()
    metrics = BusMetrics(ATTRIBUTES, meter_provider=MeterProvider(metric_readers=[reader]))
    assert metrics.enabled
    metrics.add("published", 3)
    metrics.add("published")
    metrics.add("dead_lettered")
    metrics.record("handler", 0.25)
    metrics.record("handler", 0.75)
    points = recorded(reader)
    (published,) = points["eventsource_lab.bus.published"]
    assert published.value == 4 and dict(published.attributes) == ATTRIBUTES
    assert points["eventsource_lab.bus.dead_lettered"][0].value == 1
    (handler,) = points["eventsource_lab.bus.handler.duration"]
    assert (handler.count, handler.sum, handler.max) == (2, 1.0, 0.75)
    assert "eventsource_lab.bus.consumed" not in points  # nothing added: nothing exported


def test_every_name_the_buses_use_is_an_instrument() -> None:
    reader = InMemoryMetricReader()
    metrics = BusMetrics(ATTRIBUTES, meter_provider=MeterProvider(metric_readers=[reader]))
    for name in COUNTERS:
        metrics.add(name)
    for name in DURATIONS:
        metrics.record(name, 0.1)
    assert set(recorded(reader)) == {f"eventsource_lab.bus.{n}" for n in COUNTERS} | {
        f"eventsource_lab.bus.{n}.duration" for n in DURATIONS
    }


def test_metrics_off_record_nothing() -> None:
    reader = InMemoryMetricReader()
    metrics = BusMetrics(
        ATTRIBUTES, enabled=False, meter_provider=MeterProvider(metric_readers=[reader])
    )
    metrics.add("published")
    metrics.record("publish", 0.1)
    assert not metrics.enabled
    assert recorded(reader) == {}


def test_without_the_opentelemetry_api_metrics_are_no_ops(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # `import opentelemetry` now fails
    metrics = BusMetrics(ATTRIBUTES, enabled=True)
    assert not metrics.enabled
    metrics.add("published")
    metrics.record("handler", 0.1)
    assert "opentelemetry-api is not installed" in caplog.text
