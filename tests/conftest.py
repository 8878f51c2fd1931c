"""Shared fixtures: a real OTel SDK pipeline (TracerProvider + llmmeter's span processor + in-memory
exporter and metric reader), so every test asserts on exactly what an exporter would receive."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from ci_env import on_ci
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

# Under CI every Hypothesis test runs derandomized: the same examples every run, so a red build is reproducible
# (a new failure found locally gets pinned with @example). tests/test_fuzz_openai.py is derandomized everywhere.
# Neither profile has a time limit or a "too slow" health check: a loaded machine must not fail a test.
_untimed = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}
hypothesis_settings.register_profile("untimed", **_untimed)
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True, **_untimed)
hypothesis_settings.load_profile("ci" if on_ci() else "untimed")

# The zero-infrastructure cost ledger (llmmeter.ledger.default_directory) of every test and test subprocess goes
# to a scratch directory, never to the home directory of the machine running the suite.
os.environ.setdefault("XDG_DATA_HOME", tempfile.mkdtemp(prefix="llmmeter-tests-xdg-"))

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
CASSETTES_DIR = os.path.join(TESTS_DIR, "cassettes")


@dataclass
class Telemetry:
    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    exporter: InMemorySpanExporter
    reader: InMemoryMetricReader
    processor: Any

    def spans(self) -> list[ReadableSpan]:
        settle()
        return list(self.exporter.get_finished_spans())

    def llm_spans(self) -> list[ReadableSpan]:
        from llmmeter import names

        return [s for s in self.spans() if (s.attributes or {}).get(names.OPERATION) in names.INFERENCE_OPERATIONS]

    def metric_points(self, name: str) -> list[Any]:
        """Every data point of metric ``name`` collected now (sum points and histogram points)."""
        settle()
        data = self.reader.get_metrics_data()
        points: list[Any] = []
        if data is None:
            return points
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name == name:
                        points.extend(metric.data.data_points)
        return points

    def metric_total(self, name: str, **match: Any) -> float:
        """Sum of a counter's values (or a histogram's sums) over points whose attributes match."""
        total = 0.0
        for p in self.metric_points(name):
            attrs = dict(p.attributes or {})
            if all(attrs.get(k) == v for k, v in match.items()):
                total += p.value if hasattr(p, "value") else p.sum
        return total


def settle() -> None:
    """Let calls handed to llmmeter's estimate worker finish: their spans end there (llmmeter.background)."""
    from llmmeter import background

    assert background.settle(timeout=60), "llmmeter's estimate worker did not finish within 60 s"


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    from llmmeter.processor import LLMMeterSpanProcessor

    exporter = InMemorySpanExporter()
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    tracer_provider = TracerProvider()
    processor = LLMMeterSpanProcessor(meter_provider=meter_provider)
    tracer_provider.add_span_processor(processor)
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield Telemetry(tracer_provider, meter_provider, exporter, reader, processor)
    tracer_provider.shutdown()
    meter_provider.shutdown()


_LLMMETER_INSTRUMENTORS: list[type] | None = None


def _llmmeter_instrumentor_classes() -> list[type]:
    global _LLMMETER_INSTRUMENTORS
    if _LLMMETER_INSTRUMENTORS is None:
        from opentelemetry.util._importlib_metadata import entry_points

        _LLMMETER_INSTRUMENTORS = [
            ep.load() for ep in entry_points(group="opentelemetry_instrumentor") if ep.name.startswith("llmmeter_")
        ]
    return _LLMMETER_INSTRUMENTORS


@pytest.fixture(autouse=True)
def _empty_otel_context() -> Iterator[None]:
    """Each test starts with no current span and no baggage: a span or scope another test left attached on
    this worker's thread would otherwise become the parent of this test's "root" spans."""
    from opentelemetry import context

    token = context.attach(context.Context())
    yield
    with contextlib.suppress(Exception):
        context.detach(token)


@pytest.fixture(autouse=True)
def _instrumentors_left_as_found(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test passes alone and in any order (pytest-randomly shuffles them): an instrumentor a test left
    instrumented would send later tests' spans to that test's throwaway provider. A leak is undone here and
    fails the test that leaked, so it gets fixed where it happens."""
    before = {cls for cls in _llmmeter_instrumentor_classes() if cls().is_instrumented_by_opentelemetry}
    yield
    leaked = [cls for cls in _llmmeter_instrumentor_classes()
              if cls().is_instrumented_by_opentelemetry and cls not in before]
    for cls in leaked:
        cls().uninstrument()
    if leaked:
        pytest.fail(f"{request.node.nodeid} left instrumented: {', '.join(c.__name__ for c in leaked)}")
