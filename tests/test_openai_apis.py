"""Responses API, embeddings, legacy completions and raw responses through llmmeter (real openai SDK,
real HTTP, recorded traffic), and how close llmmeter's token estimates come to what OpenAI billed."""

from __future__ import annotations

import asyncio
import json

import openai
import pytest
from llmmeter import config, estimate, names
from llmmeter.instrumentors.openai import OpenAIInstrumentor
from llmmeter.pricing import get_price_table
from pydantic import BaseModel
from replay_server import Reply, load_cassette, replay, scripted

RESPONSES = "openai/tests/traces/cassettes/test_responses/test_responses.yaml"
RESPONSES_REASONING = "openai/tests/traces/cassettes/test_responses/test_responses_reasoning.yaml"
RESPONSES_PARSE = "openai/tests/traces/cassettes/test_responses/test_responses_parse.yaml"
EMBEDDINGS = "openai/tests/traces/cassettes/test_embeddings/test_embeddings.yaml"
EMBEDDINGS_RAW = "openai/tests/traces/cassettes/test_embeddings/test_embeddings_with_raw_response.yaml"
COMPLETION = "openai/tests/traces/cassettes/test_completions/test_completion.yaml"
CHAT = "openai/tests/traces/cassettes/test_chat/test_chat.yaml"
CHAT_REASONING = "openai/tests/traces/cassettes/test_chat/test_chat_reasoning.yaml"
CACHING = "openai/tests/traces/cassettes/test_prompt_caching/test_openai_prompt_caching.yaml"
AZURE = "openai/tests/traces/cassettes/test_azure/test_chat.yaml"
JOKE = "Tell me a joke about opentelemetry"


@pytest.fixture(scope="module", autouse=True)
def _tokenizer() -> None:
    estimate.warm_up(wait=True)


@pytest.fixture
def instrumented(telemetry):
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=telemetry.tracer_provider)
    yield telemetry
    instrumentor.uninstrument()


def client(server, cls=openai.OpenAI):
    return cls(base_url=server.base_url + "/v1", api_key="test-key", max_retries=0)


def only_span(telemetry):
    spans = telemetry.llm_spans()
    assert len(spans) == 1, [s.name for s in spans]
    return spans[0]


def rates(provider: str, model: str):
    resolved = get_price_table().resolve(provider, model)
    assert resolved is not None, f"the shipped price table has no {provider}/{model}"
    return resolved[1]


def test_responses_create_exact_tokens_and_cost(instrumented):
    with replay(RESPONSES, index=1) as server:
        result = client(server).responses.create(model="gpt-4.1-nano", input="What is the capital of France?")
    assert result.output_text == "The capital of France is Paris."
    span = only_span(instrumented)
    attrs = span.attributes
    assert span.name == "chat gpt-4.1-nano"
    assert attrs[names.OPERATION] == "chat"
    assert (attrs[names.USAGE_INPUT_TOKENS], attrs[names.USAGE_OUTPUT_TOKENS]) == (14, 8)
    assert attrs[names.FINISH_REASONS] == ("stop",)
    assert attrs[names.RESPONSE_ID] == result.id
    assert attrs[names.OPENAI_RESPONSE_SERVICE_TIER] == "default"
    entry = rates("openai", "gpt-4.1-nano-2025-04-14")
    assert attrs[names.COST_USD] == pytest.approx(14 * entry.input + 8 * entry.output, rel=1e-9)


def test_responses_reasoning_tokens(instrumented):
    async def call(server):
        async with client(server, openai.AsyncOpenAI) as aclient:
            return await aclient.responses.create(
                model="gpt-5-nano", input="Count r's in strawberry", reasoning={"effort": "low"}
            )

    with replay(RESPONSES_REASONING, index=1) as server:
        asyncio.run(call(server))
    attrs = only_span(instrumented).attributes
    assert (attrs[names.USAGE_INPUT_TOKENS], attrs[names.USAGE_OUTPUT_TOKENS]) == (11, 131)
    assert attrs[names.USAGE_REASONING_TOKENS] == 64


def test_responses_parse(instrumented):
    with replay(RESPONSES_PARSE) as server:
        request = server.interaction(0).request_json
        schema = request["text"]["format"]["schema"]
        fields = {
            name: (str if spec.get("type") == "string" else object) for name, spec in schema["properties"].items()
        }
        model_cls = type("Parsed", (BaseModel,), {"__annotations__": fields})
        result = client(server).responses.parse(model="gpt-4.1-nano", input=request["input"], text_format=model_cls)
    assert result.output_parsed is not None
    usage = server.interaction(0).response_json["usage"]
    attrs = only_span(instrumented).attributes
    assert (attrs[names.USAGE_INPUT_TOKENS], attrs[names.USAGE_OUTPUT_TOKENS]) == (
        usage["input_tokens"],
        usage["output_tokens"],
    )


def test_embeddings(instrumented):
    with replay(EMBEDDINGS, index=0) as server:
        result = client(server).embeddings.create(model="text-embedding-ada-002", input=JOKE)
    assert len(result.data[0].embedding) == 1536
    span = only_span(instrumented)
    attrs = span.attributes
    assert span.name == "embeddings text-embedding-ada-002"
    assert attrs[names.OPERATION] == "embeddings"
    assert (attrs[names.USAGE_INPUT_TOKENS], attrs[names.USAGE_OUTPUT_TOKENS]) == (8, 0)
    assert attrs[names.LLMMETER_ESTIMATED] is False
    entry = rates("openai", "text-embedding-ada-002")
    assert attrs[names.COST_USD] == pytest.approx(8 * entry.input, rel=1e-9)


def test_embeddings_with_raw_response_keeps_the_apps_parse(instrumented):
    with replay(EMBEDDINGS_RAW, index=1) as server:
        raw = client(server).embeddings.with_raw_response.create(
            model="text-embedding-ada-002", input=JOKE, encoding_format="base64"
        )
    assert raw.http_response.status_code == 200
    parsed = raw.parse()
    assert parsed is raw.parse()  # the SDK's cache: llmmeter's read did not change what the app gets
    assert parsed.usage.prompt_tokens == 8
    attrs = only_span(instrumented).attributes
    assert attrs[names.USAGE_INPUT_TOKENS] == 8
    assert attrs[names.REQUEST_ENCODING_FORMATS] == ("base64",)
    assert attrs[names.LLMMETER_ESTIMATED] is False


def test_raw_streaming_response_is_marked_unmeasured(instrumented):
    with replay("openai/tests/traces/cassettes/test_chat/test_chat_async_streaming.yaml", index=0) as server:
        raw = client(server).chat.completions.with_raw_response.create(
            model="gpt-3.5-turbo", messages=[{"role": "user", "content": JOKE}], stream=True
        )
        chunks = list(raw.parse())  # the app's stream is untouched (not proxied)
    assert chunks and isinstance(chunks[0], openai.types.chat.ChatCompletionChunk)
    attrs = only_span(instrumented).attributes
    assert "raw_streaming_response" in attrs[names.LLMMETER_UNMEASURED]
    assert attrs[names.LLMMETER_ESTIMATED] is True


def test_legacy_completions(instrumented):
    with replay(COMPLETION, index=0) as server:
        result = client(server).completions.create(model="davinci-002", prompt=JOKE)
    assert result.choices[0].text
    span = only_span(instrumented)
    attrs = span.attributes
    assert span.name == "text_completion davinci-002"
    assert attrs[names.OPERATION] == "text_completion"
    assert (attrs[names.USAGE_INPUT_TOKENS], attrs[names.USAGE_OUTPUT_TOKENS]) == (8, 16)
    entry = rates("openai", "davinci-002")
    assert attrs[names.COST_USD] == pytest.approx(8 * entry.input + 16 * entry.output, rel=1e-9)


# --- estimate accuracy: serve a recording without its usage, compare with what OpenAI billed ------------


def _chat_call(sdk, request):
    kwargs = {k: v for k, v in request.items() if k in ("model", "messages", "reasoning_effort")}
    return sdk.chat.completions.create(**kwargs)


def _responses_call(sdk, request):
    return sdk.responses.create(model=request["model"], input=request["input"])


def _completion_call(sdk, request):
    return sdk.completions.create(model=request["model"], prompt=request["prompt"])


def _embedding_call(sdk, request):
    return sdk.embeddings.create(model=request["model"], input=request["input"])


# (cassette, interaction, call, usage field names, check output too). Output is not compared for
# reasoning models: their hidden reasoning tokens are billed but never sent.
ESTIMATE_CASES = [
    (CHAT, 1, _chat_call, ("prompt_tokens", "completion_tokens"), True),
    (AZURE, 1, _chat_call, ("prompt_tokens", "completion_tokens"), True),
    (CACHING, 1, _chat_call, ("prompt_tokens", "completion_tokens"), True),
    (CHAT_REASONING, 0, _chat_call, ("prompt_tokens", "completion_tokens"), False),
    (RESPONSES, 1, _responses_call, ("input_tokens", "output_tokens"), True),
    (COMPLETION, 0, _completion_call, ("prompt_tokens", "completion_tokens"), True),
    (EMBEDDINGS, 0, _embedding_call, ("prompt_tokens", None), False),
]
ESTIMATE_ERRORS: list[tuple[str, str, int, int]] = []  # (recording, kind, billed, estimated), for reports


@pytest.mark.parametrize(("cassette", "index", "call", "fields", "check_output"), ESTIMATE_CASES)
def test_estimates_match_billed_usage(instrumented, cassette, index, call, fields, check_output):
    interaction = load_cassette(cassette)[index]
    body = interaction.response_json
    billed = body.pop("usage")
    with scripted(lambda request: Reply.json(body)) as server:
        call(client(server), interaction.request_json)
    attrs = only_span(instrumented).attributes
    assert attrs[names.LLMMETER_ESTIMATED] is True
    assert attrs[names.LLMMETER_ESTIMATED_REASON] == "no_usage_in_response"
    name = cassette.rsplit("/", 1)[-1]
    real_input, estimated_input = billed[fields[0]], attrs[names.USAGE_INPUT_TOKENS]
    ESTIMATE_ERRORS.append((name, "input", real_input, estimated_input))
    # Input: within 1 token or 1% (chat-format overhead included).
    assert abs(estimated_input - real_input) <= max(1, real_input // 100), (name, real_input, estimated_input)
    if check_output:
        real_output, estimated_output = billed[fields[1]], attrs[names.USAGE_OUTPUT_TOKENS]
        ESTIMATE_ERRORS.append((name, "output", real_output, estimated_output))
        assert abs(estimated_output - real_output) <= max(1, real_output // 100), (name, real_output, estimated_output)


def test_responses_capture_opt_in_records_input_and_instructions(instrumented):
    """Opted-in capture on the Responses API: the input as semconv messages, ``instructions`` as the
    system instructions (expected values written from the call's own arguments)."""
    config.set_settings(config.Settings(capture_content=True))
    try:
        with replay(RESPONSES, index=1) as server:
            client(server).responses.create(
                model="gpt-4.1-nano", input="What is the capital of France?", instructions="Answer in one word."
            )
    finally:
        config.set_settings(None)
    attrs = only_span(instrumented).attributes
    assert json.loads(attrs[names.INPUT_MESSAGES]) == [
        {"role": "user", "parts": [{"type": "text", "content": "What is the capital of France?"}]}
    ]
    assert json.loads(attrs[names.SYSTEM_INSTRUCTIONS]) == [{"type": "text", "content": "Answer in one word."}]


def test_embeddings_unread_streaming_response_has_no_output_tokens(instrumented):
    """``with_streaming_response`` leaves the body unread: llmmeter does not read it, estimates the input and
    records output 0 (embeddings have none), never an estimate."""
    with replay(EMBEDDINGS, index=0) as server:
        with client(server).embeddings.with_streaming_response.create(
            model="text-embedding-ada-002", input=JOKE
        ) as response:
            assert response.parse().usage.prompt_tokens == 8  # the app reads its body as without llmmeter
    attrs = only_span(instrumented).attributes
    assert "raw_response_body_unread" in attrs[names.LLMMETER_UNMEASURED]
    assert attrs[names.USAGE_OUTPUT_TOKENS] == 0
    assert attrs[names.USAGE_INPUT_TOKENS] == 8  # the recording billed 8 tokens for JOKE; the estimate agrees
    assert attrs[names.LLMMETER_ESTIMATED] is True
