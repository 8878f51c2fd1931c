"""OpenTelemetry instrumentor for the LiteLLM SDK: ``completion`` / ``acompletion`` / ``embedding`` / ``aembedding``.

LiteLLM answers in the OpenAI shapes (``ModelResponse`` / ``ModelResponseStream`` / ``EmbeddingResponse``),
so the OpenAI translations read it; what differs is where the provider comes from: LiteLLM's model string
(``anthropic/claude-3-5-haiku``, ``bedrock/...``, or a bare OpenAI model), resolved with
``litellm.get_llm_provider`` and named with the semconv ``gen_ai.provider.name`` values; the span's model is
the provider's model name (what the price table knows).

Exactly once: LiteLLM calls some providers through their own SDKs (OpenAI, Azure OpenAI) and others over
plain HTTP (Anthropic, Bedrock, Gemini, ...). The LiteLLM span measures the call in both cases, and while
it is being made the provider SDK instrumentors underneath pass through (``_wrap.inside_measured_call``):
one span, one price, one guard check per call, whichever path LiteLLM takes.

LiteLLM's own cost (``response._hidden_params["response_cost"]``) comes from its bundled price map; llmmeter
prices with its own table, so the two can differ where the maps differ (see tests/test_litellm.py).
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any, ClassVar

from opentelemetry import trace
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]

from llmmeter import config
from llmmeter.frameworks import _runs
from llmmeter.instrumentors._wrap import async_wrapper, sync_wrapper
from llmmeter.instrumentors.openai_._chat import ChatTranslation
from llmmeter.instrumentors.openai_._legacy import EmbeddingsTranslation

_log = logging.getLogger(__name__)

TRACER_NAME = "llmmeter.instrumentors.litellm"

# LiteLLM provider name -> gen_ai.provider.name (semconv well-known values where one exists).
PROVIDERS: dict[str, str] = {
    "openai": "openai", "text-completion-openai": "openai", "azure": "azure.ai.openai",
    "azure_text": "azure.ai.openai", "anthropic": "anthropic", "bedrock": "aws.bedrock",
    "bedrock_converse": "aws.bedrock", "vertex_ai": "gcp.vertex_ai", "vertex_ai_beta": "gcp.vertex_ai",
    "gemini": "gcp.gemini", "mistral": "mistral_ai", "cohere": "cohere", "cohere_chat": "cohere",
    "groq": "groq", "deepseek": "deepseek", "xai": "x_ai", "perplexity": "perplexity",
    "watsonx": "ibm.watsonx.ai", "ollama": "ollama", "ollama_chat": "ollama",
}


def _merged(args: tuple[Any, ...], kwargs: dict[str, Any], second: str) -> dict[str, Any]:
    """``completion(model, messages, ...)`` / ``embedding(model, input, ...)``: positional args as keywords."""
    merged = dict(kwargs)
    if args:
        merged.setdefault("model", args[0])
    if len(args) > 1:
        merged.setdefault(second, args[1])
    return merged


def _resolve(request: Any, merged: dict[str, Any]) -> Any:
    model = merged.get("model")
    if request is None or not isinstance(model, str):
        return request
    provider_name, model_name = None, model
    try:
        import litellm

        model_name, provider_name, _, _ = litellm.get_llm_provider(
            model=model, custom_llm_provider=merged.get("custom_llm_provider")
        )
    except Exception:
        if "/" in model:
            provider_name, model_name = model.split("/", 1)
    request.provider = PROVIDERS.get(str(provider_name), str(provider_name or "openai"))
    request.model = model_name or model
    return request


class LiteLLMChatTranslation(ChatTranslation):
    def request(self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        merged = _merged(args, kwargs, "messages")
        return _resolve(super().request(None, (), merged), merged)

    def prepare_kwargs(self, request: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        return kwargs  # never changes a LiteLLM call (positional arguments stay where the app put them)


class LiteLLMEmbeddingsTranslation(EmbeddingsTranslation):
    def request(self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        merged = _merged(args, kwargs, "input")
        return _resolve(super().request(None, (), merged), merged)


_chat, _embeddings = LiteLLMChatTranslation(), LiteLLMEmbeddingsTranslation()


def _get_tracer() -> trace.Tracer:
    return _tracer


_tracer: trace.Tracer = trace.get_tracer(TRACER_NAME)

TARGETS = (
    ("litellm", "completion", sync_wrapper(_get_tracer, _chat, measured=True)),
    ("litellm", "acompletion", async_wrapper(_get_tracer, _chat, measured=True)),
    ("litellm", "embedding", sync_wrapper(_get_tracer, _embeddings, measured=True)),
    ("litellm", "aembedding", async_wrapper(_get_tracer, _embeddings, measured=True)),
)


class LiteLLMInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """``LiteLLMInstrumentor().instrument(tracer_provider=...)``; entry point ``llmmeter_litellm``."""

    _wrapped: ClassVar[list[tuple[Any, str]]] = []

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("litellm >= 1.110",)

    def _instrument(self, **kwargs: Any) -> None:
        global _tracer
        config.settings()
        _tracer = trace.get_tracer(TRACER_NAME, tracer_provider=kwargs.get("tracer_provider"))
        LiteLLMInstrumentor._wrapped = _runs.wrap_targets("litellm", TARGETS)

    def _uninstrument(self, **kwargs: Any) -> None:
        _runs.unwrap_all(LiteLLMInstrumentor._wrapped)
