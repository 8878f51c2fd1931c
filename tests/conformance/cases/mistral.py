"""Conformance cases for the ``mistralai`` SDK: ``chat.complete`` / ``chat.stream``, sync and async.

Recordings: tests/cassettes/mistralai/ (see NOTICE.md). Error and malformed replies use the Chat
Completions response shape of those recordings; a 400 with a JSON body is raised by the SDK as its
fallback ``SDKError``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from llmmeter import names
from llmmeter.instrumentors.mistral import TARGETS, MistralInstrumentor
from llmmeter.usage import Usage
from mistralai.client import Mistral
from mistralai.client.errors import SDKError
from replay_server import ReplayServer, Reply

from conformance.framework import ProviderCase

MODEL = "mistral-tiny"
MESSAGES = [{"role": "user", "content": "Tell me a joke about OpenTelemetry"}]
USAGE_KEYS = ("prompt_tokens", "completion_tokens", "total_tokens", "prompt_tokens_details")


def client(base_url: str) -> Mistral:
    return Mistral(api_key="test-key", server_url=base_url)


def error_reply(marker: str) -> Reply:
    return Reply.json({"object": "error", "message": marker, "type": "invalid_request_error", "code": None}, 400)


def malformed_reply(usage: Any) -> Reply:
    return Reply.json({
        "id": "cmpl-llmmeter", "object": "chat.completion", "created": 1757759489, "model": MODEL,
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Hi"}}],
        "usage": usage,
    })


def patched() -> list[tuple[Any, str]]:
    return TARGETS.owners()


def sync_call(base_url: str) -> Any:
    return client(base_url).chat.complete(model=MODEL, messages=MESSAGES)


def sync_stream(base_url: str, limit: int | None) -> int:
    read = 0
    with client(base_url).chat.stream(model=MODEL, messages=MESSAGES) as stream:
        for _ in stream:
            read += 1
            if limit is not None and read >= limit:
                break
    return read


def async_call(base_url: str) -> Any:
    async def run() -> Any:
        return await client(base_url).chat.complete_async(model=MODEL, messages=MESSAGES)

    return asyncio.run(run())


def async_stream(base_url: str, limit: int | None) -> int:
    async def run() -> int:
        read = 0
        stream = await client(base_url).chat.stream_async(model=MODEL, messages=MESSAGES)
        async with stream:
            async for _ in stream:
                read += 1
                if limit is not None and read >= limit:
                    break
        return read

    return asyncio.run(run())


def _case(name: str, cassette: str, usage: Usage, call: Any, stream_cassette: str, stream: Any) -> ProviderCase:
    return ProviderCase(
        name=name,
        instrumentor=MistralInstrumentor,
        provider=names.PROVIDER_MISTRAL,
        operation=names.OP_CHAT,
        request_model=MODEL,
        response_model=MODEL,
        server=lambda: ReplayServer(cassette),
        call=call,
        usage=usage,
        error_reply=error_reply,
        error_type=SDKError,
        malformed_reply=malformed_reply,
        usage_keys=USAGE_KEYS,
        patched=patched,
        stream_server=lambda: ReplayServer(stream_cassette),
        stream=stream,
        stream_usage=Usage(input=11, output=80),
    )


CASES = [
    _case("mistral", "mistralai/test_mistralai_chat_legacy.yaml", Usage(input=11, output=96), sync_call,
          "mistralai/test_mistralai_streaming_chat_legacy.yaml", sync_stream),
    _case("mistral-cached-prompt", "mistralai/test_mistralai_chat_with_cache_tokens.yaml",
          Usage(input=20, output=18, cache_read=10), sync_call,
          "mistralai/test_mistralai_streaming_chat_legacy.yaml", sync_stream),
    _case("mistral-async", "mistralai/test_mistralai_async_chat_legacy.yaml", Usage(input=11, output=99), async_call,
          "mistralai/test_mistralai_async_streaming_chat_legacy.yaml", async_stream),
]
