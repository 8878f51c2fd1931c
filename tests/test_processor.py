"""LLMMeterSpanProcessor: metrics from finished spans, attribution, bounded cardinality, robustness.

Spans are made with a real SDK tracer, the way an instrumentor makes them: llmmeter's spans come from a
tracer whose scope starts with "llmmeter", other instrumentors' from their own scope.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import Telemetry
from llmmeter import attribution, names
from llmmeter.config import Settings
from llmmeter.processor import LLMMeterSpanProcessor, find_processor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

LLMMETER_SCOPE = "llmmeter.instrumentors.openai"
FOREIGN_SCOPE = "opentelemetry.instrumentation.openai_v2"


def chat_span(
    tel: Telemetry,
    *,
    scope: str = LLMMETER_SCOPE,
    model: str = "gpt-4o",
    provider: str = "openai",
    end: dict[str, Any] | None = None,
    start: dict[str, Any] | None = None,
    error: bool = False,
) -> Any:
    """Start and end one inference span; attributes in ``start`` are known at start, ``end`` later."""
    tracer = tel.tracer_provider.get_tracer(scope)
    attrs = {names.OPERATION: names.OP_CHAT, names.PROVIDER: provider, names.REQUEST_MODEL: model}
    attrs.update(start or {})
    span = tracer.start_span(f"chat {model}", kind=SpanKind.CLIENT, attributes=attrs)
    span.set_attributes(end or {})
    if error:
        span.set_status(Status(StatusCode.ERROR))
    span.end()
    return span


def priced(input_tokens: int, output_tokens: int, cost: float, **extra: Any) -> dict[str, Any]:
    return {
        names.USAGE_INPUT_TOKENS: input_tokens,
        names.USAGE_OUTPUT_TOKENS: output_tokens,
        names.LLMMETER_PRICED: True,
        names.COST_USD: cost,
        names.LLMMETER_ESTIMATED: False,
        **extra,
    }


@pytest.fixture
def make_telemetry() -> Iterator[Any]:
    """Like the ``telemetry`` fixture, with the processor built from given Settings."""
    made: list[Telemetry] = []

    def make(settings: Settings) -> Telemetry:
        exporter = InMemorySpanExporter()
        reader = InMemoryMetricReader()
        meter_provider = MeterProvider(metric_readers=[reader])
        tracer_provider = TracerProvider()
        processor = LLMMeterSpanProcessor(meter_provider=meter_provider, settings=settings)
        tracer_provider.add_span_processor(processor)
        tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
        tel = Telemetry(tracer_provider, meter_provider, exporter, reader, processor)
        made.append(tel)
        return tel

    yield make
    for tel in made:
        tel.tracer_provider.shutdown()
        tel.meter_provider.shutdown()


def test_llmmeter_span_becomes_tokens_cost_and_request(telemetry: Telemetry) -> None:
    chat_span(
        telemetry,
        end=priced(1200, 300, 0.0123, **{names.USAGE_CACHE_READ_TOKENS: 1000, names.USAGE_REASONING_TOKENS: 200}),
    )
    base = {names.PROVIDER: "openai", names.OPERATION: "chat", names.REQUEST_MODEL: "gpt-4o"}
    assert telemetry.metric_total(names.METRIC_TOKENS, **base, **{names.LABEL_TOKEN_TYPE: "input"}) == 1200
    assert telemetry.metric_total(names.METRIC_TOKENS, **{names.LABEL_TOKEN_TYPE: "output"}) == 300
    assert telemetry.metric_total(names.METRIC_TOKENS, **{names.LABEL_TOKEN_TYPE: "cache_read"}) == 1000
    assert telemetry.metric_total(names.METRIC_TOKENS, **{names.LABEL_TOKEN_TYPE: "reasoning"}) == 200
    assert telemetry.metric_total(names.METRIC_TOKENS, **{names.LABEL_TOKEN_TYPE: "cache_creation"}) == 0
    assert telemetry.metric_total(names.METRIC_COST, **base) == pytest.approx(0.0123)
    requests = telemetry.metric_points(names.METRIC_REQUESTS)
    assert len(requests) == 1
    assert dict(requests[0].attributes) == {
        **base,
        names.LABEL_STATUS: "ok",
        names.LABEL_PRICED: "true",
        names.LABEL_ESTIMATED: "false",
    }


def test_semconv_histograms_use_semconv_buckets_without_views(telemetry: Telemetry) -> None:
    chat_span(telemetry, end=priced(100, 20, 0.001, **{names.RESPONSE_MODEL: "gpt-4o-2024-08-06"}))
    usage = telemetry.metric_points(names.METRIC_TOKEN_USAGE)
    by_type = {p.attributes[names.TOKEN_TYPE]: p for p in usage}
    assert set(by_type) == {"input", "output"}
    assert by_type["input"].sum == 100 and by_type["output"].sum == 20
    assert tuple(by_type["input"].explicit_bounds) == names.TOKEN_USAGE_BUCKETS
    assert by_type["input"].attributes[names.RESPONSE_MODEL] == "gpt-4o-2024-08-06"
    assert names.LABEL_ESTIMATED not in by_type["input"].attributes  # semconv metric keeps semconv labels
    (duration,) = telemetry.metric_points(names.METRIC_OPERATION_DURATION)
    assert duration.count == 1
    assert tuple(duration.explicit_bounds) == names.DURATION_BUCKETS


def test_time_to_first_chunk_recorded_for_streams(telemetry: Telemetry) -> None:
    chat_span(telemetry, end=priced(10, 5, 0.0001, **{names.TIME_TO_FIRST_CHUNK: 0.25}))
    chat_span(telemetry, end=priced(10, 5, 0.0001))
    (point,) = telemetry.metric_points(names.METRIC_TIME_TO_FIRST_CHUNK)
    assert point.count == 1 and point.sum == pytest.approx(0.25)


def test_non_genai_spans_are_ignored(telemetry: Telemetry) -> None:
    tracer = telemetry.tracer_provider.get_tracer("http")
    with tracer.start_as_current_span("GET /", attributes={"http.request.method": "GET"}):
        pass
    # An agent span is GenAI but not an inference: counting it would double the calls inside it.
    with tracer.start_as_current_span("invoke_agent a", attributes={names.OPERATION: names.OP_INVOKE_AGENT}):
        pass
    assert telemetry.metric_points(names.METRIC_REQUESTS) == []
    assert telemetry.processor.tally.rows() == {}


def test_legacy_attribute_names_from_older_instrumentors(telemetry: Telemetry) -> None:
    tracer = telemetry.tracer_provider.get_tracer("opentelemetry.instrumentation.openai")
    span = tracer.start_span(
        "chat gpt-4o",
        attributes={names.OPERATION: "chat", names.LEGACY_SYSTEM: "openai", names.REQUEST_MODEL: "my-finetune-x"},
    )
    span.set_attributes({names.LEGACY_USAGE_PROMPT_TOKENS: 40, names.LEGACY_USAGE_COMPLETION_TOKENS: 7})
    span.end()
    input_tokens = {names.PROVIDER: "openai", names.LABEL_TOKEN_TYPE: "input"}
    assert telemetry.metric_total(names.METRIC_TOKENS, **input_tokens) == 40
    assert telemetry.metric_total(names.METRIC_TOKENS, **{names.LABEL_TOKEN_TYPE: "output"}) == 7


def test_unpriced_span_adds_no_cost_and_says_so(telemetry: Telemetry) -> None:
    chat_span(
        telemetry,
        model="mystery-1",
        end={names.USAGE_INPUT_TOKENS: 10, names.USAGE_OUTPUT_TOKENS: 2, names.LLMMETER_PRICED: False},
    )
    assert telemetry.metric_points(names.METRIC_COST) == []
    assert telemetry.metric_total(names.METRIC_REQUESTS, **{names.LABEL_PRICED: "false"}) == 1
    (row,) = telemetry.processor.tally.rows().values()
    assert row.unpriced_calls == 1 and row.cost_usd == 0


def test_status_error_and_blocked(telemetry: Telemetry) -> None:
    chat_span(telemetry, end={names.ERROR_TYPE: "openai.RateLimitError"}, error=True)
    chat_span(telemetry, end={names.ERROR_TYPE: "llmmeter.BudgetExceeded", names.LLMMETER_BLOCKED: True}, error=True)
    chat_span(telemetry, end=priced(5, 5, 0.00001))
    status = names.LABEL_STATUS
    assert telemetry.metric_total(names.METRIC_REQUESTS, **{status: "error"}) == 1
    assert telemetry.metric_total(names.METRIC_REQUESTS, **{status: "blocked"}) == 1
    assert telemetry.metric_total(names.METRIC_REQUESTS, **{status: "ok"}) == 1
    # A failed call with no usage billed nothing: its cost is known, so it does not show as unpriced.
    assert telemetry.metric_total(names.METRIC_REQUESTS, **{status: "error", names.LABEL_PRICED: "true"}) == 1
    (duration,) = [
        p for p in telemetry.metric_points(names.METRIC_OPERATION_DURATION) if names.ERROR_TYPE in p.attributes
    ]
    assert duration.attributes[names.ERROR_TYPE] == "openai.RateLimitError"  # blocked calls have no duration
    (row,) = telemetry.processor.tally.rows().values()
    assert row.calls == 2  # ok + error; the blocked call was never sent


def test_estimated_label(telemetry: Telemetry) -> None:
    chat_span(telemetry, end={**priced(50, 9, 0.0002), names.LLMMETER_ESTIMATED: True})
    assert telemetry.metric_total(names.METRIC_TOKENS, **{names.LABEL_ESTIMATED: "true"}) == 59
    assert telemetry.metric_total(names.METRIC_REQUESTS, **{names.LABEL_ESTIMATED: "true"}) == 1
    assert telemetry.metric_total(names.METRIC_COST, **{names.LABEL_ESTIMATED: "true"}) == pytest.approx(0.0002)


def test_attribution_copied_from_baggage_to_spans_and_labels(telemetry: Telemetry) -> None:
    with attribution.attributes(tenant="acme", feature="search", user="u-42"):
        span = chat_span(telemetry, end=priced(10, 1, 0.0001))
    attrs = dict(span.attributes)
    assert attrs["llmmeter.attr.tenant"] == "acme"
    assert attrs["llmmeter.attr.feature"] == "search"
    assert attrs["llmmeter.attr.user"] == "u-42"  # on the span (traces), ...
    (request,) = telemetry.metric_points(names.METRIC_REQUESTS)
    assert request.attributes["tenant"] == "acme" and request.attributes["feature"] == "search"
    assert "user" not in request.attributes  # ... but not a metric label unless configured
    assert telemetry.processor.tally.rows()[("gpt-4o", "search")].calls == 1


def test_attribute_already_set_by_instrumentor_wins(telemetry: Telemetry) -> None:
    with attribution.attributes(tenant="from-baggage"):
        span = chat_span(telemetry, start={"llmmeter.attr.tenant": "explicit"}, end=priced(1, 1, 0.0))
    assert span.attributes["llmmeter.attr.tenant"] == "explicit"
    assert telemetry.metric_total(names.METRIC_REQUESTS, tenant="explicit") == 1


def test_user_label_only_when_configured(make_telemetry: Any) -> None:
    tel = make_telemetry(Settings(label_keys=("user", "feature")))
    with attribution.attributes(user="u-1", tenant="acme", feature="chat"):
        chat_span(tel, end=priced(3, 3, 0.0))
    (request,) = tel.metric_points(names.METRIC_REQUESTS)
    assert request.attributes["user"] == "u-1"
    assert "tenant" not in request.attributes


def test_custom_attribution_key_is_copied_and_labelled(make_telemetry: Any) -> None:
    tel = make_telemetry(Settings(label_keys=("customer",)))
    with attribution.attributes(customer="bigco"):
        span = chat_span(tel, end=priced(3, 3, 0.0))
    assert span.attributes["llmmeter.attr.customer"] == "bigco"
    assert tel.metric_total(names.METRIC_REQUESTS, customer="bigco") == 1


def test_label_values_fold_into_overflow_beyond_the_limit(make_telemetry: Any) -> None:
    tel = make_telemetry(Settings(max_values_per_label=3))
    for i in range(10):
        with attribution.attributes(tenant=f"t{i}", feature="f"):
            chat_span(tel, end=priced(1, 1, 0.0))
    tenants = {p.attributes["tenant"] for p in tel.metric_points(names.METRIC_REQUESTS)}
    assert tenants == {"t0", "t1", "t2", names.OVERFLOW_VALUE}
    assert tel.metric_total(names.METRIC_REQUESTS, tenant=names.OVERFLOW_VALUE) == 7
    assert tel.metric_total(names.METRIC_ATTRIBUTION_OVERFLOW, **{names.LABEL_ATTRIBUTION_KEY: "tenant"}) == 7
    assert tel.metric_points(names.METRIC_ATTRIBUTION_OVERFLOW)[0].attributes == {names.LABEL_ATTRIBUTION_KEY: "tenant"}
    # Every call is still counted, and the processor remembers no more than the limit.
    assert tel.metric_total(names.METRIC_REQUESTS) == 10
    assert len(tel.processor._seen["tenant"]) == 3


def test_memory_stays_bounded_under_many_distinct_values(make_telemetry: Any) -> None:
    tel = make_telemetry(Settings(max_values_per_label=5))
    tracer = tel.tracer_provider.get_tracer(LLMMETER_SCOPE)
    for i in range(3000):
        span = tracer.start_span(
            "chat",
            attributes={
                names.OPERATION: "chat",
                names.PROVIDER: "openai",
                names.REQUEST_MODEL: f"model-{i}",  # unbounded model names from a misbehaving source
                "llmmeter.attr.tenant": f"t{i}",
                "llmmeter.attr.feature": f"f{i}",
                names.USAGE_INPUT_TOKENS: 1,
            },
        )
        span.end()
    processor = tel.processor
    processor.force_flush()  # count the queued spans now
    assert all(len(values) <= 5 for values in processor._seen.values())
    assert len(processor._cache) <= 4096 + 8
    assert len(processor.tally) <= 50
    # Past the SDK's own series limit points fold into its overflow series; nothing is lost.
    assert tel.metric_total(names.METRIC_TOKENS) == 3000


@pytest.mark.parametrize(
    "attrs",
    [
        {names.USAGE_INPUT_TOKENS: "12", names.USAGE_OUTPUT_TOKENS: -3, names.COST_USD: "free"},
        {names.USAGE_INPUT_TOKENS: 1.5e30, names.REQUEST_MODEL: ["a", "b"], names.LLMMETER_PRICED: "yes"},
        {names.PROVIDER: 7, names.TIME_TO_FIRST_CHUNK: "soon", names.USAGE_CACHE_READ_TOKENS: True},
    ],
)
def test_malformed_attributes_never_raise_and_count_the_call(telemetry: Telemetry, attrs: dict[str, Any]) -> None:
    chat_span(telemetry, end=attrs)
    assert telemetry.metric_total(names.METRIC_REQUESTS) == 1
    assert telemetry.metric_total(names.METRIC_TOKENS) == 0
    assert telemetry.metric_points(names.METRIC_COST) == []


def test_find_processor(telemetry: Telemetry) -> None:
    assert find_processor(telemetry.tracer_provider) is telemetry.processor
    assert find_processor(TracerProvider()) is None
    assert find_processor(object()) is None


@pytest.fixture
def price_table() -> Iterator[None]:
    """A hand-written price table (USD per token), so expected costs are computed by hand."""
    from llmmeter.pricing import parse_price_data, set_price_table

    data = {
        "acme-chat-1": {
            "litellm_provider": "openai",
            "mode": "chat",
            "input_cost_per_token": 2e-6,
            "output_cost_per_token": 8e-6,
            "cache_read_input_token_cost": 0.5e-6,
        }
    }
    set_price_table(parse_price_data(data, "test prices", default_version="test"))
    yield
    set_price_table(None)


def test_foreign_span_is_priced_by_llmmeter(telemetry: Telemetry, price_table: None) -> None:
    """Spans from other instrumentors carry tokens but no llmmeter cost: the processor prices them."""
    chat_span(
        telemetry,
        scope=FOREIGN_SCOPE,
        model="acme-chat-1",
        end={names.USAGE_INPUT_TOKENS: 1000, names.USAGE_OUTPUT_TOKENS: 100, names.USAGE_CACHE_READ_TOKENS: 400},
    )
    # 600 uncached input at 2e-6 + 400 cached at 0.5e-6 + 100 output at 8e-6
    expected = 600 * 2e-6 + 400 * 0.5e-6 + 100 * 8e-6
    assert telemetry.metric_total(names.METRIC_COST) == pytest.approx(expected)
    assert telemetry.metric_total(names.METRIC_REQUESTS, **{names.LABEL_PRICED: "true"}) == 1


def test_foreign_span_for_unknown_model_is_unpriced_never_zero(telemetry: Telemetry, price_table: None) -> None:
    chat_span(
        telemetry,
        scope=FOREIGN_SCOPE,
        model="nobody-knows-7b",
        end={names.USAGE_INPUT_TOKENS: 10, names.USAGE_OUTPUT_TOKENS: 10, names.COST_USD: 0.0},  # OpenLIT-style 0
    )
    assert telemetry.metric_points(names.METRIC_COST) == []
    assert telemetry.metric_total(names.METRIC_REQUESTS, **{names.LABEL_PRICED: "false"}) == 1


def test_foreign_positive_cost_used_when_llmmeter_has_no_price(telemetry: Telemetry, price_table: None) -> None:
    chat_span(
        telemetry,
        scope=FOREIGN_SCOPE,
        model="private-finetune",
        end={names.USAGE_INPUT_TOKENS: 10, names.USAGE_OUTPUT_TOKENS: 10, names.COST_USD: 0.25},
    )
    assert telemetry.metric_total(names.METRIC_COST) == pytest.approx(0.25)
    assert telemetry.metric_total(names.METRIC_REQUESTS, **{names.LABEL_PRICED: "true"}) == 1


def test_concurrent_span_ends_are_all_counted(make_telemetry: Any) -> None:
    tel = make_telemetry(Settings(max_values_per_label=10))
    tracer = tel.tracer_provider.get_tracer(LLMMETER_SCOPE)

    def worker(n: int) -> None:
        for i in range(300):
            attrs = {
                names.OPERATION: "chat",
                names.PROVIDER: "openai",
                names.REQUEST_MODEL: "gpt-4o",
                "llmmeter.attr.tenant": f"t{(n * 300 + i) % 25}",
                **priced(2, 1, 0.001),
            }
            tracer.start_span("chat gpt-4o", attributes=attrs).end()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert tel.metric_total(names.METRIC_REQUESTS) == 2400
    assert tel.metric_total(names.METRIC_TOKENS, **{names.LABEL_TOKEN_TYPE: "input"}) == 4800
    assert tel.metric_total(names.METRIC_COST) == pytest.approx(2.4)
    assert len(tel.processor._seen["tenant"]) == 10
    tenants = {p.attributes["tenant"] for p in tel.metric_points(names.METRIC_REQUESTS)}
    assert len(tenants) == 11 and names.OVERFLOW_VALUE in tenants
    assert sum(row.calls for row in tel.processor.tally.rows().values()) == 2400


# --- counters kept in-process (ObservableCounter) and histograms replayed off the app's thread -------------


def test_counters_are_monotonic_cumulative_sums_across_collections(telemetry: Telemetry) -> None:
    """Observable counters report cumulative totals: a second collection sees the first call plus the new one."""
    chat_span(telemetry, end=priced(7, 3, 0.5))
    assert telemetry.metric_total(names.METRIC_TOKENS) == 10
    chat_span(telemetry, end=priced(1, 1, 0.25))
    assert telemetry.metric_total(names.METRIC_TOKENS) == 12
    assert telemetry.metric_total(names.METRIC_COST) == pytest.approx(0.75)
    data = telemetry.reader.get_metrics_data()
    sums = {m.name: m.data for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    for name in (names.METRIC_TOKENS, names.METRIC_COST, names.METRIC_REQUESTS):
        assert sums[name].is_monotonic, name
        assert sums[name].aggregation_temporality.name == "CUMULATIVE", name
    assert {m.name: m.unit for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}[
        names.METRIC_COST
    ] == names.METRIC_SPECS[names.METRIC_COST][1]


def test_prometheus_exposition_keeps_total_names() -> None:
    """Through the real Prometheus exporter the counters are still `_total` counters with unit suffixes."""
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from prometheus_client import REGISTRY, generate_latest

    reader = PrometheusMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(LLMMeterSpanProcessor(meter_provider=meter_provider))
    try:
        tel = Telemetry(tracer_provider, meter_provider, InMemorySpanExporter(), InMemoryMetricReader(), None)
        chat_span(tel, end=priced(11, 4, 0.002))
        text = generate_latest(REGISTRY).decode()
    finally:
        tracer_provider.shutdown()
        meter_provider.shutdown()  # also unregisters the reader's collector
    for metric in (names.METRIC_TOKENS, names.METRIC_COST, names.METRIC_REQUESTS):
        exposed = names.metric_prometheus_name(metric)
        assert f"# TYPE {exposed} counter" in text, exposed
    assert 'llmmeter_tokens_total{' in text and 'llmmeter_token_type="input"' in text
    assert "llmmeter_cost_USD_total{" in text and "llmmeter_requests_total{" in text
    assert "gen_ai_client_token_usage_bucket{" in text  # the replayed histogram is in the same scrape


def test_series_cap_folds_attribution_and_counts_overflow(make_telemetry: Any) -> None:
    tel = make_telemetry(Settings(label_keys=("tenant",), max_values_per_label=1000))
    tel.processor._max_series = 4  # the constructor's max_series_per_metric, made small
    for i in range(6):
        with attribution.attributes(tenant=f"t{i}"):
            chat_span(tel, end=priced(2, 1, 0.01))
    # Two token series per tenant (input, output): t0 and t1 fill llmmeter.tokens; from t2 on a call folds,
    # in every counter alike, so one call's tokens, cost and request keep the same labels.
    tel.processor.force_flush()  # count the queued spans now
    assert len(tel.processor._tokens) == 6  # t0, t1 and __overflow__, input and output each
    for metric in (names.METRIC_REQUESTS, names.METRIC_TOKENS, names.METRIC_COST):
        tenants = {p.attributes["tenant"] for p in tel.metric_points(metric)}
        assert tenants == {names.OVERFLOW_VALUE, "t0", "t1"}, metric
    assert tel.metric_total(names.METRIC_REQUESTS, tenant=names.OVERFLOW_VALUE) == 4
    assert tel.metric_total(names.METRIC_ATTRIBUTION_OVERFLOW, **{names.LABEL_ATTRIBUTION_KEY: "tenant"}) == 4
    # Nothing is lost: every call and every token is counted, whatever its labels became.
    assert tel.metric_total(names.METRIC_REQUESTS) == 6
    assert tel.metric_total(names.METRIC_TOKENS) == 18
    assert tel.metric_total(names.METRIC_COST) == pytest.approx(0.06)


def test_series_stay_bounded_when_even_folded_labels_keep_growing(
    make_telemetry: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unbounded model names without attribution: past the headroom, provider and model fold too."""
    from llmmeter import processor as processor_module

    monkeypatch.setattr(processor_module, "OVERFLOW_HEADROOM", 2)
    tel = make_telemetry(Settings(label_keys=()))
    tel.processor._max_series = 3
    for i in range(40):
        chat_span(tel, model=f"model-{i}", end=priced(1, 1, 0.0))
    processor = tel.processor
    processor.force_flush()  # count the queued spans now
    # cap + headroom, plus the fully folded series (input and output tokens of one provider/model pair).
    assert len(processor._requests) <= 3 + 2 + 1 and len(processor._tokens) <= 3 + 2 + 2
    assert tel.metric_total(names.METRIC_REQUESTS) == 40
    assert tel.metric_total(names.METRIC_REQUESTS, **{names.REQUEST_MODEL: names.OVERFLOW_VALUE}) > 0
    assert tel.metric_total(names.METRIC_ATTRIBUTION_OVERFLOW, **{names.LABEL_ATTRIBUTION_KEY: names.REQUEST_MODEL}) > 0


def test_histograms_replayed_before_collection_see_every_ended_span(telemetry: Telemetry) -> None:
    """More spans than wake the replay thread, read back at once: the collection drains the queue first."""
    n = 3 * 512 + 7
    for _ in range(n):
        chat_span(telemetry, end=priced(5, 2, 0.0, **{names.TIME_TO_FIRST_CHUNK: 0.1}))
    by_type = {p.attributes[names.TOKEN_TYPE]: p for p in telemetry.metric_points(names.METRIC_TOKEN_USAGE)}
    assert by_type["input"].count == n and by_type["input"].sum == 5 * n
    assert by_type["output"].sum == 2 * n
    (duration,) = telemetry.metric_points(names.METRIC_OPERATION_DURATION)
    assert duration.count == n
    (ttfc,) = telemetry.metric_points(names.METRIC_TIME_TO_FIRST_CHUNK)
    assert ttfc.count == n
    assert len(telemetry.processor._deferred) == 0


def test_collections_racing_span_ends_from_threads_lose_nothing(make_telemetry: Any) -> None:
    tel = make_telemetry(Settings(label_keys=()))
    tracer = tel.tracer_provider.get_tracer(LLMMETER_SCOPE)
    attrs = {names.OPERATION: "chat", names.PROVIDER: "openai", names.REQUEST_MODEL: "gpt-4o", **priced(3, 1, 0.0)}
    done = threading.Event()

    def worker() -> None:
        for _ in range(500):
            tracer.start_span("chat gpt-4o", attributes=attrs).end()

    def collector() -> None:
        while not done.is_set():
            tel.reader.get_metrics_data()

    reading = threading.Thread(target=collector)
    reading.start()
    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    reading.join()
    assert tel.metric_total(names.METRIC_REQUESTS) == 2000
    assert tel.metric_total(names.METRIC_TOKEN_USAGE, **{names.TOKEN_TYPE: "input"}) == 3 * 2000
    (duration,) = tel.metric_points(names.METRIC_OPERATION_DURATION)
    assert duration.count == 2000


def test_full_queue_counts_inline_instead_of_dropping(make_telemetry: Any) -> None:
    tel = make_telemetry(Settings(label_keys=()))
    tel.processor._deferred.max_queued = 4
    for _ in range(50):
        chat_span(tel, end=priced(1, 1, 0.0))
        assert len(tel.processor._deferred) <= 4
    assert len(tel.processor._deferred) == 4  # the app's thread counted the rest as they ended
    (duration,) = tel.metric_points(names.METRIC_OPERATION_DURATION)
    assert duration.count == 50
    assert tel.metric_total(names.METRIC_REQUESTS) == 50


def test_spans_wait_for_a_collection_off_the_calls_path(make_telemetry: Any) -> None:
    """on_end only queues: nothing is counted (no SDK measurement, no sums) until a reader collects."""
    tel = make_telemetry(Settings(label_keys=()))
    for _ in range(3):
        chat_span(tel, end=priced(2, 1, 0.0))
    assert len(tel.processor._deferred) == 3
    assert tel.processor._tokens == {}  # the sums behind the counters: untouched so far
    assert tel.metric_total(names.METRIC_REQUESTS) == 3  # the collection counted the queue first
    assert len(tel.processor._deferred) == 0


def test_a_backlog_is_counted_by_the_background_thread(make_telemetry: Any) -> None:
    tel = make_telemetry(Settings(label_keys=()))
    tel.processor._deferred.wake_at = 10
    for _ in range(40):
        chat_span(tel, end=priced(2, 1, 0.0))
    thread = tel.processor._deferred._thread
    assert thread is not None and thread.name == "llmmeter-metrics"
    deadline = time.monotonic() + 10
    while len(tel.processor._deferred) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(tel.processor._deferred) == 0  # drained without any collection
    assert sum(slot[0] for slot in tel.processor._requests.values()) == 40
    assert tel.metric_total(names.METRIC_REQUESTS) == 40


def test_force_flush_and_shutdown_replay_the_queue(make_telemetry: Any) -> None:
    tel = make_telemetry(Settings(label_keys=()))
    chat_span(tel, end=priced(4, 4, 0.0))
    assert tel.tracer_provider.force_flush()
    assert len(tel.processor._deferred) == 0
    chat_span(tel, end=priced(4, 4, 0.0))
    tel.tracer_provider.shutdown()
    assert len(tel.processor._deferred) == 0
    thread = tel.processor._deferred._thread
    assert thread is None or not thread.is_alive()
    (duration,) = tel.metric_points(names.METRIC_OPERATION_DURATION)
    assert duration.count == 2
    # After shutdown a late span is recorded inline, not queued for a thread that is gone.
    tel.processor.on_end(chat_span(tel, end=priced(4, 4, 0.0)))
    assert len(tel.processor._deferred) == 0


def test_histogram_exemplars_point_at_the_llm_span(telemetry: Telemetry) -> None:
    """Replayed off-thread, a record still carries the span it came from (trace-based exemplar filter)."""
    span = chat_span(telemetry, end=priced(9, 9, 0.0))
    (duration,) = telemetry.metric_points(names.METRIC_OPERATION_DURATION)
    assert [(e.trace_id, e.span_id) for e in duration.exemplars] == [(span.context.trace_id, span.context.span_id)]


def test_an_unsampled_span_gets_no_exemplar_from_whatever_span_is_current_when_counted() -> None:
    """Counting is deferred, so it may run while some unrelated span is current on that thread: a
    record-only (unsampled) LLM span must not borrow it as its exemplar."""
    from opentelemetry import trace as trace_api
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult

    class RecordOnly(Sampler):
        def should_sample(self, parent_context: Any, trace_id: int, name: str, kind: Any = None,
                          attributes: Any = None, *args: Any, **kwargs: Any) -> SamplingResult:
            return SamplingResult(Decision.RECORD_ONLY, attributes)

        def get_description(self) -> str:
            return "record-only"

    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    processor = LLMMeterSpanProcessor(meter_provider=meter_provider, settings=Settings(label_keys=()))
    unsampled = TracerProvider(sampler=RecordOnly())
    unsampled.add_span_processor(processor)
    unsampled.get_tracer(LLMMETER_SCOPE).start_span(
        "chat gpt-4o", attributes={names.OPERATION: "chat", names.PROVIDER: "openai", **priced(3, 1, 0.0)}
    ).end()
    ambient = TracerProvider().get_tracer("app").start_span("request handler")  # sampled
    with trace_api.use_span(ambient, end_on_exit=True):
        processor.force_flush()  # counted now, on this thread, with the ambient span current
    points = [
        point
        for rm in reader.get_metrics_data().resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
        if metric.name == names.METRIC_OPERATION_DURATION
        for point in metric.data.data_points
    ]
    assert [p.count for p in points] == [1]
    assert points[0].exemplars == []
