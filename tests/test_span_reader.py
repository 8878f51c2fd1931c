"""llmmeter.span_reader: every convention's inference span is read, normalised and priced the same way.

The attribute names below are written out as each convention documents them (not taken from names.py), so a
wrong entry in the mapping table fails here:

* OpenInference semantic conventions (openinference-semantic-conventions, ``SpanAttributes``):
  ``openinference.span.kind`` = ``LLM``, ``llm.provider``, ``llm.model_name``, ``llm.token_count.prompt``,
  ``llm.token_count.completion``, ``llm.token_count.prompt_details.cache_read`` / ``cache_write``,
  ``llm.token_count.completion_details.reasoning``;
* OpenLLMetry before it followed semconv: ``gen_ai.system``, ``llm.request.type``,
  ``gen_ai.usage.prompt_tokens``, ``gen_ai.usage.completion_tokens``,
  ``gen_ai.usage.cache_read_input_tokens``, ``gen_ai.usage.reasoning_tokens``;
* the GenAI conventions' pending rename ``gen_ai.usage.cache_write.input_tokens``.

Expected costs are computed by hand from the published per-token rates (USD per 1M tokens):
gpt-4o-mini input 0.15, cached input 0.075, output 0.60; claude-sonnet-4-5 input 3.00, cache read 0.30,
5-minute cache write 3.75, output 15.00.
"""

from __future__ import annotations

from typing import Any

import pytest
from conftest import Telemetry
from hypothesis import given, settings
from hypothesis import strategies as st
from llmmeter import names
from llmmeter.span_reader import CONVENTIONS, is_inference, read_call
from opentelemetry.trace import SpanKind

M = 1_000_000


def end_span(tel: Telemetry, attrs: dict[str, Any], *, scope: str = "some.other.instrumentation") -> Any:
    tracer = tel.tracer_provider.get_tracer(scope)
    span = tracer.start_span("llm call", kind=SpanKind.CLIENT, attributes=attrs)
    span.end()
    return span


def requests(tel: Telemetry) -> float:
    return tel.metric_total(names.METRIC_REQUESTS)


def tokens(tel: Telemetry, kind: str) -> float:
    return tel.metric_total(names.METRIC_TOKENS, **{names.LABEL_TOKEN_TYPE: kind})


def cost(tel: Telemetry) -> float:
    return tel.metric_total(names.METRIC_COST)


OPENINFERENCE_CHAT = {
    "openinference.span.kind": "LLM",
    "llm.provider": "openai",
    "llm.system": "openai",
    "llm.model_name": "gpt-4o-mini",
    "llm.token_count.prompt": 1200,
    "llm.token_count.completion": 300,
    "llm.token_count.total": 1500,
    "llm.token_count.prompt_details.cache_read": 1000,
    "llm.token_count.completion_details.reasoning": 0,
}
# 200 uncached x 0.15 + 1000 cached x 0.075 + 300 output x 0.60, per 1M tokens.
OPENINFERENCE_CHAT_USD = (200 * 0.15 + 1000 * 0.075 + 300 * 0.60) / M

OPENLLMETRY_OLD_ANTHROPIC = {
    "gen_ai.system": "Anthropic",
    "llm.request.type": "chat",
    "gen_ai.request.model": "claude-sonnet-4-5",
    "gen_ai.response.model": "claude-sonnet-4-5-20250929",
    "gen_ai.usage.prompt_tokens": 2500,  # input incl. 2000 cache reads and 400 cache writes
    "gen_ai.usage.completion_tokens": 120,
    "gen_ai.usage.cache_read_input_tokens": 2000,
    "gen_ai.usage.cache_creation_input_tokens": 400,
    "llm.usage.total_tokens": 2620,
}
# 100 uncached x 3.00 + 2000 reads x 0.30 + 400 writes x 3.75 + 120 output x 15.00, per 1M tokens.
OPENLLMETRY_OLD_ANTHROPIC_USD = (100 * 3.00 + 2000 * 0.30 + 400 * 3.75 + 120 * 15.00) / M

CACHE_WRITE_RENAME = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "anthropic",
    "gen_ai.request.model": "claude-sonnet-4-5",
    "gen_ai.usage.input_tokens": 1000,
    "gen_ai.usage.output_tokens": 10,
    "gen_ai.usage.cache_write.input_tokens": 1000,
}
CACHE_WRITE_RENAME_USD = (1000 * 3.75 + 10 * 15.00) / M


def test_openinference_llm_span_is_counted_and_priced(telemetry: Telemetry) -> None:
    end_span(telemetry, OPENINFERENCE_CHAT, scope="openinference.instrumentation.openai")
    assert requests(telemetry) == 1
    assert tokens(telemetry, "input") == 1200
    assert tokens(telemetry, "output") == 300
    assert tokens(telemetry, "cache_read") == 1000
    assert cost(telemetry) == pytest.approx(OPENINFERENCE_CHAT_USD, rel=1e-12)


def test_openllmetry_pre_semconv_span_is_counted_and_priced(telemetry: Telemetry) -> None:
    end_span(telemetry, OPENLLMETRY_OLD_ANTHROPIC, scope="opentelemetry.instrumentation.anthropic")
    assert requests(telemetry) == 1
    assert tokens(telemetry, "input") == 2500
    assert tokens(telemetry, "cache_read") == 2000
    assert tokens(telemetry, "cache_creation") == 400
    assert cost(telemetry) == pytest.approx(OPENLLMETRY_OLD_ANTHROPIC_USD, rel=1e-12)
    points = telemetry.metric_points(names.METRIC_REQUESTS)
    assert {p.attributes[names.PROVIDER] for p in points} == {"anthropic"}  # "Anthropic" normalised


def test_cache_write_rename_is_read_as_cache_creation(telemetry: Telemetry) -> None:
    end_span(telemetry, CACHE_WRITE_RENAME)
    assert tokens(telemetry, "cache_creation") == 1000
    assert cost(telemetry) == pytest.approx(CACHE_WRITE_RENAME_USD, rel=1e-12)


def test_openinference_chain_and_tool_spans_are_not_calls(telemetry: Telemetry) -> None:
    for kind in ("CHAIN", "TOOL", "AGENT", "RETRIEVER"):
        end_span(telemetry, {"openinference.span.kind": kind, "llm.token_count.prompt": 5})
    end_span(telemetry, {"http.method": "GET"})
    assert requests(telemetry) == 0


def test_embedding_kind_is_an_embeddings_call(telemetry: Telemetry) -> None:
    span = end_span(
        telemetry,
        {"openinference.span.kind": "EMBEDDING", "llm.model_name": "text-embedding-3-small",
         "llm.provider": "openai", "llm.token_count.prompt": 1_000_000},
    )
    call = read_call(span)
    assert call is not None and call.operation == "embeddings"
    assert cost(telemetry) == pytest.approx(0.02, rel=1e-12)  # text-embedding-3-small: $0.02 per 1M tokens


def test_a_foreign_cost_is_used_only_when_the_table_has_no_price(telemetry: Telemetry) -> None:
    known = {**OPENINFERENCE_CHAT, "llm.cost.total": 99.0}  # our table prices gpt-4o-mini: 99 is ignored
    unknown = {**OPENINFERENCE_CHAT, "llm.model_name": "acme-private-llm", "llm.cost.total": 0.5}
    calls = [read_call(end_span(telemetry, attrs)) for attrs in (known, unknown)]
    assert calls[0] is not None and calls[0].cost_usd == pytest.approx(OPENINFERENCE_CHAT_USD, rel=1e-12)
    assert calls[0].cost_source == "local"
    assert calls[1] is not None and calls[1].cost_usd == 0.5 and calls[1].cost_source == "foreign"


def test_an_invalid_count_does_not_hide_a_valid_one_of_another_convention(telemetry: Telemetry) -> None:
    span = end_span(telemetry, {**CACHE_WRITE_RENAME, "gen_ai.usage.input_tokens": "lots",
                                "gen_ai.usage.prompt_tokens": 1000})
    call = read_call(span)
    assert call is not None and call.input_tokens == 1000


def test_the_mapping_table_names_each_quantity_semconv_first() -> None:
    assert CONVENTIONS["input"][0] == "gen_ai.usage.input_tokens"
    assert CONVENTIONS["output"][0] == "gen_ai.usage.output_tokens"
    assert CONVENTIONS["cache_read"][0] == "gen_ai.usage.cache_read.input_tokens"
    assert CONVENTIONS["cache_creation"][0] == "gen_ai.usage.cache_creation.input_tokens"
    assert CONVENTIONS["reasoning"][0] == "gen_ai.usage.reasoning.output_tokens"


# --- fuzz: mixed and malformed attribute sets ---------------------------------------------------
_KEYS = sorted({key for keys in CONVENTIONS.values() for key in keys} | {
    "gen_ai.operation.name", "openinference.span.kind", "llm.request.type", "llmmeter.cost.priced",
    "llmmeter.usage.estimated", "gen_ai.response.time_to_first_chunk", "error.type", "llmmeter.blocked",
    "llmmeter.usage.cache_creation.1h.input_tokens", "llm.token_count.total", "llm.usage.total_tokens",
})
_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from(["chat", "LLM", "EMBEDDING", "embeddings", "text_completion", "openai", "gpt-4o-mini", ""]),
    st.lists(st.integers(), max_size=3).map(tuple),
)
_ATTRS = st.dictionaries(st.sampled_from(_KEYS), _VALUES, max_size=14)


@settings(max_examples=1200)
@given(batch=st.lists(_ATTRS, min_size=1, max_size=4))
def test_fuzz_the_reader_never_raises_and_counts_each_inference_span_once(batch: list[dict[str, Any]]) -> None:
    from llmmeter.processor import LLMMeterSpanProcessor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider

    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(LLMMeterSpanProcessor(meter_provider=meter_provider))
    tracer = tracer_provider.get_tracer("fuzz")
    expected = 0
    for attrs in batch:
        clean = {k: v for k, v in attrs.items() if v is not None}
        span = tracer.start_span("x", attributes=clean)
        span.end()
        call = read_call(span)  # must not raise, whatever the attributes
        inference = is_inference(span.attributes)
        assert (call is not None) == inference
        if call is not None:
            expected += 1
            assert call.input_tokens is None or 0 <= call.input_tokens <= 10**12
            assert call.cost_usd is None or call.cost_usd >= 0
    data = reader.get_metrics_data()
    counted = 0.0
    for rm in data.resource_metrics if data else ():
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name == names.METRIC_REQUESTS:
                    counted += sum(p.value for p in metric.data.data_points)
    assert counted == expected
    tracer_provider.shutdown()
    meter_provider.shutdown()
