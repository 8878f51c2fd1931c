"""Conformance cases for the ``cohere`` SDK's v2 chat (``ClientV2`` / ``AsyncClientV2``), plain and streamed.

Recordings: tests/cassettes/cohere/ (see NOTICE.md). Cohere bills ``usage.billed_units``, which differ from
``usage.tokens`` (the recording: billed 7 in / 88 out, processed 69 / 89): the expected usage below is the
billed one, and so is the price.
"""

from __future__ import annotations

import asyncio
from typing import Any

import cohere
from cohere.errors import BadRequestError
from llmmeter import names
from llmmeter.instrumentors.cohere import TARGETS, CohereInstrumentor
from llmmeter.usage import Usage
from replay_server import ReplayServer, Reply

from conformance.framework import ProviderCase

MESSAGES = [{"role": "user", "content": "Tell me a joke, pirate style"}]
USAGE_KEYS = ("billed_units", "tokens", "cached_tokens")


def error_reply(marker: str) -> Reply:
    return Reply.json({"id": "err-llmmeter", "message": marker}, 400)


def malformed_reply(usage: Any) -> Reply:
    return Reply.json({
        "id": "chat-llmmeter",
        "finish_reason": "COMPLETE",
        "message": {"role": "assistant", "content": [{"type": "text", "text": "Arr"}]},
        "usage": usage,
    })


def patched() -> list[tuple[Any, str]]:
    return TARGETS.owners()


def sync_call(base_url: str) -> Any:
    return cohere.ClientV2(api_key="test-key", base_url=base_url).chat(model="command", messages=MESSAGES)


def sync_stream(base_url: str, limit: int | None) -> int:
    stream = cohere.ClientV2(api_key="test-key", base_url=base_url).chat_stream(model="command", messages=MESSAGES)
    read = 0
    for _ in stream:
        read += 1
        if limit is not None and read >= limit:
            break
    stream.close()
    return read


def async_call(base_url: str) -> Any:
    async def run() -> Any:
        client = cohere.AsyncClientV2(api_key="test-key", base_url=base_url)
        return await client.chat(model="command-r7b-12-2024", messages=MESSAGES)

    return asyncio.run(run())


def async_stream(base_url: str, limit: int | None) -> int:
    async def run() -> int:
        client = cohere.AsyncClientV2(api_key="test-key", base_url=base_url)
        stream = client.chat_stream(model="command", messages=MESSAGES)
        read = 0
        async for _ in stream:
            read += 1
            if limit is not None and read >= limit:
                break
        await stream.aclose()
        return read

    return asyncio.run(run())


CASES = [
    ProviderCase(
        name="cohere-v2",
        instrumentor=CohereInstrumentor,
        provider=names.PROVIDER_COHERE,
        operation=names.OP_CHAT,
        request_model="command",
        server=lambda: ReplayServer("cohere/test_cohere_v2_chat_legacy.yaml"),
        call=sync_call,
        usage=Usage(input=7, output=88),
        error_reply=error_reply,
        error_type=BadRequestError,
        malformed_reply=malformed_reply,
        usage_keys=USAGE_KEYS,
        patched=patched,
        stream_server=lambda: ReplayServer("cohere/test_cohere_v2_chat_legacy_with_streaming.yaml"),
        stream=sync_stream,
        stream_usage=Usage(input=7, output=109),
    ),
    ProviderCase(
        name="cohere-v2-async",
        instrumentor=CohereInstrumentor,
        provider=names.PROVIDER_COHERE,
        operation=names.OP_CHAT,
        request_model="command-r7b-12-2024",
        server=lambda: ReplayServer("cohere/test_cohere_v2_chat_legacy_with_tool_calls_and_history_async.yaml"),
        call=async_call,
        usage=Usage(input=62, output=38),  # billed; processed tokens were 1531 / 89
        error_reply=error_reply,
        error_type=BadRequestError,
        malformed_reply=malformed_reply,
        usage_keys=USAGE_KEYS,
        patched=patched,
        stream_server=lambda: ReplayServer("cohere/test_cohere_v2_chat_legacy_with_streaming_async.yaml"),
        stream=async_stream,
        stream_usage=Usage(input=7, output=89),
        stream_request_model="command",
    ),
]
