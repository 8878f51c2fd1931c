"""llmmeter_views(): semconv buckets even for instruments another instrumentor created without advisory."""

from __future__ import annotations

from typing import Any

from llmmeter import names
from llmmeter.views import llmmeter_views
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader


def record_like_openllmetry(views: list[Any]) -> dict[str, tuple[float, ...]]:
    """Create the histograms the way OpenLLMetry does (unit "token", no bucket advisory), record once."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], views=views)
    meter = provider.get_meter("opentelemetry.instrumentation.openai.v1")
    meter.create_histogram(names.METRIC_TOKEN_USAGE, unit="token").record(300, {names.TOKEN_TYPE: "input"})
    meter.create_histogram(names.METRIC_OPERATION_DURATION, unit="s").record(1.5)
    meter.create_histogram(names.METRIC_AGENT_RUN_COST, unit="USD").record(0.2)
    meter.create_histogram("some.other.histogram", unit="ms").record(3)
    bounds = {
        m.name: tuple(m.data.data_points[0].explicit_bounds)
        for rm in reader.get_metrics_data().resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
    }
    provider.shutdown()
    return bounds


def test_views_impose_semconv_buckets_on_instruments_without_advisory() -> None:
    bounds = record_like_openllmetry(llmmeter_views())
    assert bounds[names.METRIC_TOKEN_USAGE] == names.TOKEN_USAGE_BUCKETS
    assert bounds[names.METRIC_OPERATION_DURATION] == names.DURATION_BUCKETS
    assert bounds[names.METRIC_AGENT_RUN_COST] == names.COST_BUCKETS
    # Other histograms are left to the SDK default.
    assert bounds["some.other.histogram"] == record_like_openllmetry([])["some.other.histogram"]


def test_without_views_such_instruments_get_sdk_default_buckets() -> None:
    """The failure the views exist for: same instrument, no view, buckets do not match semconv."""
    bounds = record_like_openllmetry([])
    assert bounds[names.METRIC_TOKEN_USAGE] != names.TOKEN_USAGE_BUCKETS
    assert bounds[names.METRIC_TOKEN_USAGE][:3] == (0.0, 5.0, 10.0)
