"""The SDK pipeline ``llmmeter.configure()`` builds, under a trace sampler the test chooses.

Shared by the tests that prove llmmeter is exact whatever the sampler decides (tests/test_sampling.py,
tests/crewai/): a ``TracerProvider`` with that sampler, llmmeter's span processor feeding an in-memory metric
reader, an in-memory exporter for what the sampler lets through, and ``record_genai_spans`` as configure() and the
distro apply it.
"""

from __future__ import annotations

from typing import Any

from llmmeter.processor import LLMMeterSpanProcessor
from llmmeter.sampling import record_genai_spans
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Sampler


def sampled_pipeline(sampler: Sampler, *extra: SpanProcessor) -> dict[str, Any]:
    """The fields of tests/conftest.py's ``Telemetry`` for a new pipeline under ``sampler``; ``extra`` span
    processors are added after the exporter. The caller shuts both providers down."""
    exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    tracer_provider = TracerProvider(sampler=sampler)
    processor = LLMMeterSpanProcessor(meter_provider=meter_provider)
    tracer_provider.add_span_processor(processor)
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    for extra_processor in extra:
        tracer_provider.add_span_processor(extra_processor)
    record_genai_spans(tracer_provider)  # what llmmeter.configure() and the distro do
    return {"tracer_provider": tracer_provider, "meter_provider": meter_provider, "exporter": exporter,
            "reader": reader, "processor": processor}
