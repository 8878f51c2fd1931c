"""llmmeter.configure() (llmmeter.pipeline): programmatic setup for apps that build the OTel SDK themselves."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from llmmeter import config, names
from llmmeter.config import Settings
from llmmeter.pipeline import configure, instrument_all
from llmmeter.processor import LLMMeterSpanProcessor
from opentelemetry import metrics, trace
from opentelemetry.metrics import _internal as metrics_internal
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.util._importlib_metadata import entry_points
from opentelemetry.util._once import Once

QUIET = Settings(summary="off")


@pytest.fixture
def fresh_otel_globals(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Unset global Tracer/MeterProviders for one test (the API allows setting them once per process)."""
    monkeypatch.setattr(trace, "_TRACER_PROVIDER_SET_ONCE", Once())
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", None)
    monkeypatch.setattr(metrics_internal, "_METER_PROVIDER_SET_ONCE", Once())
    monkeypatch.setattr(metrics_internal, "_METER_PROVIDER", None)
    monkeypatch.setattr(metrics_internal, "_PROXY_METER_PROVIDER", metrics_internal._ProxyMeterProvider())
    monkeypatch.setenv(config.ENV_SUMMARY, "off")  # no exit tables printed by the test process
    yield
    config.set_settings(None)
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.shutdown()


def llm_span(tracer_provider: TracerProvider, input_tokens: int = 10) -> None:
    tracer = tracer_provider.get_tracer("llmmeter.test")
    attrs = {
        names.OPERATION: names.OP_CHAT,
        names.PROVIDER: "openai",
        names.REQUEST_MODEL: "gpt-4o-mini",
        names.USAGE_INPUT_TOKENS: input_tokens,
        names.USAGE_OUTPUT_TOKENS: 1,
        names.LLMMETER_PRICED: True,
        names.COST_USD: 0.5,
    }
    tracer.start_span("chat gpt-4o-mini", attributes=attrs).end()


def llmmeter_processors(provider: TracerProvider) -> list[LLMMeterSpanProcessor]:
    return [p for p in provider._active_span_processor._span_processors if isinstance(p, LLMMeterSpanProcessor)]


def test_configure_attaches_once_and_records_into_the_given_meter_provider(fresh_otel_globals: None) -> None:
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    tracer_provider = TracerProvider()
    first = configure(tracer_provider=tracer_provider, meter_provider=meter_provider, instrument=False, settings=QUIET)
    second = configure(tracer_provider=tracer_provider, meter_provider=meter_provider, instrument=False)
    assert first is second
    assert llmmeter_processors(tracer_provider) == [first]
    llm_span(tracer_provider, input_tokens=10)
    data = reader.get_metrics_data()
    tokens = [
        p
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == names.METRIC_TOKENS
        for p in m.data.data_points
    ]
    assert sum(p.value for p in tokens) == 11  # counted once although configure ran twice
    meter_provider.shutdown()


def test_configure_without_any_sdk_creates_a_global_provider_for_the_summary(fresh_otel_globals: None) -> None:
    processor = configure(instrument=False, settings=QUIET)
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    assert llmmeter_processors(provider) == [processor]
    llm_span(provider, input_tokens=5)
    (row,) = processor.tally.rows().values()
    assert (row.calls, row.input, row.cost_usd) == (1, 5, 0.5)


def test_processor_built_before_the_meter_provider_records_into_it(fresh_otel_globals: None) -> None:
    """Auto-instrumentation builds the processor before the SDK sets the global MeterProvider."""
    tracer_provider = TracerProvider()
    configure(tracer_provider=tracer_provider, instrument=False, settings=QUIET)
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    llm_span(tracer_provider, input_tokens=3)
    data = reader.get_metrics_data()
    names_seen = {m.name for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    assert {names.METRIC_TOKENS, names.METRIC_COST, names.METRIC_REQUESTS, names.METRIC_TOKEN_USAGE} <= names_seen


def test_settings_argument_becomes_the_process_settings(fresh_otel_globals: None) -> None:
    custom = Settings(summary="off", label_keys=("customer",), max_values_per_label=7)
    processor = configure(tracer_provider=TracerProvider(), instrument=False, settings=custom)
    assert config.settings() is custom
    assert processor.settings is custom


def test_instrument_all_respects_disabled_instrumentations(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "llmmeter_openai, llmmeter_anthropic")
    before = {ep.name for ep in entry_points(group="opentelemetry_instrumentor")
              if ep.name.startswith("llmmeter_") and ep.load()().is_instrumented_by_opentelemetry}
    done = instrument_all(TracerProvider())
    try:
        assert "llmmeter_openai" not in done and "llmmeter_anthropic" not in done
        assert all(name.startswith("llmmeter_") for name in done)
        assert {"llmmeter_cohere", "llmmeter_mistral", "llmmeter_google_genai"} <= set(done)
    finally:  # the instrumentors were attached to a throwaway provider: never leave them for later tests
        for ep in entry_points(group="opentelemetry_instrumentor"):
            if ep.name in done and ep.name not in before:
                ep.load()().uninstrument()


def test_instrument_all_instruments_llmmeter_instrumentors_only(monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor as OfficialInstrumentor

    monkeypatch.delenv("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", raising=False)
    from llmmeter.instrumentors.openai import OpenAIInstrumentor

    was_instrumented = OpenAIInstrumentor().is_instrumented_by_opentelemetry
    done: list[str] = []
    try:
        done = instrument_all(TracerProvider())
        assert "llmmeter_openai" in done
        assert OpenAIInstrumentor().is_instrumented_by_opentelemetry
        assert instrument_all(TracerProvider()) == done  # idempotent
        assert not OfficialInstrumentor().is_instrumented_by_opentelemetry  # other packages' entry points untouched
    finally:  # leave every instrumentor as the test found it
        for ep in entry_points(group="opentelemetry_instrumentor"):
            if ep.name in done and not (ep.name == "llmmeter_openai" and was_instrumented):
                ep.load()().uninstrument()
