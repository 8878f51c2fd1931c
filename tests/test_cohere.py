"""Cohere v2 specifics beyond the conformance suite: a streamed tool-call turn is priced on billed units
(62 in / 28 out), not on the processed tokens (968 / 83) the same event reports; and a response without
billed units falls back to the processed tokens, saying so on the span.

Recordings: tests/cassettes/cohere/ (NOTICE.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import cohere
import pytest
from conformance.cases.cohere import malformed_reply
from llmmeter import names
from llmmeter.instrumentors.cohere import NOTE_UNBILLED, CohereInstrumentor
from llmmeter.pricing import price_usage
from llmmeter.usage import Usage
from replay_server import replay, scripted

PARAMETERS = {"type": "object", "properties": {"location": {"type": "string"}}}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": PARAMETERS}}]


@pytest.fixture
def meter(telemetry: Any) -> Iterator[Any]:
    instrumentor = CohereInstrumentor()
    instrumentor.instrument(tracer_provider=telemetry.tracer_provider)
    try:
        yield telemetry
    finally:
        instrumentor.uninstrument()


def test_streamed_tool_calls_are_priced_on_billed_units(meter: Any) -> None:
    with replay("cohere/test_cohere_v2_chat_legacy_with_tool_calls_and_streaming.yaml") as server:
        client = cohere.ClientV2(api_key="test-key", base_url=server.base_url)
        events = list(client.chat_stream(
            model="command-r", messages=[{"role": "user", "content": "What is the weather in Tokyo?"}], tools=TOOLS
        ))
    end = events[-1]
    assert end.type == "message-end" and end.delta.usage.tokens.input_tokens == 968
    (span,) = meter.llm_spans()
    attrs = dict(span.attributes or {})
    assert (attrs[names.USAGE_INPUT_TOKENS], attrs[names.USAGE_OUTPUT_TOKENS]) == (62, 28)
    assert attrs[names.FINISH_REASONS] == ("tool_call",)
    expected = price_usage(names.PROVIDER_COHERE, "command-r", Usage(input=62, output=28))
    assert attrs[names.COST_USD] == pytest.approx(expected.usd, rel=1e-12)


def test_missing_billed_units_fall_back_to_tokens(meter: Any) -> None:
    with scripted(lambda request: malformed_reply({"tokens": {"input_tokens": 69, "output_tokens": 89}})) as server:
        cohere.ClientV2(api_key="test-key", base_url=server.base_url).chat(
            model="command", messages=[{"role": "user", "content": "hi"}]
        )
    attrs = dict(meter.llm_spans()[0].attributes or {})
    assert (attrs[names.USAGE_INPUT_TOKENS], attrs[names.USAGE_OUTPUT_TOKENS]) == (69, 89)
    assert NOTE_UNBILLED in attrs[names.LLMMETER_UNMEASURED]
    assert attrs[names.LLMMETER_ESTIMATED] is False
