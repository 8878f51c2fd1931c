"""Conformance cases for Amazon Bedrock through boto3 ``bedrock-runtime``: Converse, ConverseStream, InvokeModel
and InvokeModelWithResponseStream.

Recordings come from tests/cassettes/bedrock/ (see tests/cassettes/NOTICE.md); the event streams are served
byte for byte as recorded (``application/vnd.amazon.eventstream`` framing). boto3 is pointed at the replay
server with ``endpoint_url`` and fake credentials; retries are off so an error reply is sent once.
Error replies follow the restJson1 error format Bedrock uses (``x-amzn-ErrorType`` header + ``message``):
an error code the service model does not declare makes botocore raise ``botocore.exceptions.ClientError``
itself, which is what the suite compares the exception class with.
"""

from __future__ import annotations

import json
from typing import Any

import boto3
import botocore.client
import botocore.config
from botocore.exceptions import ClientError
from llmmeter import names
from llmmeter.instrumentors.bedrock import TARGETS, BedrockInstrumentor
from llmmeter.usage import Usage
from replay_server import ReplayServer, Reply

from conformance.framework import ProviderCase

MESSAGES = [{"role": "user", "content": [{"text": "Tell me a joke about opentelemetry"}]}]
USAGE_KEYS = ("inputTokens", "outputTokens", "totalTokens", "cacheReadInputTokens", "cacheWriteInputTokens")
META_MODEL = "meta.llama3-2-1b-instruct-v1:0"
PROFILE_ARN = "arn:aws:bedrock:us-east-1:012345678901:inference-profile/us.anthropic.claude-3-7-sonnet-20250219-v1:0"
HAIKU = "anthropic.claude-3-5-haiku-20241022-v1:0"
SONNET_3 = "anthropic.claude-3-sonnet-20240229-v1:0"
NOVA_PROFILE = "us.amazon.nova-lite-v1:0"
NOVA = "amazon.nova-lite-v1:0"


def client(base_url: str) -> Any:
    """A real boto3 bedrock-runtime client against the local server (fake credentials, one attempt)."""
    return boto3.client(
        "bedrock-runtime",
        region_name="us-east-1",
        endpoint_url=base_url,
        aws_access_key_id="AKIDLLMMETERTEST",
        aws_secret_access_key="not-a-secret",
        config=botocore.config.Config(retries={"max_attempts": 1, "mode": "standard"}),
    )


def error_reply(marker: str) -> Reply:
    return Reply(
        400,
        [("Content-Type", "application/json"), ("x-amzn-ErrorType", "LLMMeterTestException:http://internal/")],
        json.dumps({"message": marker}).encode(),
    )


def converse_body(usage: Any) -> Reply:
    """A Converse response (Bedrock API reference, Converse "Response Syntax") with ``usage`` as given."""
    return Reply.json(
        {
            "metrics": {"latencyMs": 100},
            "output": {"message": {"role": "assistant", "content": [{"text": "Hi there"}]}},
            "stopReason": "end_turn",
            "usage": usage,
        }
    )


def invoke_headers_reply(usage: Any) -> Reply:
    """An InvokeModel response whose token-count headers carry ``usage`` (JSON-encoded: one header line)."""
    value = usage if isinstance(usage, dict) else {"inputTokens": usage, "outputTokens": usage}
    headers = [("Content-Type", "application/json")]
    for header, key in (
        ("Input", "inputTokens"),
        ("Output", "outputTokens"),
        ("Cache-Read-Input", "cacheReadInputTokens"),
        ("Cache-Write-Input", "cacheWriteInputTokens"),
    ):
        if key in value:
            headers.append((f"X-Amzn-Bedrock-{header}-Token-Count", json.dumps(value[key])))
    return Reply(200, headers, b'{"id":"msg","type":"message","content":[],"usage":{}}')


def consume(stream: Any, limit: int | None) -> int:
    read = 0
    for _ in stream:
        read += 1
        if limit is not None and read >= limit:
            break
    stream.close()
    return read


def patched() -> list[tuple[Any, str]]:
    return [(botocore.client.BaseClient, "_make_api_call")]


# --- Converse (Meta Llama) + ConverseStream -------------------------------------------------------------


def converse_call(base_url: str) -> Any:
    return client(base_url).converse(modelId=META_MODEL, messages=MESSAGES, inferenceConfig={"temperature": 0.5})


def converse_stream(base_url: str, limit: int | None) -> int:
    response = client(base_url).converse_stream(modelId=META_MODEL, messages=MESSAGES)
    return consume(response["stream"], limit)


# --- Converse through a cross-region inference profile ARN (Claude 3.7 Sonnet) -----------------------------


def profile_call(base_url: str) -> Any:
    return client(base_url).converse(modelId=PROFILE_ARN, messages=MESSAGES)


# --- InvokeModel, Anthropic body, prompt cache write + InvokeModelWithResponseStream ------------------------


def anthropic_body(content: Any = "How do I write js?") -> str:
    return json.dumps(
        {
            "anthropic_version": "bedrock-2023-05-31",
            "max_tokens": 50,
            "messages": [{"role": "user", "content": content}],
        }
    )


def invoke_cache_call(base_url: str) -> Any:
    response = client(base_url).invoke_model(modelId=HAIKU, body=anthropic_body())
    response["body"].read()  # the app reads its body; llmmeter never does
    return response


def invoke_stream(base_url: str, limit: int | None) -> int:
    response = client(base_url).invoke_model_with_response_stream(
        modelId=SONNET_3, body=anthropic_body("Tell me a joke about opentelemetry")
    )
    return consume(response["body"], limit)


# --- InvokeModel, Amazon Nova body, through the us. inference profile + Nova stream -------------------------


def nova_body() -> str:
    return json.dumps(
        {
            "schemaVersion": "messages-v1",
            "messages": [{"role": "user", "content": [{"text": "A camping trip"}]}],
            "system": [{"text": "tell me a very two sentence story."}],
        }
    )


def nova_call(base_url: str) -> Any:
    return client(base_url).invoke_model(modelId=NOVA_PROFILE, body=nova_body())


def nova_stream(base_url: str, limit: int | None) -> int:
    response = client(base_url).invoke_model_with_response_stream(modelId=NOVA, body=nova_body())
    return consume(response["body"], limit)


CASES = [
    ProviderCase(
        name="bedrock-converse",
        instrumentor=BedrockInstrumentor,
        provider=names.PROVIDER_AWS_BEDROCK,
        operation=names.OP_CHAT,
        request_model=META_MODEL,
        server=lambda: ReplayServer("bedrock/test_meta/test_meta_converse.yaml"),
        call=converse_call,
        usage=Usage(input=52, output=30),
        error_reply=error_reply,
        error_type=ClientError,
        malformed_reply=converse_body,
        usage_keys=USAGE_KEYS,
        patched=patched,
        stream_server=lambda: ReplayServer("bedrock/test_meta/test_meta_converse_stream.yaml"),
        stream=converse_stream,
        stream_usage=Usage(input=52, output=36),
    ),
    ProviderCase(
        name="bedrock-converse-inference-profile-arn",
        instrumentor=BedrockInstrumentor,
        provider=names.PROVIDER_AWS_BEDROCK,
        operation=names.OP_CHAT,
        request_model=PROFILE_ARN,
        server=lambda: ReplayServer("bedrock/test_anthropic/test_anthropic_cross_region.yaml"),
        call=profile_call,
        usage=Usage(input=20, output=72),
        error_reply=error_reply,
        error_type=ClientError,
        malformed_reply=converse_body,
        usage_keys=USAGE_KEYS,
        patched=patched,
    ),
    ProviderCase(
        name="bedrock-invoke-anthropic-cache-write",
        instrumentor=BedrockInstrumentor,
        provider=names.PROVIDER_AWS_BEDROCK,
        operation=names.OP_CHAT,
        request_model=HAIKU,
        server=lambda: ReplayServer("bedrock/test_prompt_caching/test_invoke_model_cache_tokens.yaml"),
        call=invoke_cache_call,
        # X-Amzn-Bedrock-Input-Token-Count 4 excludes the 18131 tokens written to the cache.
        usage=Usage(input=4 + 18131, output=50, cache_creation=18131),
        error_reply=error_reply,
        error_type=ClientError,
        malformed_reply=invoke_headers_reply,
        usage_keys=USAGE_KEYS,
        patched=patched,
        stream_server=lambda: ReplayServer("bedrock/test_anthropic/test_anthropic_3_completion_streaming.yaml"),
        stream=invoke_stream,
        stream_usage=Usage(input=16, output=21),
        stream_request_model=SONNET_3,
    ),
    ProviderCase(
        name="bedrock-invoke-nova-us-profile",
        instrumentor=BedrockInstrumentor,
        provider=names.PROVIDER_AWS_BEDROCK,
        operation=names.OP_CHAT,
        request_model=NOVA_PROFILE,
        server=lambda: ReplayServer("bedrock/test_nova/test_nova_cross_region_invoke.yaml"),
        call=nova_call,
        usage=Usage(input=7, output=53),
        error_reply=error_reply,
        error_type=ClientError,
        malformed_reply=invoke_headers_reply,
        usage_keys=USAGE_KEYS,
        patched=patched,
        stream_server=lambda: ReplayServer("bedrock/test_nova/test_nova_invoke_stream.yaml"),
        stream=nova_stream,
        stream_usage=Usage(input=30, output=55),
        stream_request_model=NOVA,
    ),
]

__all__ = ["CASES", "TARGETS", "client"]
