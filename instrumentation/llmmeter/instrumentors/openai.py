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

from llmmeter.instrumentors._common import Target, Targets, TargetsInstrumentor
from llmmeter.instrumentors._wrap import Translation, async_wrapper, sync_wrapper
from llmmeter.instrumentors.openai_._chat import ChatTranslation
from llmmeter.instrumentors.openai_._legacy import CompletionsTranslation, EmbeddingsTranslation
from llmmeter.instrumentors.openai_._responses import ResponsesTranslation

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


def _target(module: str, cls: str, method: str, translation: Translation, is_async: bool) -> Target:
    make = async_wrapper if is_async else sync_wrapper
    return Target(module, cls, method, lambda get_tracer: make(get_tracer, translation))


class OpenAIInstrumentor(TargetsInstrumentor):
    """``OpenAIInstrumentor().instrument(tracer_provider=...)``; entry point ``llmmeter_openai``.

    Each resource module is wrapped when the app imports it (at once if it already has); uninstrument
    restores it, and never removes another instrumentor's wrapper (see ``_wrap.unwrap_ours``).
    """

    targets = Targets(_target(*row) for row in TARGETS)
    dependencies = ("openai >= 1.40",)
    scope = TRACER_NAME
