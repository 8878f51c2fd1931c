"""``with_streaming_response.create(stream=True)`` (how the OpenAI Agents SDK streams): the stream its ``parse()``
returns is measured like a plain stream, from the recorded usage, and the span ends with the stream."""

from __future__ import annotations

import asyncio
import gc

import openai
from guard_support import guarded
from llmmeter import names
from replay_server import load_cassette, replay

# A Responses API stream whose response.completed event carries usage (OpenLLMetry's openai-agents recordings).
CASSETTE = "openai-agents/tests/cassettes/test_openai_agents/test_music_composer_handoff_hierarchy.yaml"
REQUEST = {"model": "gpt-4o", "input": "Can you create a new symphony in D major?", "stream": True}


def recorded_chunks() -> int:
    first = next(i for i in load_cassette(CASSETTE) if i.path.endswith("/responses"))
    return sum(1 for line in first.response_text.splitlines() if line.startswith("data:"))


def test_sync_streaming_response_is_measured_from_the_stream(telemetry):
    with guarded(telemetry), replay(CASSETTE) as server:
        client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="k", max_retries=0)
        with client.responses.with_streaming_response.create(**REQUEST) as response:
            events = list(response.parse())
    [span] = telemetry.llm_spans()
    assert len(events) == recorded_chunks()
    assert span.attributes[names.LLMMETER_STREAM_CHUNKS] == len(events)
    assert span.attributes[names.USAGE_INPUT_TOKENS] == 75  # the recording's response.completed usage
    assert span.attributes[names.USAGE_OUTPUT_TOKENS] == 16
    assert span.attributes[names.LLMMETER_ESTIMATED] is False


def test_async_streaming_response_is_measured_from_the_stream(telemetry):
    async def main(server):
        client = openai.AsyncOpenAI(base_url=server.base_url + "/v1", api_key="k", max_retries=0)
        async with client.responses.with_streaming_response.create(**REQUEST) as response:
            return [event async for event in await response.parse()]

    with guarded(telemetry), replay(CASSETTE) as server:
        events = asyncio.run(main(server))
    [span] = telemetry.llm_spans()
    assert len(events) == recorded_chunks()
    assert span.attributes[names.USAGE_INPUT_TOKENS] == 75
    assert span.attributes[names.LLMMETER_ESTIMATED] is False


def test_a_streaming_response_never_parsed_ends_as_abandoned(telemetry):
    with guarded(telemetry), replay(CASSETTE) as server:
        client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="k", max_retries=0)
        with client.responses.with_streaming_response.create(**REQUEST) as response:
            lines = list(response.iter_lines())  # the app reads the raw body itself
        del response
        gc.collect()
    assert lines
    [span] = telemetry.llm_spans()
    assert span.attributes[names.LLMMETER_ESTIMATED_REASON] == "stream_not_consumed"
