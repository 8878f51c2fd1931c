"""OpenTelemetry instrumentor for the OpenAI Python SDK (and OpenAI-compatible hosts, Azure OpenAI).

Wraps the SDK's resource methods (the classes, so every client, including ``AzureOpenAI`` and clients
created before instrumentation, is covered):

* ``chat.completions.create`` / ``.parse`` (``.stream()`` calls ``create``; ``with_raw_response``
  calls the same methods) -> ``chat`` spans
* ``responses.create`` / ``.parse`` (``.stream()`` calls ``create``) -> ``chat`` spans
* ``embeddings.create`` -> ``embeddings`` spans; ``completions.create`` -> ``text_completion`` spans

The provider is read from the client: ``AzureOpenAI`` -> ``azure.ai.openai`` (the request model is
then the deployment name; the response's model is the real one and is what gets priced), otherwise
the ``base_url`` host names OpenAI-compatible providers (Groq, DeepSeek, OpenRouter, Together,
Fireworks, xAI, Perplexity, Mistral, Ollama); unknown hosts are reported as ``openai``.

Streaming usage. OpenAI sends token usage in a stream only when asked with
``stream_options={"include_usage": True}``. Without it llmmeter estimates the tokens with tiktoken and
marks the span (``llmmeter.usage.estimated`` / ``llmmeter.usage.estimated_reason``). Setting
``LLMMETER_STREAM_INCLUDE_USAGE=true`` makes llmmeter add that option to streaming chat calls that do
not set ``stream_options`` themselves, so streams are measured exactly. Its effect on the app: the
stream then yields ONE EXTRA FINAL CHUNK whose ``choices`` list is empty (it carries ``usage``). Code
that indexes ``chunk.choices[0]`` on every chunk breaks on it, which is why it is off by default.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Collection
from typing import Any

import wrapt
from opentelemetry import trace
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]

from llmmeter import config, estimate
from llmmeter.instrumentors._wrap import Translation, async_wrapper, sync_wrapper, unwrap_ours
from llmmeter.instrumentors.openai_._chat import ChatTranslation
from llmmeter.instrumentors.openai_._legacy import CompletionsTranslation, EmbeddingsTranslation
from llmmeter.instrumentors.openai_._responses import ResponsesTranslation

_log = logging.getLogger(__name__)

TRACER_NAME = "llmmeter.instrumentors.openai"
_chat, _responses = ChatTranslation(), ResponsesTranslation()
_embeddings, _completions = EmbeddingsTranslation(), CompletionsTranslation()

# (module, class, method, translation, is_async). Methods missing from the installed SDK are skipped.
TARGETS: tuple[tuple[str, str, str, Translation, bool], ...] = (
    ("openai.resources.chat.completions", "Completions", "create", _chat, False),
    ("openai.resources.chat.completions", "Completions", "parse", _chat, False),
    ("openai.resources.chat.completions", "AsyncCompletions", "create", _chat, True),
    ("openai.resources.chat.completions", "AsyncCompletions", "parse", _chat, True),
    ("openai.resources.responses", "Responses", "create", _responses, False),
    ("openai.resources.responses", "Responses", "parse", _responses, False),
    ("openai.resources.responses", "AsyncResponses", "create", _responses, True),
    ("openai.resources.responses", "AsyncResponses", "parse", _responses, True),
    ("openai.resources.embeddings", "Embeddings", "create", _embeddings, False),
    ("openai.resources.embeddings", "AsyncEmbeddings", "create", _embeddings, True),
    ("openai.resources.completions", "Completions", "create", _completions, False),
    ("openai.resources.completions", "AsyncCompletions", "create", _completions, True),
)


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("llmmeter")
    except Exception:
        return "0"


def _target_class(module_name: str, class_name: str) -> Any:
    try:
        return getattr(importlib.import_module(module_name), class_name, None)
    except ImportError:
        return None


class OpenAIInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """``OpenAIInstrumentor().instrument(tracer_provider=...)``; entry point ``llmmeter_openai``."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("openai >= 1.40",)

    def _instrument(self, **kwargs: Any) -> None:
        config.settings()  # a bad LLMMETER_* / capture variable fails here, at start-up, not mid-call
        tracer = trace.get_tracer(TRACER_NAME, _version(), kwargs.get("tracer_provider"))
        estimate.warm_up()  # tokenizer vocabularies load in the background, never on an app's call

        def get_tracer() -> trace.Tracer:
            return tracer

        for module_name, class_name, method, translation, is_async in TARGETS:
            cls = _target_class(module_name, class_name)
            if cls is None or not callable(getattr(cls, method, None)):
                _log.debug("llmmeter: %s.%s.%s not in this openai version", module_name, class_name, method)
                continue
            make = async_wrapper if is_async else sync_wrapper
            wrapt.wrap_function_wrapper(cls, method, make(get_tracer, translation))

    def _uninstrument(self, **kwargs: Any) -> None:
        # BaseInstrumentor is a singleton whose __init__ may run again: derive the targets, keep no state.
        # unwrap_ours() also recognises the *bound* wrapper of ours that OTel's unwrap() leaves behind when
        # another instrumentor wrapped ours and was removed first, and never removes another's wrapper.
        for module_name, class_name, method, _, _ in TARGETS:
            cls = _target_class(module_name, class_name)
            if cls is not None:
                unwrap_ours(cls, method)
