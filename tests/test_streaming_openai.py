"""Streaming through llmmeter with the real openai SDK: every way an app can end a stream ends the span
exactly once, with usage read from the stream when it is there and estimated (and marked) when not."""

from __future__ import annotations

import asyncio
import gc
import json

import openai
import pytest
import wrapt
from llmmeter import config, estimate, names
from llmmeter.instrumentors.openai import OpenAIInstrumentor
from opentelemetry.instrumentation.utils import unwrap
from replay_server import Reply, load_cassette, replay, scripted

NO_USAGE = "openai/tests/traces/cassettes/test_chat/test_chat_async_streaming.yaml"
USAGE_WITH_LAST_CHOICE = "openai/tests/traces/cassettes/test_chat/test_chat_streaming.yaml"
DEEPSEEK = "openai/tests/metrics/cassettes/test_openai_metrics/test_chat_streaming_metrics.yaml"
PARTIAL = "openai/tests/traces/cassettes/test_chat/test_chat_streaming_partial_consumption.yaml"
RESPONSES = "openai/tests/traces/cassettes/test_responses/test_responses_streaming.yaml"
COMPLETIONS = "openai/tests/traces/cassettes/test_completions/test_completion_streaming.yaml"
JOKE = [{"role": "user", "content": "Tell me a joke about opentelemetry"}]
COUNT = [{"role": "user", "content": "Count to 5"}]
REAL_JOKE_PROMPT_TOKENS = 15  # gpt-3.5-turbo's prompt_tokens for JOKE (test_chat.yaml, non-streamed)


@pytest.fixture(scope="module", autouse=True)
def _tokenizer() -> None:
    estimate.warm_up(wait=True)


@pytest.fixture
def instrumented(telemetry):
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=telemetry.tracer_provider)
    yield telemetry
    instrumentor.uninstrument()
    config.set_settings(None)


def client(server, cls=openai.OpenAI, **kwargs):
    return cls(base_url=server.base_url + "/v1", api_key="test-key", max_retries=0, **kwargs)


def only_span(telemetry):
    """The single LLM span; also proves it ended once (a second end would export a second copy)."""
    gc.collect()
    spans = telemetry.llm_spans()
    assert len(spans) == 1, [s.name for s in spans]
    assert telemetry.metric_total(names.METRIC_REQUESTS) == 1
    return spans[0]


def sse_payloads(cassette: str, index: int) -> list[dict]:
    """The JSON events of a recorded SSE body."""
    body = load_cassette(cassette)[index].response_text
    return [json.loads(line[5:]) for line in body.splitlines() if line.startswith("data:") and "[DONE]" not in line]


def delta_text(chunks) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_stream_without_usage_is_estimated_and_marked(instrumented):
    with replay(NO_USAGE, index=0) as server:
        stream = client(server).chat.completions.create(model="gpt-3.5-turbo", messages=JOKE, stream=True)
        assert isinstance(stream, openai.Stream)  # a proxy, but the app's isinstance checks still hold
        chunks = list(stream)
        assert "stream_options" not in server.requests[0].json  # nothing injected by default
    assert all(isinstance(c, openai.types.chat.ChatCompletionChunk) for c in chunks)
    span = only_span(instrumented)
    attrs = span.attributes
    assert attrs[names.LLMMETER_ESTIMATED] is True
    assert attrs[names.LLMMETER_ESTIMATED_REASON] == "no_usage_in_stream"
    assert attrs[names.LLMMETER_STREAM_CHUNKS] == len(chunks)
    assert attrs[names.FINISH_REASONS] == ("stop",)
    assert attrs[names.RESPONSE_MODEL] == "gpt-3.5-turbo-0125"
    # Input: message tokens + chat-format overhead == what OpenAI billed for this prompt.
    assert attrs[names.USAGE_INPUT_TOKENS] == REAL_JOKE_PROMPT_TOKENS
    assert attrs[names.USAGE_OUTPUT_TOKENS] == estimate.count_tokens(delta_text(chunks), "gpt-3.5-turbo")[0]
    assert attrs[names.LLMMETER_PRICED] is True  # estimated tokens are still priced, and say so
    assert instrumented.metric_total(names.METRIC_REQUESTS, **{names.LABEL_ESTIMATED: "true"}) == 1


def test_stream_with_usage_chunk_is_exact(instrumented):
    """DeepSeek sends usage unasked, on the final chunk. Real host kept in base_url via a proxy."""
    with replay(DEEPSEEK) as server:
        messages = server.interaction(0).request_json["messages"]
        deepseek = openai.OpenAI(
            base_url="http://api.deepseek.com/v1",
            api_key="test-key",
            max_retries=0,
            http_client=openai.DefaultHttpxClient(proxy=server.base_url),
        )
        chunks = list(deepseek.chat.completions.create(model="deepseek-chat", messages=messages, stream=True))
    attrs = only_span(instrumented).attributes
    assert attrs[names.PROVIDER] == names.PROVIDER_DEEPSEEK
    assert (attrs[names.USAGE_INPUT_TOKENS], attrs[names.USAGE_OUTPUT_TOKENS]) == (32, 324)
    assert attrs[names.LLMMETER_ESTIMATED] is False
    assert attrs[names.LLMMETER_STREAM_CHUNKS] == len(chunks)
    assert names.LLMMETER_UNMEASURED not in attrs


def test_usage_on_the_chunk_that_also_carries_the_last_choice(instrumented):
    with replay(USAGE_WITH_LAST_CHOICE) as server:
        list(client(server).chat.completions.create(model="gpt-3.5-turbo", messages=JOKE, stream=True))
    attrs = only_span(instrumented).attributes
    assert (attrs[names.USAGE_INPUT_TOKENS], attrs[names.USAGE_OUTPUT_TOKENS]) == (10, 50)
    assert attrs[names.LLMMETER_ESTIMATED] is False


def _openai_like_stream(request):
    """Replays the recorded chunks and, like OpenAI, adds the usage chunk only when asked to."""
    events = sse_payloads(NO_USAGE, 1)
    options = (request.json or {}).get("stream_options") or {}
    if options.get("include_usage"):
        events.append({**events[-1], "choices": [], "usage": {"prompt_tokens": 15, "completion_tokens": 21}})
    return Reply.sse(events)


def test_include_usage_opt_in_injects_stream_options(instrumented):
    config.set_settings(config.Settings(stream_include_usage=True))
    with scripted(_openai_like_stream) as server:
        chunks = list(client(server).chat.completions.create(model="gpt-3.5-turbo", messages=JOKE, stream=True))
        assert server.requests[0].json["stream_options"] == {"include_usage": True}
    # The documented effect on the app: one extra final chunk with empty choices, carrying usage.
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 21
    attrs = only_span(instrumented).attributes
    assert (attrs[names.USAGE_INPUT_TOKENS], attrs[names.USAGE_OUTPUT_TOKENS]) == (15, 21)
    assert attrs[names.LLMMETER_ESTIMATED] is False


def test_include_usage_opt_in_leaves_app_stream_options_alone(instrumented):
    config.set_settings(config.Settings(stream_include_usage=True))
    with scripted(_openai_like_stream) as server:
        chunks = list(
            client(server).chat.completions.create(
                model="gpt-3.5-turbo", messages=JOKE, stream=True, stream_options={"include_usage": False}
            )
        )
        assert server.requests[0].json["stream_options"] == {"include_usage": False}
    assert all(c.choices for c in chunks)
    assert only_span(instrumented).attributes[names.LLMMETER_ESTIMATED] is True


def test_break_then_close_ends_span_once(instrumented):
    with replay(PARTIAL, index=1) as server:
        stream = client(server).chat.completions.create(model="gpt-3.5-turbo", messages=COUNT, stream=True)
        for i, _ in enumerate(stream):
            if i == 2:
                break
        assert instrumented.llm_spans() == []  # still open: the app may resume reading
        stream.close()
        stream.close()  # idempotent
    attrs = only_span(instrumented).attributes
    assert attrs[names.LLMMETER_STREAM_CHUNKS] == 3
    assert attrs[names.LLMMETER_ESTIMATED_REASON] == "stream_closed_early"
    assert attrs[names.USAGE_INPUT_TOKENS] > 0


def test_break_then_drop_ends_span_on_gc(instrumented):
    with replay(PARTIAL, index=1) as server:
        stream = client(server).chat.completions.create(model="gpt-3.5-turbo", messages=COUNT, stream=True)
        next(stream)
        del stream
        gc.collect()
    attrs = only_span(instrumented).attributes
    assert attrs[names.LLMMETER_STREAM_CHUNKS] == 1
    assert attrs[names.LLMMETER_ESTIMATED_REASON] == "stream_not_consumed"


def test_never_read_stream_ends_span_on_gc(instrumented):
    with replay(PARTIAL, index=1) as server:
        client(server).chat.completions.create(model="gpt-3.5-turbo", messages=COUNT, stream=True)
        gc.collect()
    attrs = only_span(instrumented).attributes
    assert attrs[names.LLMMETER_STREAM_CHUNKS] == 0
    assert attrs[names.USAGE_OUTPUT_TOKENS] == 0


def test_context_manager_stream(instrumented):
    with replay(NO_USAGE, index=2) as server:
        with client(server).chat.completions.create(model="gpt-3.5-turbo", messages=JOKE, stream=True) as stream:
            chunks = list(stream)
    attrs = only_span(instrumented).attributes
    assert attrs[names.LLMMETER_STREAM_CHUNKS] == len(chunks)
    assert attrs[names.LLMMETER_ESTIMATED_REASON] == "no_usage_in_stream"


def test_app_exception_inside_with_block_propagates_unchanged(instrumented):
    boom = ValueError("app bug")
    with replay(NO_USAGE, index=2) as server:
        with pytest.raises(ValueError) as caught:
            with client(server).chat.completions.create(model="gpt-3.5-turbo", messages=JOKE, stream=True) as stream:
                next(stream)
                raise boom
    assert caught.value is boom
    assert only_span(instrumented).attributes[names.LLMMETER_ESTIMATED_REASON] == "stream_closed_early"


def test_sdk_error_during_consumption_reaches_app_as_raised(telemetry):
    """A mid-stream error event makes the SDK raise APIError from next(); a spy under llmmeter records
    the exception the SDK raised, and the app must receive that very object."""
    events = [*sse_payloads(NO_USAGE, 1)[:3], {"error": {"message": "overloaded", "type": "server_error"}}]
    raised: list[BaseException] = []

    def spy(wrapped, instance, args, kwargs):
        try:
            return wrapped(*args, **kwargs)
        except BaseException as exc:
            raised.append(exc)
            raise

    def iter_spy(wrapped, instance, args, kwargs):
        def spied():
            try:
                yield from wrapped(*args, **kwargs)
            except BaseException as exc:
                raised.append(exc)
                raise

        return spied()

    # llmmeter's proxy may read the SDK stream through either door (``for`` uses __iter__, next() __next__).
    wrapt.wrap_function_wrapper(openai.Stream, "__next__", spy)
    wrapt.wrap_function_wrapper(openai.Stream, "__iter__", iter_spy)
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=telemetry.tracer_provider)
    try:
        with scripted(lambda request: Reply.sse(events, done=False)) as server:
            stream = client(server).chat.completions.create(model="gpt-3.5-turbo", messages=JOKE, stream=True)
            seen = []
            with pytest.raises(openai.APIError) as caught:
                for chunk in stream:
                    seen.append(chunk)
    finally:
        instrumentor.uninstrument()
        unwrap(openai.Stream, "__next__")
        unwrap(openai.Stream, "__iter__")
    assert len(seen) == 3
    assert caught.value is raised[-1]
    assert str(caught.value) == "overloaded"
    attrs = only_span(telemetry).attributes
    assert attrs[names.ERROR_TYPE] == "openai.APIError"
    assert attrs[names.LLMMETER_ESTIMATED_REASON] == "stream_error"
    assert attrs[names.LLMMETER_STREAM_CHUNKS] == 3


def test_chat_completions_stream_helper(instrumented):
    with replay(NO_USAGE, index=1) as server:
        with client(server).chat.completions.stream(model="gpt-3.5-turbo", messages=JOKE) as stream:
            kinds = {event.type for event in stream}
            final = stream.get_final_completion()
        assert server.requests[0].headers["x-stainless-helper-method"] == "chat.completions.stream"
    assert "content.delta" in kinds
    attrs = only_span(instrumented).attributes
    assert attrs[names.USAGE_INPUT_TOKENS] == REAL_JOKE_PROMPT_TOKENS
    expected_output = estimate.count_tokens(final.choices[0].message.content, "gpt-3.5-turbo")[0]
    assert attrs[names.USAGE_OUTPUT_TOKENS] == expected_output
    assert attrs[names.FINISH_REASONS] == ("stop",)


def test_chat_completions_stream_helper_left_early(instrumented):
    with replay(NO_USAGE, index=1) as server:
        with client(server).chat.completions.stream(model="gpt-3.5-turbo", messages=JOKE) as stream:
            for _ in stream:
                break
        del stream
    attrs = only_span(instrumented).attributes  # ends when the helper's stream is released
    assert attrs[names.LLMMETER_ESTIMATED] is True
    assert attrs[names.LLMMETER_STREAM_CHUNKS] == 1


def test_async_stream_full_and_partial(instrumented):
    async def run(server):
        async with client(server, openai.AsyncOpenAI) as aclient:
            stream = await aclient.chat.completions.create(model="gpt-3.5-turbo", messages=JOKE, stream=True)
            full = [c async for c in stream]
            async with await aclient.chat.completions.create(
                model="gpt-3.5-turbo", messages=JOKE, stream=True
            ) as partial:
                async for _ in partial:
                    break
            return full

    with replay(NO_USAGE) as server:
        full = asyncio.run(run(server))
    spans = sorted(instrumented.llm_spans(), key=lambda s: s.start_time)
    assert len(spans) == 2
    assert spans[0].attributes[names.LLMMETER_STREAM_CHUNKS] == len(full)
    assert spans[0].attributes[names.LLMMETER_ESTIMATED_REASON] == "no_usage_in_stream"
    assert spans[1].attributes[names.LLMMETER_STREAM_CHUNKS] == 1
    assert spans[1].attributes[names.LLMMETER_ESTIMATED_REASON] == "stream_closed_early"


def test_async_stream_helper(instrumented):
    async def run(server):
        async with client(server, openai.AsyncOpenAI) as aclient:
            async with aclient.chat.completions.stream(model="gpt-3.5-turbo", messages=JOKE) as stream:
                async for _ in stream:
                    pass
                return await stream.get_final_completion()

    with replay(NO_USAGE, index=0) as server:
        final = asyncio.run(run(server))
    attrs = only_span(instrumented).attributes
    assert attrs[names.USAGE_OUTPUT_TOKENS] == estimate.count_tokens(final.choices[0].message.content, "gpt-3.5")[0]


def test_responses_stream_usage_from_completed_event(instrumented):
    with replay(RESPONSES, index=1) as server:
        prompt = server.interaction(1).request_json["input"]
        events = list(client(server).responses.create(model="gpt-4.1-nano", input=prompt, stream=True))
    assert events[-1].type == "response.completed"
    attrs = only_span(instrumented).attributes
    assert attrs[names.OPERATION] == "chat"
    assert (attrs[names.USAGE_INPUT_TOKENS], attrs[names.USAGE_OUTPUT_TOKENS]) == (18, 80)
    assert attrs[names.RESPONSE_MODEL] == "gpt-4.1-nano-2025-04-14"
    assert attrs[names.FINISH_REASONS] == ("stop",)
    assert attrs[names.LLMMETER_ESTIMATED] is False


def test_responses_stream_helper(instrumented):
    with replay(RESPONSES, index=0) as server:
        prompt = server.interaction(0).request_json["input"]
        with client(server).responses.stream(model="gpt-4.1-nano", input=prompt) as stream:
            for _ in stream:
                pass
            final = stream.get_final_response()
    attrs = only_span(instrumented).attributes
    assert (attrs[names.USAGE_INPUT_TOKENS], attrs[names.USAGE_OUTPUT_TOKENS]) == (18, 79)
    assert final.usage.output_tokens == 79


def test_responses_stream_cut_before_completed_is_estimated(instrumented):
    with replay(RESPONSES, index=1) as server:
        prompt = server.interaction(1).request_json["input"]
        stream = client(server).responses.create(model="gpt-4.1-nano", input=prompt, stream=True)
        for event in stream:
            if event.type == "response.output_text.delta":
                break
        stream.close()
    attrs = only_span(instrumented).attributes
    assert attrs[names.LLMMETER_ESTIMATED_REASON] == "stream_closed_early"
    assert attrs[names.USAGE_INPUT_TOKENS] == 18  # the estimate matches the recorded usage exactly
    assert attrs[names.USAGE_OUTPUT_TOKENS] == 1


def test_legacy_completions_stream(instrumented):
    with replay(COMPLETIONS) as server:
        chunks = list(
            client(server).completions.create(
                model="davinci-002", prompt="Tell me a joke about opentelemetry", stream=True
            )
        )
    attrs = only_span(instrumented).attributes
    assert attrs[names.OPERATION] == "text_completion"
    assert attrs[names.USAGE_INPUT_TOKENS] == 8  # davinci-002's recorded prompt_tokens for this prompt
    text = "".join(c.choices[0].text for c in chunks if c.choices and c.choices[0].text)
    assert attrs[names.USAGE_OUTPUT_TOKENS] == estimate.count_tokens(text, "davinci-002")[0]
    assert attrs[names.FINISH_REASONS] == ("stop",)
