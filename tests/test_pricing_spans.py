"""How a call was priced, end to end: the real SDKs over HTTP against a local server, llmmeter's span
attributes and metrics (issue 12 items 3, 5, 6). Rates come from test entries added with pricing.extend()
(written out below), so every expected figure is worked out by hand from them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest
from conformance.cases.anthropic import message
from conformance.cases.google_genai import response_body
from google import genai
from google.genai import types
from llmmeter import hooks, names, pricing
from llmmeter.instrumentors.anthropic import AnthropicInstrumentor
from llmmeter.instrumentors.google_genai import GoogleGenAIInstrumentor
from llmmeter.instrumentors.openai import OpenAIInstrumentor
from replay_server import Reply, scripted

RATES = {
    # $2.50 / $15 per M, cache read $0.25; flex $1.25 / $7.50, read $0.13; audio in $40, audio out $80
    "tier-test-gpt": {
        "input_cost_per_token": 2.5e-06, "output_cost_per_token": 1.5e-05, "cache_read_input_token_cost": 2.5e-07,
        "input_cost_per_token_flex": 1.25e-06, "output_cost_per_token_flex": 7.5e-06,
        "cache_read_input_token_cost_flex": 1.3e-07,
        "input_cost_per_audio_token": 4e-05, "output_cost_per_audio_token": 8e-05, "mode": "chat",
    },
    # $3 / $15 per M, read $0.30, 5-minute write $3.75, 1-hour write $6, batch $1.50 / $7.50
    "claude-test-model": {
        "input_cost_per_token": 3e-06, "output_cost_per_token": 1.5e-05, "cache_read_input_token_cost": 3e-07,
        "cache_creation_input_token_cost": 3.75e-06, "cache_creation_input_token_cost_above_1hr": 6e-06,
        "input_cost_per_token_batches": 1.5e-06, "output_cost_per_token_batches": 7.5e-06,
        "cache_read_input_token_cost_batches": 1.5e-07, "mode": "chat",
    },
    # Gemini-2.5-Flash-like: text/image $0.30 in, $2.50 out, audio in $1.00 per M
    "gemini-test-flash": {
        "input_cost_per_token": 3e-07, "output_cost_per_token": 2.5e-06, "input_cost_per_audio_token": 1e-06,
        "mode": "chat",
    },
}


@pytest.fixture(autouse=True)
def _prices(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for var in ("LLMMETER_PRICE_FILE", "LLMMETER_MODEL_ALIASES", "LLMMETER_DISCOUNTS"):
        monkeypatch.delenv(var, raising=False)
    pricing._reset_for_tests()
    pricing.extend(RATES)
    yield
    pricing._reset_for_tests()


@pytest.fixture
def tel(telemetry: Any) -> Iterator[Any]:
    instrumentors = [OpenAIInstrumentor(), AnthropicInstrumentor(), GoogleGenAIInstrumentor()]
    for instrumentor in instrumentors:
        instrumentor.instrument(tracer_provider=telemetry.tracer_provider)
    try:
        yield telemetry
    finally:
        for instrumentor in instrumentors:
            instrumentor.uninstrument()


def one_span(tel: Any) -> dict[str, Any]:
    spans = [s for s in tel.llm_spans() if s.instrumentation_scope.name.startswith("llmmeter")]
    assert len(spans) == 1, [s.name for s in spans]
    return dict(spans[0].attributes or {})


def chat_body(usage: dict[str, Any], model: str = "tier-test-gpt", **extra: Any) -> dict[str, Any]:
    """A Chat Completions response body (OpenAI API reference, "The chat completion object")."""
    return {"id": "chatcmpl-test", "object": "chat.completion", "created": 1764300000, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}, "finish_reason": "stop"}],
            "usage": usage, **extra}


def openai_call(body: dict[str, Any], model: str = "tier-test-gpt") -> None:
    with scripted(lambda request: Reply.json(body)) as server:
        client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="test-key", max_retries=0)
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])


def test_openai_flex_tier_audio_tokens_and_the_span_says_which_rate(tel: Any) -> None:
    usage = {"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500,
             "prompt_tokens_details": {"cached_tokens": 200, "audio_tokens": 100},
             "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 50}}
    openai_call(chat_body(usage, service_tier="flex"))
    attrs = one_span(tel)
    # flex: text in 700 x $1.25/M = 0.000875; audio in 100 x $40/M = 0.004 (no flex audio rate: the flex
    # tier's input fallback is the audio rate); cache read 200 x $0.13/M = 0.000026;
    # text out 450 x $7.50/M = 0.003375; audio out 50 x $80/M = 0.004
    assert attrs[names.COST_USD] == pytest.approx(0.000875 + 0.004 + 0.000026 + 0.003375 + 0.004)
    assert attrs[names.OPENAI_RESPONSE_SERVICE_TIER] == "flex"  # what OpenAI said (not repeated by llmmeter)
    assert attrs[names.LLMMETER_PRICE_SERVICE_TIER] == "flex"  # the rates used
    assert attrs[names.COST_SOURCE] == names.COST_SOURCE_LOCAL
    assert attrs[names.LLMMETER_AUDIO_INPUT_TOKENS] == 100 and attrs[names.LLMMETER_AUDIO_OUTPUT_TOKENS] == 50


def test_openrouter_reported_cost_is_used_and_marked(tel: Any) -> None:
    usage = {"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500, "cost": 0.0123}
    openai_call(chat_body(usage, model="some-vendor/unlisted-model"), model="some-vendor/unlisted-model")
    attrs = one_span(tel)
    assert attrs[names.COST_USD] == 0.0123
    assert attrs[names.COST_SOURCE] == names.COST_SOURCE_PROVIDER
    assert tel.metric_total(names.METRIC_COST) == pytest.approx(0.0123)


def test_litellm_proxy_cost_header_with_raw_response(tel: Any) -> None:
    # A LiteLLM proxy prices the call itself and says so in x-litellm-response-cost (LiteLLM docs, "Response
    # Headers"); the SDK exposes headers on with_raw_response results.
    body = chat_body({"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500})
    reply = Reply(200, [("Content-Type", "application/json"), ("x-litellm-response-cost", "0.00042")],
                  json.dumps(body).encode())
    with scripted(lambda request: reply) as server:
        client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="test-key", max_retries=0)
        raw = client.chat.completions.with_raw_response.create(model="tier-test-gpt",
                                                               messages=[{"role": "user", "content": "hi"}])
        assert raw.parse().usage.prompt_tokens == 1000  # the app's own parse still works
    attrs = one_span(tel)
    assert attrs[names.COST_USD] == 0.00042 and attrs[names.COST_SOURCE] == names.COST_SOURCE_PROVIDER


def test_discount_is_applied_and_visible(tel: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMMETER_DISCOUNTS", "openai=0.8")
    pricing._reset_for_tests()
    pricing.extend(RATES)
    openai_call(chat_body({"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500}))
    attrs = one_span(tel)
    assert attrs[names.COST_USD] == pytest.approx((0.0025 + 0.0075) * 0.8)  # list 1000 x $2.50/M + 500 x $15/M
    assert attrs[names.LLMMETER_PRICE_DISCOUNT] == 0.8
    assert names.LLMMETER_PRICE_SERVICE_TIER not in attrs  # no tier reported: standard rates, nothing to say


def test_unknown_model_says_why_it_is_unpriced(tel: Any) -> None:
    openai_call(chat_body({"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}, model="nobody-knows"),
                model="nobody-knows")
    attrs = one_span(tel)
    assert attrs[names.LLMMETER_PRICED] is False
    assert attrs[names.LLMMETER_UNPRICED_REASON] == "unknown_model"


def test_anthropic_cache_economics_metrics(tel: Any) -> None:
    wire = {"input_tokens": 12, "cache_read_input_tokens": 2000, "cache_creation_input_tokens": 3000,
            "cache_creation": {"ephemeral_5m_input_tokens": 1000, "ephemeral_1h_input_tokens": 2000},
            "output_tokens": 50, "service_tier": "standard"}
    with scripted(lambda request: Reply.json(message(wire, "claude-test-model"))) as server:
        client = anthropic.Anthropic(base_url=server.base_url, api_key="test-key", max_retries=0)
        client.messages.create(model="claude-test-model", max_tokens=100, messages=[{"role": "user", "content": "hi"}])
    attrs = one_span(tel)
    # reads saved 2000 x ($3 - $0.30)/M = 0.0054; writes cost 1000 x ($3.75 - $3)/M + 2000 x ($6 - $3)/M
    # = 0.00075 + 0.006 above uncached input
    assert attrs[names.LLMMETER_CACHE_SAVINGS] == pytest.approx(0.0054)
    assert attrs[names.LLMMETER_CACHE_WRITE_PREMIUM] == pytest.approx(0.00675)
    assert tel.metric_total(names.METRIC_CACHE_SAVINGS, **{names.REQUEST_MODEL: "claude-test-model"}) == \
        pytest.approx(0.0054)
    assert tel.metric_total(names.METRIC_CACHE_WRITE_PREMIUM) == pytest.approx(0.00675)


def test_anthropic_batch_tier_from_the_response(tel: Any) -> None:
    wire = {"input_tokens": 2000, "output_tokens": 1000, "service_tier": "batch"}
    with scripted(lambda request: Reply.json(message(wire, "claude-test-model"))) as server:
        client = anthropic.Anthropic(base_url=server.base_url, api_key="test-key", max_retries=0)
        client.messages.create(model="claude-test-model", max_tokens=1000, messages=[{"role": "user", "content": "x"}])
    attrs = one_span(tel)
    assert attrs[names.COST_USD] == pytest.approx(2000 * 1.5e-06 + 1000 * 7.5e-06)  # 0.003 + 0.0075
    assert attrs[names.LLMMETER_PRICE_SERVICE_TIER] == "batch"
    assert attrs[names.LLMMETER_SERVICE_TIER] == "batch"  # Anthropic has no semconv attribute for it


def test_gemini_audio_modality_at_its_own_rate(tel: Any) -> None:
    usage = {"promptTokenCount": 150, "candidatesTokenCount": 20, "totalTokenCount": 170,
             "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 50}, {"modality": "AUDIO", "tokenCount": 100}]}
    body = {**response_body(usage), "modelVersion": "gemini-test-flash"}
    with scripted(lambda request: Reply.json(body)) as server:
        client = genai.Client(api_key="test-key", http_options=types.HttpOptions(base_url=server.base_url))
        client.models.generate_content(model="gemini-test-flash", contents="hi")
    attrs = one_span(tel)
    # text 50 x $0.30/M + audio 100 x $1.00/M + out 20 x $2.50/M = 0.000015 + 0.0001 + 0.00005
    assert attrs[names.COST_USD] == pytest.approx(0.000165)
    assert attrs[names.LLMMETER_AUDIO_INPUT_TOKENS] == 100


def test_estimate_error_histogram(tel: Any) -> None:
    def estimate_before(request: Any, span: Any) -> None:
        request.estimated_input = 18  # what a budget's pre-call estimate said

    hooks.register_before_call(estimate_before)
    try:
        openai_call(chat_body({"prompt_tokens": 15, "completion_tokens": 5, "total_tokens": 20}))
    finally:
        hooks.BEFORE_CALL.remove(estimate_before)
    attrs = one_span(tel)
    assert attrs[names.LLMMETER_ESTIMATE_INPUT_TOKENS] == 18
    (point,) = tel.metric_points(names.METRIC_ESTIMATE_ERROR)
    assert point.count == 1 and point.sum == pytest.approx(18 / 15)  # 20 % high
    assert dict(point.attributes) == {names.PROVIDER: "openai", names.REQUEST_MODEL: "tier-test-gpt"}


def test_price_table_age_gauge(tel: Any) -> None:
    import time
    from datetime import UTC, datetime

    published = datetime(2026, 11, 28, tzinfo=UTC).timestamp()  # the shipped table's _meta.version
    pricing._reset_for_tests()
    pricing.get_price_table()
    before = time.time()
    (point,) = tel.metric_points(names.METRIC_PRICE_TABLE_AGE)
    after = time.time()
    assert before - published <= point.value <= after - published


def test_priority_tier_without_priority_rates_is_shown_as_standard(tel: Any) -> None:
    # claude-test-model has batch rates but no priority ones: the span shows the mismatch instead of hiding it
    wire = {"input_tokens": 1000, "output_tokens": 100, "service_tier": "priority"}
    with scripted(lambda request: Reply.json(message(wire, "claude-test-model"))) as server:
        client = anthropic.Anthropic(base_url=server.base_url, api_key="test-key", max_retries=0)
        client.messages.create(model="claude-test-model", max_tokens=100, messages=[{"role": "user", "content": "x"}])
    attrs = one_span(tel)
    assert attrs[names.LLMMETER_SERVICE_TIER] == "priority"
    assert attrs[names.LLMMETER_PRICE_SERVICE_TIER] == "standard"
    assert attrs[names.COST_USD] == pytest.approx(1000 * 3e-06 + 100 * 1.5e-05)


def test_foreign_span_cache_economics(telemetry: Any) -> None:
    # Another instrumentor's span (semconv names, no llmmeter cost on it) is priced by the span reader: the cache
    # metrics come out the same as for llmmeter's own spans.
    from opentelemetry.trace import SpanKind

    tracer = telemetry.tracer_provider.get_tracer("some.other.instrumentation")
    span = tracer.start_span("chat claude-test-model", kind=SpanKind.CLIENT, attributes={
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "anthropic",
        "gen_ai.request.model": "claude-test-model", "gen_ai.usage.input_tokens": 10_000,
        "gen_ai.usage.output_tokens": 100, "gen_ai.usage.cache_read.input_tokens": 6000,
        "gen_ai.usage.cache_creation.input_tokens": 2000,
    })
    span.end()
    # reads saved 6000 x ($3 - $0.30)/M = 0.0162; 5-minute writes cost 2000 x ($3.75 - $3)/M = 0.0015 more
    assert telemetry.metric_total(names.METRIC_CACHE_SAVINGS) == pytest.approx(0.0162)
    assert telemetry.metric_total(names.METRIC_CACHE_WRITE_PREMIUM) == pytest.approx(0.0015)
