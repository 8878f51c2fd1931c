"""Anthropic-specific behaviour beyond the provider conformance suite (tests/conformance/).

Wire-format responses built here follow the Anthropic Messages API reference
(https://docs.anthropic.com/en/api/messages): ``usage.input_tokens`` excludes the cache,
``cache_creation_input_tokens`` / ``cache_read_input_tokens`` are separate, and
``usage.cache_creation`` = ``{ephemeral_5m_input_tokens, ephemeral_1h_input_tokens}`` splits cache writes
by TTL (reference, "Usage"; prompt-caching guide, "1-hour cache duration"). Streams: "Streaming Messages".
"""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest
from conformance.cases.anthropic import AWS_CREDS, CASSETTES, PROMPT, message, sse, stream_events
from conformance.framework import hand_cost, price_entry
from llmmeter import names
from llmmeter.call import REASON_STREAM_ABANDONED, REASON_STREAM_ERROR
from llmmeter.config import Settings, set_settings
from llmmeter.instrumentors.anthropic import AnthropicInstrumentor, normalize_usage
from llmmeter.pricing import price_usage
from llmmeter.usage import Usage
from opentelemetry.trace import StatusCode
from replay_server import ReplayServer, Reply, replay, scripted

SONNET_4 = "claude-sonnet-4-20250514"


@pytest.fixture
def tel(telemetry: Any) -> Iterator[Any]:
    instrumentor = AnthropicInstrumentor()
    instrumentor.instrument(tracer_provider=telemetry.tracer_provider)
    try:
        yield telemetry
    finally:
        instrumentor.uninstrument()


def client(server: Any) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.base_url, api_key="test-key", max_retries=0)


def one_span(tel: Any) -> dict[str, Any]:
    spans = [s for s in tel.llm_spans() if s.instrumentation_scope.name.startswith("llmmeter")]
    assert len(spans) == 1, [s.name for s in spans]
    return dict(spans[0].attributes or {})


# --- usage normalization and cache pricing ------------------------------------------------------------


def test_input_includes_cache_and_1h_writes_are_priced_at_their_own_rate(tel: Any) -> None:
    wire_usage = {
        "input_tokens": 12,
        "cache_read_input_tokens": 2000,
        "cache_creation_input_tokens": 3000,
        "cache_creation": {"ephemeral_5m_input_tokens": 1000, "ephemeral_1h_input_tokens": 2000},
        "output_tokens": 50,
    }
    with scripted(lambda request: Reply.json(message(wire_usage, SONNET_4))) as server, client(server) as c:
        result = c.messages.create(model=SONNET_4, max_tokens=64, messages=PROMPT)
    assert result.usage.input_tokens == 12  # the app sees Anthropic's own numbers, untouched
    attrs = one_span(tel)
    assert attrs[names.USAGE_INPUT_TOKENS] == 12 + 2000 + 3000  # semconv: input includes the cache
    assert attrs[names.USAGE_CACHE_READ_TOKENS] == 2000
    assert attrs[names.USAGE_CACHE_CREATION_TOKENS] == 3000
    assert attrs[names.LLMMETER_CACHE_WRITE_1H_TOKENS] == 2000
    assert attrs[names.USAGE_OUTPUT_TOKENS] == 50

    entry = price_entry(attrs[names.LLMMETER_PRICE_MODEL])
    rate_5m = entry["cache_creation_input_token_cost"]
    rate_1h = entry["cache_creation_input_token_cost_above_1hr"]
    assert rate_1h > rate_5m  # 1-hour writes cost more (2x vs 1.25x the input rate)
    by_hand = (
        12 * entry["input_cost_per_token"]
        + 2000 * entry["cache_read_input_token_cost"]
        + 1000 * rate_5m
        + 2000 * rate_1h
        + 50 * entry["output_cost_per_token"]
    )
    assert attrs[names.COST_USD] == pytest.approx(by_hand, rel=1e-12)
    all_5m = price_usage(names.PROVIDER_ANTHROPIC, SONNET_4, Usage(5012, 50, 2000, 3000, 0))
    assert attrs[names.COST_USD] - all_5m.usd == pytest.approx(2000 * (rate_1h - rate_5m), rel=1e-9)


def test_cache_read_is_priced_at_the_read_rate(tel: Any) -> None:
    # Second recording: the prompt is read from the cache (1163 tokens); input_tokens (4) excludes it.
    cassette = f"{CASSETTES}/test_prompt_caching/test_anthropic_prompt_caching_legacy.yaml"
    with replay(cassette, index=1) as server, client(server) as c:
        c.messages.create(model="claude-3-5-sonnet-20240620", max_tokens=1024, messages=PROMPT)
    attrs = one_span(tel)
    assert attrs[names.USAGE_INPUT_TOKENS] == 4 + 1163
    assert attrs[names.USAGE_CACHE_READ_TOKENS] == 1163
    assert names.USAGE_CACHE_CREATION_TOKENS not in attrs
    entry = price_entry(attrs[names.LLMMETER_PRICE_MODEL])
    assert entry["cache_read_input_token_cost"] < entry["input_cost_per_token"]
    by_hand = 4 * entry["input_cost_per_token"] + 1163 * entry["cache_read_input_token_cost"]
    by_hand += 202 * entry["output_cost_per_token"]
    assert attrs[names.COST_USD] == pytest.approx(by_hand, rel=1e-12)


def test_cache_write_in_a_stream_comes_from_message_start(tel: Any) -> None:
    cassette = f"{CASSETTES}/test_prompt_caching/test_anthropic_prompt_caching_stream_legacy.yaml"
    with replay(cassette, index=0) as server, client(server) as c:
        with c.messages.stream(model="claude-3-5-sonnet-20240620", max_tokens=1024, messages=PROMPT) as stream:
            text = stream.get_final_text()
    assert text
    attrs = one_span(tel)
    assert attrs[names.USAGE_INPUT_TOKENS] == 4 + 1165
    assert attrs[names.USAGE_CACHE_CREATION_TOKENS] == 1165
    assert attrs[names.USAGE_OUTPUT_TOKENS] == 201  # cumulative count of the last message_delta
    assert attrs[names.LLMMETER_ESTIMATED] is False
    entry = price_entry(attrs[names.LLMMETER_PRICE_MODEL])
    assert attrs[names.COST_USD] == pytest.approx(hand_cost(entry, Usage(1169, 201, 0, 1165)), rel=1e-12)


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        ({"input_tokens": 5, "output_tokens": 7}, Usage(5, 7)),
        (
            {
                "input_tokens": 5,
                "output_tokens": 7,
                "cache_creation": {"ephemeral_5m_input_tokens": 3, "ephemeral_1h_input_tokens": 4},
            },
            Usage(12, 7, 0, 7, 4),  # only the per-TTL breakdown: the write total is its sum
        ),
        (
            {"input_tokens": 5, "output_tokens": 9, "output_tokens_details": {"thinking_tokens": 6}},
            Usage(5, 9, reasoning=6),
        ),
        ({"input_tokens": "5", "output_tokens": -1, "cache_read_input_tokens": None}, Usage(None, None)),
    ],
)
def test_normalize_usage(wire: dict[str, Any], expected: Usage) -> None:
    unmeasured: list[str] = []
    assert normalize_usage(wire, unmeasured) == expected
    assert bool(unmeasured) == (expected.input is None)


# --- thinking ---------------------------------------------------------------------------------------


def test_thinking_tokens_stay_inside_output(tel: Any) -> None:
    with replay(f"{CASSETTES}/test_thinking/test_anthropic_thinking_legacy.yaml") as server, client(server) as c:
        c.messages.create(
            model="claude-3-7-sonnet-20250219",
            max_tokens=2048,
            thinking={"type": "enabled", "budget_tokens": 1024},
            messages=PROMPT,
        )
    attrs = one_span(tel)
    assert attrs[names.USAGE_OUTPUT_TOKENS] == 215
    assert names.USAGE_REASONING_TOKENS not in attrs  # the recording does not break thinking out


def test_thinking_stream(tel: Any) -> None:
    cassette = f"{CASSETTES}/test_thinking/test_anthropic_thinking_streaming_legacy.yaml"
    with replay(cassette) as server, client(server) as c:
        stream = c.messages.create(
            model="claude-3-7-sonnet-20250219",
            max_tokens=2048,
            thinking={"type": "enabled", "budget_tokens": 1024},
            messages=PROMPT,
            stream=True,
        )
        kinds = [event.type for event in stream]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    attrs = one_span(tel)
    assert (attrs[names.USAGE_INPUT_TOKENS], attrs[names.USAGE_OUTPUT_TOKENS]) == (52, 216)


# --- streams and helpers ------------------------------------------------------------------------------


def test_text_stream_helper_and_final_text(tel: Any) -> None:
    cassette = f"{CASSETTES}/test_messages/test_anthropic_text_stream_helper_method_legacy.yaml"
    with replay(cassette) as server, client(server) as c:
        with c.messages.stream(model="claude-3-5-haiku-20241022", max_tokens=64, messages=PROMPT) as stream:
            streamed = "".join(stream.text_stream)
            final = stream.get_final_text()
    assert streamed == final
    attrs = one_span(tel)
    # message_delta repeats the cumulative input count here; it replaces message_start's.
    assert (attrs[names.USAGE_INPUT_TOKENS], attrs[names.USAGE_OUTPUT_TOKENS]) == (11, 6)
    assert attrs[names.FINISH_REASONS] == ("end_turn",)
    assert attrs[names.RESPONSE_ID].startswith("msg_")
    assert attrs[names.LLMMETER_STREAM_CHUNKS] > 0


def test_stream_manager_until_done_without_with_exit(tel: Any) -> None:
    cassette = f"{CASSETTES}/test_messages/test_anthropic_sync_streaming_helper_methods_legacy.yaml"
    with replay(cassette) as server, client(server) as c:
        manager = c.messages.stream(model="claude-3-5-haiku-20241022", max_tokens=64, messages=PROMPT)
        stream = manager.__enter__()
        stream.until_done()  # the span ends at the end of the events, before any exit
        assert len(one_span(tel)) > 0
        manager.__exit__(None, None, None)
    assert one_span(tel)[names.USAGE_OUTPUT_TOKENS] == 6


def test_stream_manager_never_entered_sends_nothing_and_records_nothing(tel: Any) -> None:
    with scripted() as server, client(server) as c:
        c.messages.stream(model="claude-3-5-haiku-20241022", max_tokens=64, messages=PROMPT)
        gc.collect()
        assert server.requests == []
    assert tel.llm_spans() == []


def test_stream_dropped_unread_is_ended_by_gc(tel: Any) -> None:
    events = stream_events({"input_tokens": 9, "output_tokens": 1}, {"output_tokens": 5}, "claude-3-5-haiku-20241022")
    with scripted(lambda request: sse(events)) as server, client(server) as c:
        stream = c.messages.create(model="claude-3-5-haiku-20241022", max_tokens=64, messages=PROMPT, stream=True)
        next(iter(stream))
        del stream
        gc.collect()
    attrs = one_span(tel)
    assert attrs[names.USAGE_INPUT_TOKENS] == 9  # from message_start
    assert attrs[names.LLMMETER_ESTIMATED] is True  # output never arrived
    assert attrs[names.LLMMETER_ESTIMATED_REASON] == REASON_STREAM_ABANDONED


def test_error_event_mid_stream_reaches_the_app_and_ends_the_span(tel: Any) -> None:
    events = stream_events({"input_tokens": 9, "output_tokens": 1}, {"output_tokens": 5}, "claude-3-5-haiku-20241022")
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    with scripted(lambda request: sse([*events[:3], error])) as server, client(server) as c:
        with pytest.raises(anthropic.APIStatusError) as caught:
            with c.messages.stream(model="claude-3-5-haiku-20241022", max_tokens=64, messages=PROMPT) as stream:
                for _ in stream:
                    pass
    assert "Overloaded" in str(caught.value)
    spans = [s for s in tel.llm_spans() if s.instrumentation_scope.name.startswith("llmmeter")]
    assert len(spans) == 1
    attrs = dict(spans[0].attributes or {})
    assert attrs[names.ERROR_TYPE] == "anthropic.APIStatusError"
    assert attrs[names.LLMMETER_ESTIMATED_REASON] == REASON_STREAM_ERROR
    assert attrs[names.USAGE_INPUT_TOKENS] == 9
    assert spans[0].status.status_code is StatusCode.ERROR


# --- platforms, raw responses, content, SDK's own tracing ------------------------------------------------


def test_bedrock_beta_with_raw_response(tel: Any) -> None:
    cassette = f"{CASSETTES}/test_bedrock_with_raw_response/test_async_anthropic_bedrock_beta_with_raw_response.yaml"

    async def run(base_url: str) -> Any:
        c = anthropic.AsyncAnthropicBedrock(base_url=base_url, max_retries=0, **AWS_CREDS)
        try:
            raw = await c.beta.messages.with_raw_response.create(
                model="anthropic.claude-3-haiku-20240307-v1:0", max_tokens=1024, messages=PROMPT
            )
            return await raw.parse(), raw
        finally:
            await c.close()

    with replay(cassette) as server:
        parsed, _raw = asyncio.run(run(server.base_url))
        sent = server.requests[0]
    assert sent.headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDLLMMETERTEST/")
    assert sent.path == "/model/anthropic.claude-3-haiku-20240307-v1:0/invoke"
    assert parsed.usage.output_tokens == 158
    attrs = one_span(tel)
    assert attrs[names.PROVIDER] == names.PROVIDER_AWS_BEDROCK
    assert (attrs[names.USAGE_INPUT_TOKENS], attrs[names.USAGE_OUTPUT_TOKENS]) == (17, 158)
    assert attrs[names.LLMMETER_PRICED] is True


def test_content_is_captured_only_when_opted_in(tel: Any) -> None:
    cassette = f"{CASSETTES}/test_messages/test_anthropic_message_create_legacy.yaml"
    try:
        for capture in (False, True):
            set_settings(Settings(capture_content=capture))
            tel.exporter.clear()
            with replay(cassette) as server, client(server) as c:
                result = c.messages.create(
                    model="claude-3-opus-20240229", max_tokens=1024, messages=PROMPT, system="Be brief."
                )
            attrs = one_span(tel)
            if not capture:
                assert not set(names.CONTENT_ATTRIBUTES) & set(attrs)
                continue
            assert json.loads(attrs[names.INPUT_MESSAGES])[0]["parts"][0]["content"] == PROMPT[0]["content"]
            assert json.loads(attrs[names.SYSTEM_INSTRUCTIONS])[0]["content"] == "Be brief."
            output = json.loads(attrs[names.OUTPUT_MESSAGES])[0]
            assert output["parts"][0]["content"] == result.content[0].text
    finally:
        set_settings(None)
    assert "test-key" not in json.dumps(attrs)


def test_sdk_own_tracing_is_not_counted_twice(tel: Any) -> None:
    """anthropic >= 2 emits its own GenAI CLIENT span per call; with llmmeter's span around it, the call
    is still counted once in llmmeter's metrics."""
    cassette = f"{CASSETTES}/test_messages/test_anthropic_message_create_legacy.yaml"
    with ReplayServer(cassette) as server:
        c = anthropic.Anthropic(
            base_url=server.base_url,
            api_key="test-key",
            max_retries=0,
            open_telemetry={"tracer_provider": tel.tracer_provider},
        )
        with c:
            c.messages.create(model="claude-3-opus-20240229", max_tokens=1024, messages=PROMPT)
    scopes = sorted(s.instrumentation_scope.name for s in tel.llm_spans())
    assert scopes == ["com.anthropic.sdk.python", "llmmeter.instrumentors.anthropic"]
    sdk_span = next(s for s in tel.llm_spans() if s.instrumentation_scope.name.startswith("com.anthropic"))
    ours = next(s for s in tel.llm_spans() if s.instrumentation_scope.name.startswith("llmmeter"))
    assert sdk_span.parent is not None and sdk_span.parent.span_id == ours.context.span_id
    assert tel.metric_total(names.METRIC_REQUESTS) == 1
    assert tel.metric_total(names.METRIC_TOKENS, **{names.LABEL_TOKEN_TYPE: "output"}) == 220
