"""Conformance cases for the ``openai`` SDK's chat completions (llmmeter.instrumentors.openai).

Recordings: tests/cassettes/openai/ (copied by the OpenAI tests; listed in tests/cassettes/NOTICE.md).
Wire format of the malformed and error replies: OpenAI API reference, "Chat Completions" object and
"Error codes" (``{"error": {"message", "type", ...}}``).
"""

from __future__ import annotations

import asyncio
import importlib
from typing import Any

import openai
from llmmeter import names
from llmmeter.instrumentors.openai import TARGETS, OpenAIInstrumentor
from llmmeter.usage import Usage
from replay_server import ReplayServer, Reply

from conformance.framework import ProviderCase

CASSETTES = "openai/tests/traces/cassettes"
JOKE = [{"role": "user", "content": "Tell me a joke about opentelemetry"}]
USAGE_KEYS = (
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "prompt_tokens_details",
    "completion_tokens_details",
)


def _client(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url + "/v1", api_key="test-key", max_retries=0)


def _async_client(base_url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=base_url + "/v1", api_key="test-key", max_retries=0)


def chat_call(base_url: str) -> Any:
    with _client(base_url) as client:
        return client.chat.completions.create(model="gpt-3.5-turbo", messages=JOKE)


def chat_stream(base_url: str, limit: int | None) -> int:
    read = 0
    with _client(base_url) as client:
        with client.chat.completions.create(model="gpt-3.5-turbo", messages=JOKE, stream=True) as stream:
            for _ in stream:
                read += 1
                if limit is not None and read >= limit:
                    break
    return read


def caching_call(base_url: str) -> Any:
    with _client(base_url) as client:
        return client.chat.completions.create(model="gpt-4o-mini", messages=JOKE)


def async_chat_call(base_url: str) -> Any:
    async def run() -> Any:
        async with _async_client(base_url) as client:
            return await client.chat.completions.create(model="gpt-3.5-turbo", messages=JOKE)

    return asyncio.run(run())


def async_chat_stream(base_url: str, limit: int | None) -> int:
    async def run() -> int:
        read = 0
        async with _async_client(base_url) as client:
            stream = await client.chat.completions.create(model="gpt-3.5-turbo", messages=JOKE, stream=True)
            async with stream:
                async for _ in stream:
                    read += 1
                    if limit is not None and read >= limit:
                        break
        return read

    return asyncio.run(run())


def error_reply(marker: str) -> Reply:
    return Reply.json({"error": {"message": marker, "type": "server_error", "param": None, "code": None}}, 500)


def malformed_reply(usage: Any) -> Reply:
    return Reply.json(
        {
            "id": "chatcmpl-llmmeter",
            "object": "chat.completion",
            "created": 1744990626,
            "model": "gpt-3.5-turbo-0125",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi!"}, "finish_reason": "stop"}],
            "usage": usage,
        }
    )


def patched() -> list[tuple[Any, str]]:
    pairs = []
    for module_name, class_name, method, _translation, _async in TARGETS:
        cls = getattr(importlib.import_module(module_name), class_name, None)
        if cls is not None and method in cls.__dict__:
            pairs.append((cls, method))
    return pairs


_COMMON: dict[str, Any] = {
    "instrumentor": OpenAIInstrumentor,
    "provider": names.PROVIDER_OPENAI,
    "operation": names.OP_CHAT,
    "error_reply": error_reply,
    "error_type": openai.InternalServerError,
    "malformed_reply": malformed_reply,
    "patched": patched,
    "usage_keys": USAGE_KEYS,
}

CASES = [
    ProviderCase(
        name="openai-chat",
        request_model="gpt-3.5-turbo",
        response_model="gpt-3.5-turbo-0125",
        server=lambda: ReplayServer(f"{CASSETTES}/test_chat/test_chat.yaml", index=0),
        call=chat_call,
        usage=Usage(input=15, output=19),
        # This recording carries a usage chunk at the end of the stream.
        stream_server=lambda: ReplayServer(f"{CASSETTES}/test_chat/test_chat_streaming.yaml"),
        stream=chat_stream,
        stream_usage=Usage(input=10, output=50),
        **_COMMON,
    ),
    ProviderCase(
        name="openai-chat-cached",
        request_model="gpt-4o-mini",
        response_model="gpt-4o-mini-2024-07-18",
        # Second recording: 1024 of the 1149 prompt tokens were read from the cache (OpenAI's
        # prompt_tokens already includes them, as semconv's input does).
        server=lambda: ReplayServer(f"{CASSETTES}/test_prompt_caching/test_openai_prompt_caching.yaml", index=1),
        call=caching_call,
        usage=Usage(input=1149, output=353, cache_read=1024),
        **_COMMON,
    ),
    ProviderCase(
        name="openai-chat-async",
        request_model="gpt-3.5-turbo",
        response_model="gpt-3.5-turbo-0125",
        server=lambda: ReplayServer(f"{CASSETTES}/test_chat/test_chat.yaml", index=0),
        call=async_chat_call,
        usage=Usage(input=15, output=19),
        # Recorded without stream_options.include_usage: no usage on the wire, the span must be estimated.
        stream_server=lambda: ReplayServer(f"{CASSETTES}/test_chat/test_chat_async_streaming.yaml"),
        stream=async_chat_stream,
        stream_usage=None,
        hand_check=False,
        **_COMMON,
    ),
]
