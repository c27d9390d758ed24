"""Metrics integrations against the real libraries: OpenTelemetry's SDK reader, Prometheus' text exposition."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client import CollectorRegistry, generate_latest

from limify import InMemoryAdapter, ManualClock, RateLimitExceeded, rate_limit
from limify.contrib import opentelemetry as limify_otel
from limify.contrib import prometheus as limify_prometheus


def three_calls(clock: ManualClock, name: str, shadow: bool = False) -> None:
    """Two admitted calls and one refused (or shadow-refused) on a 1/minute limit per user."""

    @rate_limit("1/minute", key="user", storage=InMemoryAdapter(clock=clock), name=name, shadow=shadow)
    def call(user: str) -> None:
        return None

    call("a")
    call("b")
    if shadow:
        call("b")
    else:
        with pytest.raises(RateLimitExceeded):
            call("b")


def test_opentelemetry_counts_decisions_by_limit_and_outcome(clock: ManualClock) -> None:
    """The counter sums decisions per (limit, outcome); the histogram records each one's duration."""
    reader = InMemoryMetricReader()
    stop = limify_otel.instrument(meter_provider=MeterProvider(metric_readers=[reader]))
    try:
        three_calls(clock, "metrics.otel")
        three_calls(clock, "metrics.otel-shadow", shadow=True)
    finally:
        stop()
    metrics = {
        metric.name: metric
        for resource in reader.get_metrics_data().resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }
    counts = {
        (point.attributes["limit"], point.attributes["outcome"]): point.value
        for point in metrics["limify.decisions"].data.data_points
    }
    assert counts == {
        ("metrics.otel", "allowed"): 2,
        ("metrics.otel", "refused"): 1,
        ("metrics.otel-shadow", "allowed"): 2,
        ("metrics.otel-shadow", "shadow-refused"): 1,
    }
    durations = {
        point.attributes["limit"]: point.count for point in metrics["limify.check.duration"].data.data_points
    }
    assert durations == {"metrics.otel": 3, "metrics.otel-shadow": 3}
    assert all("user" not in str(point.attributes) for point in metrics["limify.decisions"].data.data_points)


def test_prometheus_exposes_decisions_and_durations(clock: ManualClock) -> None:
    """Scraping the registry shows limify_decisions_total{limit,outcome} and limify_check_seconds."""
    registry = CollectorRegistry()
    stop = limify_prometheus.instrument(registry=registry)
    try:
        three_calls(clock, "metrics.prom")
    finally:
        text = generate_latest(registry).decode()
        stop()
    assert 'limify_decisions_total{limit="metrics.prom",outcome="allowed"} 2.0' in text
    assert 'limify_decisions_total{limit="metrics.prom",outcome="refused"} 1.0' in text
    assert 'limify_check_seconds_count{limit="metrics.prom"} 3.0' in text
    assert generate_latest(registry).decode().count("limify_decisions_total") == 0  # stop() unregisters
