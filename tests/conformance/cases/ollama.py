"""Conformance cases for the native ``ollama`` client: chat and generate, sync and async, plain and streamed.

Recordings: tests/cassettes/ollama/ (see NOTICE.md); the streams are ``application/x-ndjson`` as recorded.
Errors follow Ollama's API (``{"error": "..."}`` with an HTTP status), raised by the SDK as ``ResponseError``.

Ollama is priced at exactly 0 USD by the price table, so no case can pass the suite's "cost > 0" hand check
and the suite requires one per provider. Until the framework exempts zero-priced providers, these cases are
exported as ``ZERO_PRICED_CASES`` (not ``CASES``) and tests/test_ollama.py runs the suite's checks on them.
"""

from __future__ import annotations

import asyncio
from typing import Any

import ollama
from llmmeter import names
from llmmeter.instrumentors.ollama import TARGETS, OllamaInstrumentor
from llmmeter.usage import Usage
from replay_server import ReplayServer, Reply

from conformance.framework import ProviderCase

MODEL = "llama3"
MESSAGES = [{"role": "user", "content": "Tell me a joke about OpenTelemetry"}]
PROMPT = "Tell me a joke about OpenTelemetry"
USAGE_KEYS = ("prompt_eval_count", "eval_count")


def error_reply(marker: str) -> Reply:
    return Reply.json({"error": marker}, 404)


def malformed_reply(usage: Any) -> Reply:
    body: dict[str, Any] = {
        "model": MODEL, "created_at": "2024-05-24T20:01:31.01558Z",
        "message": {"role": "assistant", "content": "Hi"}, "done_reason": "stop", "done": True,
    }
    if isinstance(usage, dict):
        body.update(usage)
    else:
        body["prompt_eval_count"] = usage
        body["eval_count"] = usage
    return Reply.json(body)


def patched() -> list[tuple[Any, str]]:
    return TARGETS.owners()


def consume(stream: Any, limit: int | None) -> int:
    read = 0
    for _ in stream:
        read += 1
        if limit is not None and read >= limit:
            break
    stream.close()
    return read


def chat_call(base_url: str) -> Any:
    return ollama.Client(host=base_url).chat(model=MODEL, messages=MESSAGES)


def chat_stream(base_url: str, limit: int | None) -> int:
    return consume(ollama.Client(host=base_url).chat(model=MODEL, messages=MESSAGES, stream=True), limit)


def generate_call(base_url: str) -> Any:
    return ollama.Client(host=base_url).generate(MODEL, PROMPT)  # model and prompt positional


def generate_stream(base_url: str, limit: int | None) -> int:
    return consume(ollama.Client(host=base_url).generate(model=MODEL, prompt=PROMPT, stream=True), limit)


def async_chat_call(base_url: str) -> Any:
    async def run() -> Any:
        return await ollama.AsyncClient(host=base_url).chat(model=MODEL, messages=MESSAGES)

    return asyncio.run(run())


def async_chat_stream(base_url: str, limit: int | None) -> int:
    async def run() -> int:
        stream = await ollama.AsyncClient(host=base_url).chat(model=MODEL, messages=MESSAGES, stream=True)
        read = 0
        async for _ in stream:
            read += 1
            if limit is not None and read >= limit:
                break
        await stream.aclose()
        return read

    return asyncio.run(run())


def _case(name: str, operation: str, cassette: str, usage: Usage, call: Any, stream_cassette: str, stream: Any,
          stream_usage: Usage) -> ProviderCase:
    return ProviderCase(
        name=name,
        instrumentor=OllamaInstrumentor,
        provider=names.PROVIDER_OLLAMA,
        operation=operation,
        request_model=MODEL,
        response_model=MODEL,
        server=lambda: ReplayServer(cassette),
        call=call,
        usage=usage,
        error_reply=error_reply,
        error_type=ollama.ResponseError,
        malformed_reply=malformed_reply,
        usage_keys=USAGE_KEYS,
        patched=patched,
        stream_server=lambda: ReplayServer(stream_cassette),
        stream=stream,
        stream_usage=stream_usage,
        hand_check=False,  # priced at 0 USD on purpose
    )


ZERO_PRICED_CASES = [
    _case("ollama-chat", names.OP_CHAT, "ollama/test_ollama_chat_legacy.yaml", Usage(input=17, output=66),
          chat_call, "ollama/test_ollama_streaming_chat_legacy.yaml", chat_stream, Usage(input=17, output=50)),
    _case("ollama-generate", names.OP_TEXT_COMPLETION, "ollama/test_ollama_generation_legacy.yaml",
          Usage(input=17, output=63), generate_call, "ollama/test_ollama_streaming_generation_legacy.yaml",
          generate_stream, Usage(input=17, output=71)),
    _case("ollama-async-chat", names.OP_CHAT, "ollama/test_ollama_chat_legacy.yaml", Usage(input=17, output=66),
          async_chat_call, "ollama/test_ollama_async_streaming_chat_legacy.yaml", async_chat_stream,
          Usage(input=17, output=63)),
]
