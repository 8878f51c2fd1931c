"""Uninstrument restores exactly llmmeter's wrappers: after the singleton is re-created, and beside another
instrumentor stacked on top (whose wrapper must survive ours being removed)."""

from __future__ import annotations

import anthropic.resources.messages.messages as anthropic_messages
import openai
import openai.resources.chat.completions.completions as chat_completions
from llmmeter.instrumentors._wrap import is_ours
from llmmeter.instrumentors.anthropic import AnthropicInstrumentor
from llmmeter.instrumentors.openai import OpenAIInstrumentor
from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor as OfficialOpenAIInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from replay_server import Reply, scripted


def test_anthropic_uninstrument_after_the_singleton_is_created_again() -> None:
    original = anthropic_messages.Messages.__dict__["create"]
    AnthropicInstrumentor().instrument(tracer_provider=TracerProvider())
    assert is_ours(anthropic_messages.Messages.__dict__["create"])
    AnthropicInstrumentor()  # entry-point loaders do this; BaseInstrumentor re-runs __init__ on the singleton
    AnthropicInstrumentor().uninstrument()
    assert anthropic_messages.Messages.__dict__["create"] is original


def test_openai_uninstrument_leaves_another_instrumentors_wrapper_on_top() -> None:
    original = chat_completions.Completions.__dict__["create"]
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    OpenAIInstrumentor().instrument(tracer_provider=provider)
    official = OfficialOpenAIInstrumentor()
    official.instrument(tracer_provider=provider)
    try:
        on_top = chat_completions.Completions.__dict__["create"]
        assert not is_ours(on_top) and is_ours(on_top.__wrapped__)
        OpenAIInstrumentor().uninstrument()
        assert chat_completions.Completions.__dict__["create"] is on_top  # theirs stays in place...
        assert on_top.__wrapped__ is original  # ...and ours is gone from under it
        body = {"id": "c1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}}
        with scripted(lambda request: Reply.json(body)) as server:
            client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="test-key", max_retries=0)
            result = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
        assert result.choices[0].message.content == "hi"
        scopes = [span.instrumentation_scope.name for span in exporter.get_finished_spans()]
        assert len(scopes) == 1 and not scopes[0].startswith("llmmeter"), scopes  # only theirs still measures
    finally:
        official.uninstrument()
    assert chat_completions.Completions.__dict__["create"] is original
