"""Bedrock (boto3 bedrock-runtime) specifics beyond the conformance suite: every InvokeModel body format
(Anthropic, Meta, Mistral, Amazon Titan / Nova, Cohere), prompt-cache reads, inference-profile pricing,
stream estimates, and calls llmmeter must leave alone.

Recordings: tests/cassettes/bedrock/ (NOTICE.md). The Mistral-on-Bedrock stream has no recording: it is
scripted in the body format of the Bedrock user guide ("Mistral AI models", InvokeModelWithResponseStream
response: ``outputs[].text`` / ``stop_reason``) inside the same event-stream framing the recordings use.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from conformance.cases.anthropic import bedrock_stream
from conformance.cases.bedrock import client
from llmmeter import estimate, names
from llmmeter.call import REASON_STREAM_CLOSED_EARLY
from llmmeter.instrumentors.bedrock import BedrockInstrumentor
from llmmeter.pricing import price_usage
from llmmeter.usage import Usage
from replay_server import Reply, replay, scripted

MISTRAL = "mistral.mistral-7b-instruct-v0:2"


@pytest.fixture
def meter(telemetry: Any) -> Iterator[Any]:
    instrumentor = BedrockInstrumentor()
    instrumentor.instrument(tracer_provider=telemetry.tracer_provider)
    try:
        yield telemetry
    finally:
        instrumentor.uninstrument()


def only(telemetry: Any) -> dict[str, Any]:
    spans = telemetry.llm_spans()
    assert len(spans) == 1, [s.name for s in spans]
    return dict(spans[0].attributes or {})


def assert_priced(attrs: dict[str, Any], model: str, usage: Usage, price_key: str) -> None:
    assert attrs[names.USAGE_INPUT_TOKENS] == usage.input
    assert attrs[names.USAGE_OUTPUT_TOKENS] == usage.output
    assert attrs.get(names.USAGE_CACHE_READ_TOKENS, 0) == usage.cache_read
    assert attrs.get(names.USAGE_CACHE_CREATION_TOKENS, 0) == usage.cache_creation
    cost = price_usage(names.PROVIDER_AWS_BEDROCK, model, usage)
    assert cost.priced and cost.price_key == price_key
    assert attrs[names.LLMMETER_PRICE_MODEL] == price_key
    assert attrs[names.COST_USD] == pytest.approx(cost.usd, rel=1e-12)
    assert attrs[names.LLMMETER_ESTIMATED] is False


@pytest.mark.parametrize(
    ("cassette", "model", "body", "operation", "usage", "price_key"),
    [
        ("bedrock/test_meta/test_meta_llama3_completion.yaml", "meta.llama3-70b-instruct-v1:0",
         {"prompt": "Tell me a joke about opentelemetry", "max_gen_len": 128}, names.OP_TEXT_COMPLETION,
         Usage(input=8, output=35), "meta.llama3-70b-instruct-v1:0"),
        ("bedrock/test_titan/test_titan_completion.yaml", "amazon.titan-text-express-v1",
         {"inputText": "Translate to spanish", "textGenerationConfig": {"maxTokenCount": 200}},
         names.OP_TEXT_COMPLETION, Usage(input=30, output=29), "amazon.titan-text-express-v1"),
        ("bedrock/test_cohere/test_cohere_completion.yaml", "cohere.command-text-v14",
         {"prompt": "Tell me a joke about opentelemetry", "max_tokens": 200}, names.OP_TEXT_COMPLETION,
         Usage(input=9, output=112), "cohere.command-text-v14"),
    ],
    ids=["meta", "titan", "cohere"],
)
def test_invoke_model_body_formats_use_the_token_headers(
    meter: Any, cassette: str, model: str, body: dict[str, Any], operation: str, usage: Usage, price_key: str
) -> None:
    with replay(cassette) as server:
        response = client(server.base_url).invoke_model(modelId=model, body=json.dumps(body))
    # The app's body is untouched: still readable, byte for byte what the server sent.
    assert json.loads(response["body"].read()) == server.interactions[0].response_json
    attrs = only(meter)
    assert attrs[names.OPERATION] == operation
    assert attrs[names.RESPONSE_ID] == response["ResponseMetadata"]["RequestId"]
    assert_priced(attrs, model, usage, price_key)


def test_invoke_model_cache_read_is_priced_at_the_cache_rate(meter: Any) -> None:
    model = "anthropic.claude-3-5-haiku-20241022-v1:0"
    with replay("bedrock/test_prompt_caching/test_invoke_model_cache_tokens.yaml", index=1) as server:
        client(server.base_url).invoke_model(modelId=model, body=json.dumps({"messages": []}))
    attrs = only(meter)
    usage = Usage(input=4 + 18131, output=50, cache_read=18131)
    assert_priced(attrs, model, usage, model)
    # A cache read costs less than the same tokens at the plain input rate.
    assert attrs[names.COST_USD] < price_usage(names.PROVIDER_AWS_BEDROCK, model, Usage(input=18135, output=50)).usd


def test_region_prefixed_profile_is_priced_as_the_base_model(meter: Any) -> None:
    with replay("bedrock/test_nova/test_nova_cross_region_invoke.yaml") as server:
        client(server.base_url).invoke_model(modelId="us.amazon.nova-lite-v1:0", body=b'{"messages": []}')
    attrs = only(meter)
    assert attrs[names.REQUEST_MODEL] == "us.amazon.nova-lite-v1:0"
    assert_priced(attrs, "us.amazon.nova-lite-v1:0", Usage(input=7, output=53), "amazon.nova-lite-v1:0")
    assert meter.metric_total(names.METRIC_COST) == pytest.approx(attrs[names.COST_USD], rel=1e-12)


def test_titan_stream_reads_invocation_metrics(meter: Any) -> None:
    with replay("bedrock/test_titan/test_titan_invoke_stream.yaml") as server:
        response = client(server.base_url).invoke_model_with_response_stream(
            modelId="amazon.titan-text-express-v1", body=json.dumps({"inputText": "How do I play tennis in Japan?"})
        )
        events = list(response["body"])
    assert len(events) == 3 and all("chunk" in e for e in events)
    attrs = only(meter)
    assert attrs[names.REQUEST_STREAM] is True
    assert_priced(attrs, "amazon.titan-text-express-v1", Usage(input=28, output=188), "amazon.titan-text-express-v1")


def _mistral_events() -> list[dict[str, Any]]:
    words = ["Why", " did", " the", " span", " cross", " the", " road?"]
    events: list[dict[str, Any]] = [{"outputs": [{"text": w, "stop_reason": None}]} for w in words]
    events[-1]["outputs"][0]["stop_reason"] = "stop"
    events[-1]["amazon-bedrock-invocationMetrics"] = {
        "inputTokenCount": 12, "outputTokenCount": 9, "invocationLatency": 300, "firstByteLatency": 100,
    }
    return events


def test_mistral_stream_full_and_partial(meter: Any) -> None:
    body = json.dumps({"prompt": "<s>[INST] Tell me a joke about opentelemetry [/INST]", "max_tokens": 50})
    with scripted(lambda request: bedrock_stream(_mistral_events())) as server:
        response = client(server.base_url).invoke_model_with_response_stream(modelId=MISTRAL, body=body)
        assert sum(1 for _ in response["body"]) == 7
    attrs = only(meter)
    assert attrs[names.FINISH_REASONS] == ("stop",)
    assert_priced(attrs, MISTRAL, Usage(input=12, output=9), MISTRAL)

    meter.exporter.clear()
    estimate.warm_up(wait=True)
    with scripted(lambda request: bedrock_stream(_mistral_events())) as server:
        response = client(server.base_url).invoke_model_with_response_stream(modelId=MISTRAL, body=body)
        stream = response["body"]
        for read, _ in enumerate(stream, start=1):
            if read == 3:
                break
        stream.close()
    attrs = only(meter)
    assert attrs[names.LLMMETER_ESTIMATED] is True
    assert attrs[names.LLMMETER_ESTIMATED_REASON] == REASON_STREAM_CLOSED_EARLY
    assert attrs[names.USAGE_OUTPUT_TOKENS] == estimate.count_tokens("Why did the", MISTRAL)[0]
    assert attrs[names.USAGE_INPUT_TOKENS] == estimate.count_tokens(json.loads(body)["prompt"], MISTRAL)[0]


def test_other_services_and_operations_pass_through(meter: Any) -> None:
    import boto3

    with scripted(lambda request: Reply.json({"modelSummaries": []})) as server:
        control = boto3.client("bedrock", region_name="us-east-1", endpoint_url=server.base_url,
                               aws_access_key_id="AKIDLLMMETERTEST", aws_secret_access_key="not-a-secret")
        assert control.list_foundation_models()["modelSummaries"] == []  # service "bedrock", not "-runtime"
    guardrail_reply = Reply.json({"action": "NONE", "outputs": [], "assessments": [], "usage": {}})
    with scripted(lambda request: guardrail_reply) as server:
        client(server.base_url).apply_guardrail(
            guardrailIdentifier="g", guardrailVersion="1", source="INPUT", content=[{"text": {"text": "hi"}}]
        )
    assert meter.llm_spans() == []
    assert meter.spans() == []
