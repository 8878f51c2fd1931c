"""google-genai specifics beyond the conformance suite: Vertex AI provider naming, and one span per HTTP
request when the SDK sends several for one app call (automatic function calling).

Wire format: Gemini API reference (https://ai.google.dev/api/generate-content, GenerateContentResponse,
FunctionCall parts, UsageMetadata); the Vertex AI path is the SDK's own
(``projects/<p>/locations/<l>/publishers/google/models/<m>:generateContent``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import google.oauth2.credentials
import pytest
from conformance.cases.google_genai import MODEL, response_body
from google import genai
from google.genai import types
from llmmeter import names
from llmmeter.instrumentors.google_genai import GoogleGenAIInstrumentor
from llmmeter.pricing import price_usage
from llmmeter.usage import Usage
from replay_server import RecordedRequest, Reply, scripted


@pytest.fixture
def meter(telemetry: Any) -> Iterator[Any]:
    instrumentor = GoogleGenAIInstrumentor()
    instrumentor.instrument(tracer_provider=telemetry.tracer_provider)
    try:
        yield telemetry
    finally:
        instrumentor.uninstrument()


def test_vertex_client_reports_vertex_provider(meter: Any) -> None:
    usage = {"promptTokenCount": 10, "candidatesTokenCount": 4, "totalTokenCount": 14}
    with scripted(lambda request: Reply.json(response_body(usage))) as server:
        client = genai.Client(
            vertexai=True,
            project="llmmeter-test",
            location="us-central1",
            credentials=google.oauth2.credentials.Credentials(token="test-token"),
            http_options=types.HttpOptions(base_url=server.base_url),
        )
        client.models.generate_content(model=MODEL, contents="hi")
        assert "/publishers/google/models/gemini-2.5-flash:generateContent" in server.requests[0].path
    (span,) = meter.llm_spans()
    attrs = dict(span.attributes or {})
    assert attrs[names.PROVIDER] == names.PROVIDER_GCP_VERTEX_AI
    assert attrs[names.USAGE_INPUT_TOKENS] == 10 and attrs[names.USAGE_OUTPUT_TOKENS] == 4
    expected = price_usage(names.PROVIDER_GCP_VERTEX_AI, MODEL, Usage(input=10, output=4))
    assert expected.priced and attrs[names.COST_USD] == pytest.approx(expected.usd, rel=1e-12)


def get_weather(city: str) -> str:
    """Returns the weather in a city."""
    return f"sunny in {city}"


def test_automatic_function_calling_counts_every_request(meter: Any) -> None:
    def reply(request: RecordedRequest) -> Reply:
        if len(request.json["contents"]) == 1:  # first turn: the model asks for the tool
            body = response_body({"promptTokenCount": 40, "candidatesTokenCount": 7, "totalTokenCount": 47})
            body["candidates"][0]["content"]["parts"] = [
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}
            ]
            return Reply.json(body)
        return Reply.json(response_body({"promptTokenCount": 60, "candidatesTokenCount": 9, "totalTokenCount": 69},
                                        text="It is sunny in Paris."))

    with scripted(reply) as server:
        client = genai.Client(api_key="test-key", http_options=types.HttpOptions(base_url=server.base_url))
        result = client.models.generate_content(
            model=MODEL, contents="Weather in Paris?", config=types.GenerateContentConfig(tools=[get_weather])
        )
        assert len(server.requests) == 2
    assert result.text == "It is sunny in Paris."
    spans = sorted(meter.llm_spans(), key=lambda s: s.start_time)
    assert [dict(s.attributes or {})[names.USAGE_INPUT_TOKENS] for s in spans] == [40, 60]
    assert [dict(s.attributes or {})[names.USAGE_OUTPUT_TOKENS] for s in spans] == [7, 9]
    total = meter.metric_total(names.METRIC_TOKENS, **{names.LABEL_TOKEN_TYPE: "input"})
    assert total == 100
