"""OpenAI chat completions through llmmeter: the real openai SDK over real HTTP against recorded traffic.

Every expected number comes from the recording (usage) and the price table (rates), computed by hand
here, so a unit slip (per 1K vs per token) or a double-counted cache shows up as a wrong total.
"""

from __future__ import annotations

import asyncio
import importlib
import json

import openai
import pytest
import wrapt
from llmmeter import config, estimate, names
from llmmeter.instrumentors.openai import TARGETS, OpenAIInstrumentor
from llmmeter.instrumentors.openai_._common import endpoint
from llmmeter.pricing import get_price_table
from opentelemetry.instrumentation.utils import unwrap
from opentelemetry.trace import SpanKind, StatusCode
from pydantic import BaseModel
from replay_server import Reply, replay, scripted

CHAT = "openai/tests/traces/cassettes/test_chat/test_chat.yaml"
REASONING = "openai/tests/traces/cassettes/test_chat/test_chat_reasoning.yaml"
CACHING = "openai/tests/traces/cassettes/test_prompt_caching/test_openai_prompt_caching.yaml"
PARSE = "openai/tests/traces/cassettes/test_chat_parse/test_parsed_completion.yaml"
AZURE = "openai/tests/traces/cassettes/test_azure/test_chat.yaml"
AZURE_REASONING = "openai/tests/traces/cassettes/test_azure/test_chat_reasoning.yaml"
VISION = "openai/tests/traces/cassettes/test_vision/test_vision.yaml"
GROQ = "groq/tests/traces/cassettes/test_chat_tracing/test_chat_legacy.yaml"
JOKE = [{"role": "user", "content": "Tell me a joke about opentelemetry"}]


@pytest.fixture(scope="module", autouse=True)
def _tokenizer() -> None:
    estimate.warm_up(wait=True)


@pytest.fixture
def instrumented(telemetry):
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=telemetry.tracer_provider)
    yield telemetry
    instrumentor.uninstrument()


@pytest.fixture
def settings():
    """Swap llmmeter's settings for one test, restore the environment's afterwards."""

    def apply(**values):
        config.set_settings(config.Settings(**values))

    yield apply
    config.set_settings(None)


def client(server, cls=openai.OpenAI, **kwargs):
    return cls(base_url=server.base_url + "/v1", api_key="test-key", max_retries=0, **kwargs)


def only_span(telemetry):
    spans = telemetry.llm_spans()
    assert len(spans) == 1, [s.name for s in spans]
    return spans[0]


def rates(provider: str, model: str):
    resolved = get_price_table().resolve(provider, model)
    assert resolved is not None, f"the shipped price table has no {provider}/{model}"
    return resolved[1]


def test_chat_sync_exact_tokens_and_cost(instrumented):
    with replay(CHAT, index=0) as server:
        recorded = server.interaction(0).response_json
        result = client(server).chat.completions.create(model="gpt-3.5-turbo", messages=JOKE)

    assert isinstance(result, openai.types.chat.ChatCompletion)  # the SDK's own object, untouched
    assert result.choices[0].message.content == recorded["choices"][0]["message"]["content"]
    span = only_span(instrumented)
    attrs = span.attributes
    assert span.name == "chat gpt-3.5-turbo"
    assert span.kind is SpanKind.CLIENT
    assert attrs[names.PROVIDER] == "openai"
    assert attrs[names.OPERATION] == "chat"
    assert attrs[names.REQUEST_MODEL] == "gpt-3.5-turbo"
    assert attrs[names.RESPONSE_MODEL] == "gpt-3.5-turbo-0125"
    assert attrs[names.RESPONSE_ID] == recorded["id"]
    assert attrs[names.FINISH_REASONS] == ("stop",)
    assert attrs[names.SERVER_ADDRESS] == "127.0.0.1"
    assert attrs[names.SERVER_PORT] == server.port
    assert (attrs[names.USAGE_INPUT_TOKENS], attrs[names.USAGE_OUTPUT_TOKENS]) == (15, 19)
    assert attrs[names.LLMMETER_ESTIMATED] is False
    entry = rates("openai", "gpt-3.5-turbo-0125")
    expected = 15 * entry.input + 19 * entry.output
    assert attrs[names.LLMMETER_PRICED] is True
    assert attrs[names.COST_USD] == pytest.approx(expected, rel=1e-9)
    assert names.LLMMETER_UNMEASURED not in attrs
    # Metrics come from the span processor reading this span.
    assert instrumented.metric_total(names.METRIC_TOKENS, **{names.LABEL_TOKEN_TYPE: "input"}) == 15
    assert instrumented.metric_total(names.METRIC_TOKENS, **{names.LABEL_TOKEN_TYPE: "output"}) == 19
    assert instrumented.metric_total(names.METRIC_COST) == pytest.approx(expected, rel=1e-9)


def test_chat_async_exact_tokens_and_cost(instrumented):
    async def call(server):
        async with client(server, openai.AsyncOpenAI) as aclient:
            return await aclient.chat.completions.create(model="gpt-3.5-turbo", messages=JOKE)

    with replay(CHAT, index=1) as server:
        result = asyncio.run(call(server))
    assert result.usage.completion_tokens == 31
    attrs = only_span(instrumented).attributes
    assert (attrs[names.USAGE_INPUT_TOKENS], attrs[names.USAGE_OUTPUT_TOKENS]) == (15, 31)
    assert names.USAGE_CACHE_READ_TOKENS not in attrs  # cached_tokens is 0 in this recording
    entry = rates("openai", "gpt-3.5-turbo-0125")
    assert attrs[names.COST_USD] == pytest.approx(15 * entry.input + 31 * entry.output, rel=1e-9)


def test_reasoning_tokens_are_a_priced_subset_of_output(instrumented):
    with replay(REASONING, index=0) as server:
        client(server).chat.completions.create(
            model="gpt-5-nano",
            messages=[{"role": "user", "content": "Count r's in strawberry"}],
            reasoning_effort="low",
        )
    attrs = only_span(instrumented).attributes
    assert attrs[names.USAGE_INPUT_TOKENS] == 11
    assert attrs[names.USAGE_OUTPUT_TOKENS] == 228
    assert attrs[names.USAGE_REASONING_TOKENS] == 192
    entry = rates("openai", "gpt-5-nano-2025-08-07")
    reasoning_rate = entry.reasoning if entry.reasoning is not None else entry.output
    expected = 11 * entry.input + (228 - 192) * entry.output + 192 * reasoning_rate
    assert attrs[names.COST_USD] == pytest.approx(expected, rel=1e-9)


def test_prompt_caching_reads_cached_tokens_once(instrumented):
    with replay(CACHING, index=1) as server:
        messages = server.interaction(1).request_json["messages"]
        client(server).chat.completions.create(model="gpt-4o-mini", messages=messages)
    attrs = only_span(instrumented).attributes
    assert attrs[names.USAGE_INPUT_TOKENS] == 1149  # includes the cached part (semconv)
    assert attrs[names.USAGE_CACHE_READ_TOKENS] == 1024
    entry = rates("openai", "gpt-4o-mini-2024-07-18")
    assert entry.cache_read is not None and entry.cache_read < entry.input
    expected = (1149 - 1024) * entry.input + 1024 * entry.cache_read + 353 * entry.output
    assert attrs[names.COST_USD] == pytest.approx(expected, rel=1e-9)
    assert instrumented.metric_total(names.METRIC_TOKENS, **{names.LABEL_TOKEN_TYPE: "cache_read"}) == 1024
    assert instrumented.metric_total(names.METRIC_TOKENS, **{names.LABEL_TOKEN_TYPE: "input"}) == 1149


def test_parse_helper_is_one_span(instrumented):
    class Joke(BaseModel):
        joke: str

    with replay(PARSE, index=1) as server:
        result = client(server).chat.completions.parse(model="gpt-4o", messages=JOKE, response_format=Joke)
    assert isinstance(result.choices[0].message.parsed, Joke)
    attrs = only_span(instrumented).attributes
    assert (attrs[names.USAGE_INPUT_TOKENS], attrs[names.USAGE_OUTPUT_TOKENS]) == (68, 35)
    assert attrs[names.RESPONSE_MODEL] == "gpt-4o-2024-08-06"


def test_http_error_reaches_the_app_as_the_sdk_raised_it(telemetry):
    """The app gets the very exception object the SDK raised (a spy inside llmmeter's wrapper sees it)."""
    from openai.resources.chat.completions import Completions

    raised: list[BaseException] = []

    def spy(wrapped, instance, args, kwargs):
        try:
            return wrapped(*args, **kwargs)
        except BaseException as exc:
            raised.append(exc)
            raise

    vision = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in this image?"},
                {"type": "image_url", "image_url": {"url": "https://source.unsplash.com/8xznAGy4HcY/800x400"}},
            ],
        }
    ]
    with replay(VISION, index=2) as server:
        with pytest.raises(openai.BadRequestError) as plain:  # without llmmeter, for comparison
            client(server).chat.completions.create(model="gpt-4o-mini", messages=vision)
        wrapt.wrap_function_wrapper(Completions, "create", spy)
        instrumentor = OpenAIInstrumentor()
        instrumentor.instrument(tracer_provider=telemetry.tracer_provider)
        try:
            with pytest.raises(openai.BadRequestError) as caught:
                client(server).chat.completions.create(model="gpt-4o-mini", messages=vision)
        finally:
            instrumentor.uninstrument()
            unwrap(Completions, "create")

    assert caught.value is raised[0]
    assert (caught.value.status_code, caught.value.body, str(caught.value)) == (
        plain.value.status_code,
        plain.value.body,
        str(plain.value),
    )
    span = only_span(telemetry)
    assert span.attributes[names.ERROR_TYPE] == "openai.BadRequestError"
    assert span.status.status_code is StatusCode.ERROR
    assert names.USAGE_INPUT_TOKENS not in span.attributes  # a refused call produced no tokens
    assert telemetry.metric_total(names.METRIC_REQUESTS, **{names.LABEL_STATUS: "error"}) == 1


def test_azure_deployment_is_request_model_and_response_model_is_priced(instrumented):
    with replay(AZURE, index=1) as server:
        azure = openai.AzureOpenAI(
            azure_endpoint=server.base_url, api_key="test-key", api_version="2024-02-01", max_retries=0
        )
        azure.chat.completions.create(model="openllmetry-testing", messages=JOKE)
        assert server.requests[0].path == "/openai/deployments/openllmetry-testing/chat/completions"
    span = only_span(instrumented)
    attrs = span.attributes
    assert span.name == "chat openllmetry-testing"
    assert attrs[names.PROVIDER] == names.PROVIDER_AZURE_OPENAI
    assert attrs[names.REQUEST_MODEL] == "openllmetry-testing"
    assert attrs[names.RESPONSE_MODEL] == "gpt-4.1-mini-2025-04-14"
    assert (attrs[names.USAGE_INPUT_TOKENS], attrs[names.USAGE_OUTPUT_TOKENS]) == (16, 22)
    entry = rates(names.PROVIDER_AZURE_OPENAI, "gpt-4.1-mini-2025-04-14")
    assert attrs[names.LLMMETER_PRICE_MODEL] == entry.key  # priced by the response's model, not the deployment
    assert attrs[names.COST_USD] == pytest.approx(16 * entry.input + 22 * entry.output, rel=1e-9)


def test_azure_http_error_is_marked_and_unchanged(instrumented):
    with replay(AZURE_REASONING, index=1) as server:
        azure = openai.AzureOpenAI(
            azure_endpoint=server.base_url, api_key="test-key", api_version="2024-02-01", max_retries=0
        )
        with pytest.raises(openai.NotFoundError) as caught:
            azure.chat.completions.create(model="gpt-5-nano", messages=JOKE, reasoning_effort="low")
    assert caught.value.status_code == 404
    assert only_span(instrumented).attributes[names.ERROR_TYPE] == "openai.NotFoundError"


def test_openai_compatible_host_groq_through_a_proxy(instrumented):
    """The SDK keeps Groq's real host in base_url; the connection goes through this test's server as an
    HTTP proxy, so provider detection sees exactly what it sees in production."""
    with replay(GROQ, index=0) as server:
        groq = openai.OpenAI(
            base_url="http://api.groq.com/openai/v1",
            api_key="test-key",
            max_retries=0,
            http_client=openai.DefaultHttpxClient(proxy=server.base_url),
        )
        result = groq.chat.completions.create(model="llama3-8b-8192", messages=JOKE)
        assert server.requests[0].headers["host"] == "api.groq.com"
    assert result.usage.prompt_tokens == 18
    attrs = only_span(instrumented).attributes
    assert attrs[names.PROVIDER] == names.PROVIDER_GROQ
    assert attrs[names.SERVER_ADDRESS] == "api.groq.com"
    assert attrs[names.SERVER_PORT] == 80
    assert (attrs[names.USAGE_INPUT_TOKENS], attrs[names.USAGE_OUTPUT_TOKENS]) == (18, 43)


@pytest.mark.parametrize(
    ("base_url", "provider"),
    [
        ("https://api.openai.com/v1", names.PROVIDER_OPENAI),
        ("https://api.groq.com/openai/v1", names.PROVIDER_GROQ),
        ("http://localhost:11434/v1", names.PROVIDER_OLLAMA),
        ("http://ollama:8080/v1", names.PROVIDER_OLLAMA),
        ("https://api.deepseek.com", names.PROVIDER_DEEPSEEK),
        ("https://openrouter.ai/api/v1", names.PROVIDER_OPENROUTER),
        ("https://api.together.xyz/v1", names.PROVIDER_TOGETHER),
        ("https://api.fireworks.ai/inference/v1", names.PROVIDER_FIREWORKS),
        ("https://api.x.ai/v1", names.PROVIDER_XAI),
        ("https://api.perplexity.ai", names.PROVIDER_PERPLEXITY),
        ("https://api.mistral.ai/v1", names.PROVIDER_MISTRAL),
        ("https://myres.openai.azure.com/openai/v1", names.PROVIDER_AZURE_OPENAI),
        ("https://llm.internal.example.com/v1", names.PROVIDER_OPENAI),
        ("https://notgroq.com.example.org/v1", names.PROVIDER_OPENAI),
    ],
)
def test_provider_from_base_url_host(base_url, provider):
    sdk = openai.OpenAI(base_url=base_url, api_key="test-key")
    assert endpoint(sdk.chat.completions)[0] == provider
    assert endpoint(sdk.embeddings)[0] == provider


def test_content_is_not_captured_by_default_and_keys_never_are(instrumented):
    with replay(CHAT, index=0) as server:
        client(server).chat.completions.create(model="gpt-3.5-turbo", messages=JOKE)
    attrs = only_span(instrumented).attributes
    assert not set(names.CONTENT_ATTRIBUTES) & set(attrs)
    assert not any("test-key" in str(v) for v in attrs.values())


def test_content_capture_opt_in_uses_semconv_message_shape(instrumented, settings):
    settings(capture_content=True)
    with replay(CHAT, index=0) as server:
        result = client(server).chat.completions.create(model="gpt-3.5-turbo", messages=JOKE)
    attrs = only_span(instrumented).attributes
    assert json.loads(attrs[names.INPUT_MESSAGES]) == [
        {"role": "user", "parts": [{"type": "text", "content": "Tell me a joke about opentelemetry"}]}
    ]
    assert json.loads(attrs[names.OUTPUT_MESSAGES]) == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": result.choices[0].message.content}],
            "finish_reason": "stop",
        }
    ]
    assert not any("test-key" in str(v) for v in attrs.values())


def test_usage_missing_is_estimated_and_marked(instrumented):
    """A proxy that strips usage: the call behaves as without llmmeter; the span says what it estimated."""
    with replay(CHAT, index=0) as recording:
        body = recording.interaction(0).response_json
    del body["usage"]
    with scripted(lambda request: Reply.json(body)) as server:
        result = client(server).chat.completions.create(model="gpt-3.5-turbo", messages=JOKE)
    assert result.usage is None
    attrs = only_span(instrumented).attributes
    assert attrs[names.LLMMETER_ESTIMATED] is True
    assert attrs[names.LLMMETER_ESTIMATED_REASON] == "no_usage_in_response"
    assert "usage_missing" in attrs[names.LLMMETER_UNMEASURED]
    # The recording's real usage was 15 in / 19 out: the chat-format estimate is exact on input.
    assert attrs[names.USAGE_INPUT_TOKENS] == 15
    assert abs(attrs[names.USAGE_OUTPUT_TOKENS] - 19) <= 1


def _method(module: str, cls: str, method: str):
    return getattr(importlib.import_module(module), cls).__dict__.get(method)


def test_uninstrument_restores_the_sdk_methods(telemetry):
    originals = {target[:3]: _method(*target[:3]) for target in TARGETS}
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=telemetry.tracer_provider)
    wrapped = [key for key in originals if isinstance(_method(*key), wrapt.FunctionWrapper)]
    assert len(wrapped) == len(TARGETS)  # every target exists in openai 3.x and got wrapped
    instrumentor.uninstrument()
    changed = [key for key, original in originals.items() if _method(*key) is not original]
    assert changed == []
    with replay(CHAT, index=0) as server:
        client(server).chat.completions.create(model="gpt-3.5-turbo", messages=JOKE)
    assert telemetry.llm_spans() == []
