"""Conformance cases for the Google GenAI SDK (``google-genai``): generate_content and generate_content_stream,
sync and async (``client.aio``), Gemini Developer API.

The non-streaming call replays a recording of google-genai 1.52 against the Gemini API
(tests/cassettes/google-generativeai/test_client_spans.yaml, see NOTICE.md): gemini-2.5-flash with
``thoughtsTokenCount``. No streamed recording exists, so streams are scripted in the wire format documented in
the Gemini API reference (https://ai.google.dev/api/generate-content: ``models.streamGenerateContent`` with
``alt=sse`` sends one ``GenerateContentResponse`` per ``data:`` event; ``UsageMetadata`` fields
``promptTokenCount``, ``cachedContentTokenCount``, ``candidatesTokenCount``, ``thoughtsTokenCount``,
``totalTokenCount``; errors are ``{"error": {"code", "message", "status"}}``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from google import genai
from google.genai import errors, types
from llmmeter import names
from llmmeter.instrumentors.google_genai import TARGETS, GoogleGenAIInstrumentor
from llmmeter.usage import Usage
from replay_server import ReplayServer, Reply, ScriptedServer

from conformance.framework import ProviderCase

MODEL = "gemini-2.5-flash"
USAGE_KEYS = (
    "promptTokenCount",
    "candidatesTokenCount",
    "thoughtsTokenCount",
    "cachedContentTokenCount",
    "toolUsePromptTokenCount",
    "totalTokenCount",
)
# The recording: promptTokenCount 5, candidatesTokenCount 877, thoughtsTokenCount 1058 (output = 877 + 1058).
RECORDED_USAGE = Usage(input=5, output=877 + 1058, reasoning=1058)
# The scripted stream: 2053 prompt tokens of which 2048 come from a context cache, 12 + 30 thinking out.
STREAM_USAGE = Usage(input=2053, output=12 + 30, cache_read=2048, reasoning=30)


def client(base_url: str) -> genai.Client:
    return genai.Client(api_key="test-key", http_options=types.HttpOptions(base_url=base_url))


def response_body(usage: Any, text: str = "Hi there", finish: str | None = "STOP") -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    body: dict[str, Any] = {"candidates": [candidate], "modelVersion": MODEL, "responseId": "resp-llmmeter-test"}
    if usage is not None:
        body["usageMetadata"] = usage
    return body


def stream_reply() -> Reply:
    chunks = [
        response_body(
            {"promptTokenCount": 2053, "cachedContentTokenCount": 2048, "totalTokenCount": 2053}, text=t, finish=None
        )
        for t in ("Artificial", " intelligence", " is")
    ]
    chunks.append(
        response_body(
            {
                "promptTokenCount": 2053,
                "cachedContentTokenCount": 2048,
                "candidatesTokenCount": 12,
                "thoughtsTokenCount": 30,
                "totalTokenCount": 2095,
            },
            text=" machines that learn.",
        )
    )
    return Reply.sse(chunks, done=False)


def error_reply(marker: str) -> Reply:
    return Reply.json({"error": {"code": 400, "message": marker, "status": "INVALID_ARGUMENT"}}, status=400)


def malformed_reply(usage: Any) -> Reply:
    return Reply.json(response_body(usage))


def patched() -> list[tuple[Any, str]]:
    return TARGETS.owners()


def sync_call(base_url: str) -> Any:
    genai_client = client(base_url)  # kept referenced: a collected Client closes its HTTP client
    return genai_client.models.generate_content(model=MODEL, contents="What is ai?")


def sync_stream(base_url: str, limit: int | None) -> int:
    genai_client = client(base_url)
    stream = genai_client.models.generate_content_stream(model=MODEL, contents="What is ai?")
    read = 0
    for _ in stream:
        read += 1
        if limit is not None and read >= limit:
            break
    stream.close()
    return read


def async_call(base_url: str) -> Any:
    async def run() -> Any:
        genai_client = client(base_url)
        return await genai_client.aio.models.generate_content(model=MODEL, contents="What is ai?")

    return asyncio.run(run())


def async_stream(base_url: str, limit: int | None) -> int:
    async def run() -> int:
        genai_client = client(base_url)
        stream = await genai_client.aio.models.generate_content_stream(model=MODEL, contents="What is ai?")
        read = 0
        async for _ in stream:
            read += 1
            if limit is not None and read >= limit:
                break
        await stream.aclose()
        return read

    return asyncio.run(run())


def _common(name: str, call: Any, stream: Any) -> ProviderCase:
    return ProviderCase(
        name=name,
        instrumentor=GoogleGenAIInstrumentor,
        provider=names.PROVIDER_GCP_GEN_AI,
        operation=names.OP_GENERATE_CONTENT,
        request_model=MODEL,
        response_model=MODEL,
        server=lambda: ReplayServer("google-generativeai/test_client_spans.yaml"),
        call=call,
        usage=RECORDED_USAGE,
        error_reply=error_reply,
        error_type=errors.ClientError,
        malformed_reply=malformed_reply,
        usage_keys=USAGE_KEYS,
        patched=patched,
        stream_server=lambda: ScriptedServer(lambda request: stream_reply()),
        stream=stream,
        stream_usage=STREAM_USAGE,
    )


CASES = [
    _common("google-genai", sync_call, sync_stream),
    _common("google-genai-async", async_call, async_stream),
]
