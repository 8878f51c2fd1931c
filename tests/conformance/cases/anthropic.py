"""Conformance cases for the ``anthropic`` SDK: first-party sync/async, beta, stream() manager, Bedrock, Vertex.

Recordings come from tests/cassettes/anthropic/ (see tests/cassettes/NOTICE.md). Where no recording
exists (Vertex AI, the Bedrock event stream), a scripted server answers in the wire format of the
Anthropic Messages API reference (https://docs.anthropic.com/en/api/messages, "Streaming Messages") and,
for Bedrock streams, the AWS event-stream framing of InvokeModelWithResponseStream.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import struct
from collections.abc import Iterable
from typing import Any

import anthropic
from anthropic.lib.streaming import _beta_messages as beta_streaming
from anthropic.lib.streaming import _messages as streaming
from anthropic.resources.beta.messages import messages as beta_resources
from anthropic.resources.messages import messages as resources
from llmmeter import names
from llmmeter.instrumentors.anthropic import AnthropicInstrumentor
from llmmeter.usage import Usage
from replay_server import ReplayServer, Reply, ScriptedServer

from conformance.framework import ProviderCase

CASSETTES = "anthropic/tests/cassettes"  # relative to tests/cassettes/
PROMPT = [{"role": "user", "content": "Tell me a joke about OpenTelemetry"}]
USAGE_KEYS = (
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "cache_creation",
    "output_tokens_details",
)
AWS_CREDS = {"aws_access_key": "AKIDLLMMETERTEST", "aws_secret_key": "not-a-secret", "aws_region": "us-east-1"}


# --- wire format helpers (also used by tests/test_anthropic*.py) -----------------------------------


def message(usage: Any, model: str = "claude-3-5-sonnet-20240620", text: str = "Hi there!") -> dict[str, Any]:
    """A Messages API response body (Anthropic Messages API reference, "Response")."""
    return {
        "id": "msg_llmmeter_test",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": usage,
    }


def stream_events(start_usage: Any, delta_usage: Any, model: str, text: Iterable[str] = ("Hi", " there")) -> list[Any]:
    """The event sequence of a streamed message (reference, "Streaming Messages")."""
    start = message(start_usage, model, "")
    start["content"] = []
    start["stop_reason"] = None
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": start},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    ]
    events += [{"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}} for t in text]
    events += [
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": delta_usage},
        {"type": "message_stop"},
    ]
    return events


def sse(events: list[Any]) -> Reply:
    """Anthropic SSE: every event carries an ``event:`` line, which the SDK dispatches on."""
    body = "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events)
    return Reply(200, [("Content-Type", "text/event-stream")], body.encode())


def _eventstream_message(headers: dict[str, str], payload: bytes) -> bytes:
    """One AWS event-stream message: prelude (lengths + CRC32), string headers, payload, message CRC32."""
    encoded = b"".join(
        struct.pack("!B", len(k)) + k.encode() + b"\x07" + struct.pack("!H", len(v)) + v.encode()
        for k, v in headers.items()
    )
    total = 12 + len(encoded) + len(payload) + 4
    prelude = struct.pack("!II", total, len(encoded))
    prelude += struct.pack("!I", binascii.crc32(prelude))
    body = prelude + encoded + payload
    return body + struct.pack("!I", binascii.crc32(body))


def bedrock_stream(events: list[Any]) -> Reply:
    """Bedrock InvokeModelWithResponseStream: each Anthropic event base64-encoded in a ``chunk`` event."""
    headers = {":event-type": "chunk", ":content-type": "application/json", ":message-type": "event"}
    body = b"".join(
        _eventstream_message(headers, json.dumps({"bytes": base64.b64encode(json.dumps(e).encode()).decode()}).encode())
        for e in events
    )
    return Reply(200, [("Content-Type", "application/vnd.amazon.eventstream")], body)


def error_reply(marker: str) -> Reply:
    return Reply.json({"type": "error", "error": {"type": "api_error", "message": marker}}, status=500)


def malformed_reply(usage: Any) -> Reply:
    return Reply.json(message(usage))


def consume(stream: Iterable[Any], limit: int | None) -> int:
    read = 0
    for _ in stream:
        read += 1
        if limit is not None and read >= limit:
            break
    return read


async def aconsume(stream: Any, limit: int | None) -> int:
    read = 0
    async for _ in stream:
        read += 1
        if limit is not None and read >= limit:
            break
    return read


def first_party_patched() -> list[tuple[Any, str]]:
    return [
        (resources.Messages, "create"),
        (resources.Messages, "stream"),
        (resources.AsyncMessages, "create"),
        (resources.AsyncMessages, "stream"),
        (beta_resources.Messages, "create"),
        (beta_resources.AsyncMessages, "stream"),
        (streaming.MessageStream, "__init__"),
        (streaming.AsyncMessageStream, "__init__"),
        (beta_streaming.BetaMessageStream, "__init__"),
        (beta_streaming.BetaAsyncMessageStream, "__init__"),
    ]


def platform_patched() -> list[tuple[Any, str]]:
    from anthropic.lib.bedrock import _beta_messages as bedrock_beta
    from anthropic.lib.vertex import _beta_messages as vertex_beta

    return [
        *first_party_patched(),
        (bedrock_beta.Messages, "create"),
        (bedrock_beta.AsyncMessages, "stream"),
        (vertex_beta.Messages, "create"),
    ]


# --- first-party, sync: create() and create(stream=True) ----------------------------------------------


def _client(base_url: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=base_url, api_key="test-key", max_retries=0)


def sync_call(base_url: str) -> Any:
    with _client(base_url) as client:
        return client.messages.create(model="claude-3-opus-20240229", max_tokens=1024, messages=PROMPT)


def sync_raw_stream(base_url: str, limit: int | None) -> int:
    with _client(base_url) as client:
        with client.messages.create(
            model="claude-3-haiku-20240307", max_tokens=1024, messages=PROMPT, stream=True
        ) as stream:
            return consume(stream, limit)


# --- first-party, sync: prompt caching + the stream() manager with its helpers ---------------------------


def caching_call(base_url: str) -> Any:
    with _client(base_url) as client:
        return client.messages.create(model="claude-3-5-sonnet-20240620", max_tokens=1024, messages=PROMPT)


def manager_stream(base_url: str, limit: int | None) -> int:
    with _client(base_url) as client:
        with client.messages.stream(model="claude-3-5-haiku-20241022", max_tokens=1024, messages=PROMPT) as stream:
            read = consume(stream, limit)
            if limit is None:
                final = stream.get_final_message()
                assert final.usage.output_tokens == 108
            return read


# --- first-party, async: create() and the async stream() manager -----------------------------------------


def async_call(base_url: str) -> Any:
    async def run() -> Any:
        async with anthropic.AsyncAnthropic(base_url=base_url, api_key="test-key", max_retries=0) as client:
            return await client.messages.create(model="claude-3-opus-20240229", max_tokens=1024, messages=PROMPT)

    return asyncio.run(run())


def async_manager_stream(base_url: str, limit: int | None) -> int:
    async def run() -> int:
        async with anthropic.AsyncAnthropic(base_url=base_url, api_key="test-key", max_retries=0) as client:
            async with client.messages.stream(
                model="claude-3-5-haiku-20241022", max_tokens=1024, messages=PROMPT
            ) as stream:
                if limit is None:
                    texts = [t async for t in stream.text_stream]
                    final = await stream.get_final_message()
                    assert "".join(texts) == final.content[0].text
                    return len(texts)
                return await aconsume(stream, limit)

    return asyncio.run(run())


# --- beta, async -------------------------------------------------------------------------------------


def beta_async_call(base_url: str) -> Any:
    async def run() -> Any:
        async with anthropic.AsyncAnthropic(base_url=base_url, api_key="test-key", max_retries=0) as client:
            return await client.beta.messages.create(model="claude-3-opus-20240229", max_tokens=1024, messages=PROMPT)

    return asyncio.run(run())


def beta_async_manager_stream(base_url: str, limit: int | None) -> int:
    async def run() -> int:
        async with anthropic.AsyncAnthropic(base_url=base_url, api_key="test-key", max_retries=0) as client:
            async with client.beta.messages.stream(
                model="claude-3-5-haiku-20241022", max_tokens=1024, messages=PROMPT
            ) as stream:
                return await aconsume(stream, limit)

    return asyncio.run(run())


# --- Bedrock (SigV4-signed with fake credentials), async -------------------------------------------------

BEDROCK_MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
BEDROCK_STREAM_EVENTS = stream_events(
    {"input_tokens": 17, "output_tokens": 1}, {"output_tokens": 42}, "claude-3-haiku-20240307"
)


def bedrock_call(base_url: str) -> Any:
    async def run() -> Any:
        client = anthropic.AsyncAnthropicBedrock(base_url=base_url, max_retries=0, **AWS_CREDS)
        try:
            return await client.messages.create(model=BEDROCK_MODEL, max_tokens=1024, messages=PROMPT)
        finally:
            await client.close()

    return asyncio.run(run())


def bedrock_stream_call(base_url: str, limit: int | None) -> int:
    client = anthropic.AnthropicBedrock(base_url=base_url, max_retries=0, **AWS_CREDS)
    with client, client.messages.create(model=BEDROCK_MODEL, max_tokens=1024, messages=PROMPT, stream=True) as s:
        return consume(s, limit)


# --- Vertex AI (wire-format server), sync ----------------------------------------------------------------

VERTEX_MODEL = "claude-sonnet-4@20250514"  # Vertex AI model ids carry the date after "@"
VERTEX_USAGE = {
    "input_tokens": 21,
    "output_tokens": 64,
    "cache_read_input_tokens": 1000,
    "cache_creation_input_tokens": 0,
}
VERTEX_STREAM_EVENTS = stream_events(
    {"input_tokens": 21, "output_tokens": 1, "cache_read_input_tokens": 1000, "cache_creation_input_tokens": 0},
    {"output_tokens": 30},
    "claude-sonnet-4-20250514",
)


def _vertex(base_url: str) -> anthropic.AnthropicVertex:
    return anthropic.AnthropicVertex(
        region="us-east5", project_id="llmmeter-test", access_token="test-token", base_url=base_url, max_retries=0
    )


def vertex_call(base_url: str) -> Any:
    with _vertex(base_url) as client:
        return client.messages.create(model=VERTEX_MODEL, max_tokens=256, messages=PROMPT)


def vertex_stream(base_url: str, limit: int | None) -> int:
    with _vertex(base_url) as client:
        with client.messages.stream(model=VERTEX_MODEL, max_tokens=256, messages=PROMPT) as stream:
            if limit is None:
                return len(list(stream.text_stream))
            return consume(stream, limit)


def _check_server_address(span: Any) -> None:
    assert span.attributes[names.SERVER_ADDRESS] == "127.0.0.1"


_COMMON: dict[str, Any] = {
    "instrumentor": AnthropicInstrumentor,
    "operation": names.OP_CHAT,
    "error_reply": error_reply,
    "error_type": anthropic.InternalServerError,
    "malformed_reply": malformed_reply,
    "usage_keys": USAGE_KEYS,
}

CASES = [
    ProviderCase(
        name="anthropic",
        provider=names.PROVIDER_ANTHROPIC,
        request_model="claude-3-opus-20240229",
        response_model="claude-3-opus-20240229",
        server=lambda: ReplayServer(f"{CASSETTES}/test_messages/test_anthropic_message_create_legacy.yaml"),
        call=sync_call,
        usage=Usage(input=17, output=220),
        stream_server=lambda: ReplayServer(f"{CASSETTES}/test_messages/test_anthropic_message_streaming_legacy.yaml"),
        stream=sync_raw_stream,
        stream_usage=Usage(input=17, output=171),
        stream_request_model="claude-3-haiku-20240307",
        patched=first_party_patched,
        extra_checks=[_check_server_address],
        **_COMMON,
    ),
    ProviderCase(
        name="anthropic-caching-stream-manager",
        provider=names.PROVIDER_ANTHROPIC,
        request_model="claude-3-5-sonnet-20240620",
        response_model="claude-3-5-sonnet-20240620",
        # First recording: a cache write of 1163 tokens; Anthropic's input_tokens (4) excludes it.
        server=lambda: ReplayServer(
            f"{CASSETTES}/test_prompt_caching/test_anthropic_prompt_caching_legacy.yaml", index=0
        ),
        call=caching_call,
        usage=Usage(input=4 + 1163, output=187, cache_creation=1163),
        stream_server=lambda: ReplayServer(
            f"{CASSETTES}/test_messages/test_anthropic_message_stream_manager_legacy.yaml"
        ),
        stream=manager_stream,
        stream_usage=Usage(input=17, output=108),
        stream_request_model="claude-3-5-haiku-20241022",
        patched=first_party_patched,
        **_COMMON,
    ),
    ProviderCase(
        name="anthropic-async",
        provider=names.PROVIDER_ANTHROPIC,
        request_model="claude-3-opus-20240229",
        response_model="claude-3-opus-20240229",
        server=lambda: ReplayServer(f"{CASSETTES}/test_messages/test_async_anthropic_message_create_legacy.yaml"),
        call=async_call,
        usage=Usage(input=17, output=189),
        stream_server=lambda: ReplayServer(
            f"{CASSETTES}/test_messages/test_async_anthropic_message_stream_manager_legacy.yaml"
        ),
        stream=async_manager_stream,
        stream_usage=Usage(input=17, output=79),
        stream_request_model="claude-3-5-haiku-20241022",
        patched=first_party_patched,
        hand_check=False,
        **_COMMON,
    ),
    ProviderCase(
        name="anthropic-beta-async",
        provider=names.PROVIDER_ANTHROPIC,
        request_model="claude-3-opus-20240229",
        response_model="claude-3-opus-20240229",
        server=lambda: ReplayServer(f"{CASSETTES}/test_messages/test_async_anthropic_message_create_legacy.yaml"),
        call=beta_async_call,
        usage=Usage(input=17, output=189),
        stream_server=lambda: ReplayServer(
            f"{CASSETTES}/test_messages/test_async_anthropic_beta_message_stream_manager_legacy.yaml"
        ),
        stream=beta_async_manager_stream,
        stream_usage=Usage(input=17, output=20),
        stream_request_model="claude-3-5-haiku-20241022",
        patched=first_party_patched,
        hand_check=False,
        **_COMMON,
    ),
    ProviderCase(
        name="anthropic-bedrock",
        provider=names.PROVIDER_AWS_BEDROCK,
        request_model=BEDROCK_MODEL,
        response_model="claude-3-haiku-20240307",
        server=lambda: ReplayServer(
            f"{CASSETTES}/test_bedrock_with_raw_response/test_async_anthropic_bedrock_regular_create.yaml"
        ),
        call=bedrock_call,
        usage=Usage(input=17, output=50),
        stream_server=lambda: ScriptedServer(lambda request: bedrock_stream(BEDROCK_STREAM_EVENTS)),
        stream=bedrock_stream_call,
        stream_usage=Usage(input=17, output=42),
        patched=platform_patched,
        **_COMMON,
    ),
    ProviderCase(
        name="anthropic-vertex",
        provider=names.PROVIDER_GCP_VERTEX_AI,
        request_model=VERTEX_MODEL,
        response_model="claude-sonnet-4-20250514",
        server=lambda: ScriptedServer(lambda request: Reply.json(message(VERTEX_USAGE, "claude-sonnet-4-20250514"))),
        call=vertex_call,
        usage=Usage(input=1021, output=64, cache_read=1000),
        stream_server=lambda: ScriptedServer(lambda request: sse(VERTEX_STREAM_EVENTS)),
        stream=vertex_stream,
        stream_usage=Usage(input=1021, output=30, cache_read=1000),
        patched=platform_patched,
        **_COMMON,
    ),
]
