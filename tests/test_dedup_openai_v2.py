"""One OpenAI call wrapped by both llmmeter and the official openai-v2 instrumentor is counted once.

Both instrumentors wrap ``Completions.create`` (wrapt stacks the wrappers: the one instrumented last is
the outer one), so one ``create()`` produces two nested CLIENT ``chat`` spans. Users really run this
combination: ``opentelemetry-instrument`` loads every installed ``opentelemetry_instrumentor`` entry point.
The real openai SDK talks HTTP to a scripted OpenAI-wire server on 127.0.0.1; both instrumentation orders,
plain and streamed responses. ``llmmeter.requests`` must be 1 and ``llmmeter.tokens`` must equal the
response's usage exactly once, while both spans are still exported.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest
from conftest import Telemetry
from llmmeter import names
from llmmeter.instrumentors.openai import OpenAIInstrumentor as LLMMeterInstrumentor
from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor as OfficialInstrumentor
from replay_server import RecordedRequest, Reply, ScriptedServer, scripted

MODEL = "gpt-4o-mini"
RESPONSE_MODEL = "gpt-4o-mini-2024-07-18"
# Distinct, non-round figures: a count taken twice (or from the wrong place) cannot match by accident.
INPUT_TOKENS, CACHED_TOKENS, OUTPUT_TOKENS = 37, 0, 11
USAGE = {
    "prompt_tokens": INPUT_TOKENS,
    "completion_tokens": OUTPUT_TOKENS,
    "total_tokens": INPUT_TOKENS + OUTPUT_TOKENS,
    "prompt_tokens_details": {"cached_tokens": CACHED_TOKENS},
    "completion_tokens_details": {"reasoning_tokens": 0},
}
WORDS = ["Deduplicated", " counts", " are", " the", " only", " honest", " counts", "."]

LLMMETER_SCOPE = "llmmeter.instrumentors.openai"
# openai-v2 2.4b0 makes its spans through opentelemetry-util-genai's TelemetryHandler, under that scope.
OFFICIAL_SCOPE = "opentelemetry.util.genai.handler"


def _chunk(choices: list[Any], usage: Any = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-dedup",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": RESPONSE_MODEL,
        "choices": choices,
        "usage": usage,
    }


def _reply(request: RecordedRequest) -> Reply:
    body = request.json if isinstance(request.json, dict) else {}
    if body.get("stream"):
        events = [_chunk([{"index": 0, "delta": {"content": w}, "finish_reason": None}]) for w in WORDS]
        events.append(_chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}]))
        events.append(_chunk([], USAGE))
        return Reply.sse(events)
    return Reply.json(
        {
            "id": "chatcmpl-dedup",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": RESPONSE_MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(WORDS)},
                    "finish_reason": "stop",
                }
            ],
            "usage": USAGE,
        }
    )


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with scripted(_reply) as running:
        yield running


@pytest.fixture(params=["openai_v2_first", "llmmeter_first"])
def both_instrumented(request: pytest.FixtureRequest, telemetry: Telemetry) -> Iterator[str]:
    """Both instrumentors on the telemetry fixture's providers, in the order the param names.

    ``unwrap`` removes whichever wrapper is outermost, so they are uninstrumented in reverse order.
    """
    official, ours = OfficialInstrumentor(), LLMMeterInstrumentor()
    providers = {"tracer_provider": telemetry.tracer_provider, "meter_provider": telemetry.meter_provider}
    order = [official, ours] if request.param == "openai_v2_first" else [ours, official]
    for instrumentor in order:
        instrumentor.instrument(**providers)
    try:
        yield request.param
    finally:
        for instrumentor in reversed(order):
            instrumentor.uninstrument()


def _client(server: ScriptedServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key="test-key", max_retries=0)


def _scope(span: Any) -> str:
    return span.instrumentation_scope.name if span.instrumentation_scope is not None else ""


def _assert_counted_once(telemetry: Telemetry, order: str) -> None:
    spans = telemetry.llm_spans()
    # Both instrumentors really wrapped the call (otherwise "counted once" would prove nothing) ...
    assert sorted(_scope(s) for s in spans) == sorted([LLMMETER_SCOPE, OFFICIAL_SCOPE])
    outer_scope = LLMMETER_SCOPE if order == "openai_v2_first" else OFFICIAL_SCOPE
    outer = next(s for s in spans if _scope(s) == outer_scope)
    inner = next(s for s in spans if _scope(s) != outer_scope)
    # ... nested as one request: the inner span's parent is the outer span.
    assert inner.parent is not None and inner.parent.span_id == outer.context.span_id
    assert inner.context.trace_id == outer.context.trace_id

    # ... and the metrics count that request once, with the response's usage once.
    assert telemetry.metric_total(names.METRIC_REQUESTS) == 1
    assert telemetry.metric_total(names.METRIC_REQUESTS, **{names.LABEL_STATUS: "ok"}) == 1
    tokens = {
        kind: telemetry.metric_total(names.METRIC_TOKENS, **{names.LABEL_TOKEN_TYPE: kind})
        for kind in names.TOKEN_TYPES
    }
    assert tokens == {"input": INPUT_TOKENS, "output": OUTPUT_TOKENS, "cache_read": 0, "cache_creation": 0,
                      "reasoning": 0}
    assert telemetry.metric_total(names.METRIC_TOKENS) == INPUT_TOKENS + OUTPUT_TOKENS
    # llmmeter's span (exact usage, priced) is the one counted, whichever wrapper is outside.
    ours = next(s for s in spans if _scope(s) == LLMMETER_SCOPE)
    assert ours.attributes[names.USAGE_INPUT_TOKENS] == INPUT_TOKENS
    assert ours.attributes[names.USAGE_OUTPUT_TOKENS] == OUTPUT_TOKENS
    expected_cost = ours.attributes.get(names.COST_USD, 0.0)
    assert telemetry.metric_total(names.METRIC_COST) == pytest.approx(expected_cost)
    assert sum(row.calls for row in telemetry.processor.tally.rows().values()) == 1


def test_chat_call_counted_once(telemetry: Telemetry, both_instrumented: str, server: ScriptedServer) -> None:
    response = _client(server).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "count me once"}]
    )
    assert response.usage is not None and response.usage.prompt_tokens == INPUT_TOKENS  # the app's view unchanged
    assert len(server.requests) == 1
    _assert_counted_once(telemetry, both_instrumented)


def test_streamed_call_counted_once(telemetry: Telemetry, both_instrumented: str, server: ScriptedServer) -> None:
    stream = _client(server).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "count me once"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "".join(WORDS)
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == OUTPUT_TOKENS
    assert len(server.requests) == 1
    _assert_counted_once(telemetry, both_instrumented)


def test_sequential_calls_each_counted_once(
    telemetry: Telemetry, both_instrumented: str, server: ScriptedServer
) -> None:
    """Pending-group bookkeeping is released after each call: three calls count three, not 3x2 or 0."""
    client = _client(server)
    for _ in range(3):
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "again"}])
    assert len(telemetry.llm_spans()) == 6
    assert telemetry.metric_total(names.METRIC_REQUESTS) == 3
    assert telemetry.metric_total(names.METRIC_TOKENS, **{names.LABEL_TOKEN_TYPE: "input"}) == 3 * INPUT_TOKENS
    assert telemetry.processor._groups == {} and telemetry.processor._group_of == {}
