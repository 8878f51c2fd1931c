"""llmmeter instrumentor for the Google GenAI SDK (``google-genai``, ``from google import genai``):
``models.generate_content`` / ``generate_content_stream``, sync and async (``client.aio``), on both the
Gemini Developer API and Vertex AI clients.

Wrapped at the one-request layer (``Models._generate_content`` / ``_generate_content_stream`` and their
async twins), not at the public methods: ``generate_content`` may send several requests for one app call
(automatic function calling, automatic continuation) and returns one merged response, so only the
per-request layer sees every billed request's usage. One HTTP request = one span.

Usage (``usage_metadata``, Gemini API reference "UsageMetadata"), normalized to semconv:

* input = ``prompt_token_count`` (which already includes ``cached_content_token_count``) +
  ``tool_use_prompt_token_count`` (tool results fed back to the model, billed as input);
* output = ``candidates_token_count`` + ``thoughts_token_count``: Gemini reports thinking tokens apart
  from the candidates and bills them as output; ``reasoning`` = ``thoughts_token_count`` (a subset);
* cache_read = ``cached_content_token_count``.

Streams repeat ``usage_metadata`` on chunks; the last one, on the chunk carrying ``finish_reason``, is the
final count. A stream closed before then has its output estimated from the text received.
The provider is ``gcp.vertex_ai`` for a Vertex AI client, ``gcp.gen_ai`` for the Gemini Developer API.
"""

from __future__ import annotations

from typing import Any

from llmmeter import names
from llmmeter.call import AttributeValue, RequestInfo, ResponseInfo
from llmmeter.instrumentors._common import (
    ProviderTranslation,
    Target,
    Targets,
    TargetsInstrumentor,
    TextBuffer,
    UsageStreamAccumulator,
    finish_reasons,
    number_attributes,
    str_or_none,
    with_output_text,
)
from llmmeter.instrumentors._wrap import async_wrapper, sync_wrapper
from llmmeter.usage import Usage, as_count, field_of

_INSTRUMENTS = ("google-genai >= 1.0",)


def normalize_usage(metadata: Any, unmeasured: list[str] | None = None) -> Usage | None:
    """A ``usage_metadata`` (SDK model or dict) as semconv :class:`Usage`; None if there is none."""
    if metadata is None:
        if unmeasured is not None:
            unmeasured.append("usage_missing")
        return None
    prompt = as_count(field_of(metadata, "prompt_token_count"))
    candidates = as_count(field_of(metadata, "candidates_token_count"))
    thoughts = as_count(field_of(metadata, "thoughts_token_count")) or 0
    tool_prompt = as_count(field_of(metadata, "tool_use_prompt_token_count")) or 0
    cached = as_count(field_of(metadata, "cached_content_token_count")) or 0
    if candidates is None and thoughts:  # a reply that was all thinking (or cut off while thinking)
        candidates = 0
    if unmeasured is not None:
        if prompt is None:
            unmeasured.append("usage_metadata.prompt_token_count")
        if candidates is None:
            unmeasured.append("usage_metadata.candidates_token_count")
    input_tokens = None if prompt is None else prompt + tool_prompt
    usage = Usage(
        input=input_tokens,
        output=None if candidates is None else candidates + thoughts,
        cache_read=min(cached, input_tokens) if input_tokens is not None else 0,
        reasoning=thoughts if candidates is not None else 0,
    )
    if input_tokens is not None and candidates is not None:
        _modalities(metadata, usage)
    return usage


def _by_modality(details: Any, modality: str) -> int:
    """Sum of ``token_count`` over a ``*_tokens_details`` list's entries of ``modality`` (AUDIO, IMAGE)."""
    total = 0
    for item in details if isinstance(details, list) else ():
        name = field_of(item, "modality")
        name = getattr(name, "value", name)  # the SDK's MediaModality enum, or a plain string from a dict
        if name == modality:
            total += as_count(field_of(item, "token_count")) or 0
    return total


def _modalities(metadata: Any, usage: Usage) -> None:
    """Gemini's per-modality counts: uncached audio/image input and audio/image output, at their own rates."""
    prompt = field_of(metadata, "prompt_tokens_details")
    cache = field_of(metadata, "cache_tokens_details")
    output = field_of(metadata, "candidates_tokens_details")
    audio_in = max(0, _by_modality(prompt, "AUDIO") - _by_modality(cache, "AUDIO"))
    image_in = max(0, _by_modality(prompt, "IMAGE") - _by_modality(cache, "IMAGE"))
    if audio_in + image_in <= (usage.input or 0) - usage.cache_read:
        usage.audio_input, usage.image_input = audio_in, image_in
    audio_out, image_out = _by_modality(output, "AUDIO"), _by_modality(output, "IMAGE")
    if audio_out + image_out <= (usage.output or 0) - usage.reasoning:
        usage.audio_output, usage.image_output = audio_out, image_out


def _parts_text(candidate: Any, out: TextBuffer) -> None:
    for part in field_of(field_of(candidate, "content"), "parts") or ():
        out.add(field_of(part, "text"))


def _contents_text(contents: Any) -> str:
    """The prompt's text: contents may be a str, a list of str/Content/dict/Part, or one Content."""
    texts: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, str):
            texts.append(value)
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)
        else:
            text = field_of(value, "text")
            if isinstance(text, str):
                texts.append(text)
            parts = field_of(value, "parts")
            if parts:
                walk(parts)

    walk(contents)
    return "\n".join(texts)


class GenerateContentTranslation(ProviderTranslation):
    operation = names.OP_GENERATE_CONTENT

    def request(self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> RequestInfo | None:
        api_client = getattr(instance, "_api_client", None)
        vertex = bool(getattr(api_client, "vertexai", False))
        model = kwargs.get("model")
        config = kwargs.get("config")
        attrs: dict[str, AttributeValue] = {}
        if config is not None:
            attrs.update(number_attributes(config, {
                "max_output_tokens": names.REQUEST_MAX_TOKENS,
                "temperature": names.REQUEST_TEMPERATURE,
                "top_p": names.REQUEST_TOP_P,
                "seed": names.REQUEST_SEED,
                "candidate_count": names.REQUEST_CHOICE_COUNT,
            }))
        contents = kwargs.get("contents")

        def prompt_text() -> str:
            system = field_of(config, "system_instruction") if config is not None else None
            return "\n".join(t for t in (_contents_text(system), _contents_text(contents)) if t)

        provider = names.PROVIDER_GCP_VERTEX_AI if vertex else names.PROVIDER_GCP_GEN_AI
        return self.request_info(model, attrs, prompt_text, provider)

    def response(self, request: RequestInfo, result: Any) -> ResponseInfo:
        unmeasured: list[str] = []
        usage = normalize_usage(field_of(result, "usage_metadata"), unmeasured)
        candidates = field_of(result, "candidates") or ()
        info = ResponseInfo(
            model=str_or_none(field_of(result, "model_version")),
            id=str_or_none(field_of(result, "response_id")),
            finish_reasons=finish_reasons(field_of(c, "finish_reason") for c in candidates),
            usage=usage,
            unmeasured=unmeasured,
        )

        def output_text() -> str:
            text = TextBuffer()
            for candidate in candidates:
                _parts_text(candidate, text)
            return text.text()

        return with_output_text(info, output_text)

    def accumulator(self, request: RequestInfo) -> GenerateContentAccumulator:
        return GenerateContentAccumulator()


class GenerateContentAccumulator(UsageStreamAccumulator):
    __slots__ = ()

    def on_chunk(self, chunk: Any) -> None:
        metadata = field_of(chunk, "usage_metadata")
        if metadata is not None:
            self._usage = metadata
        self._model = self._model or str_or_none(field_of(chunk, "model_version"))
        self._id = self._id or str_or_none(field_of(chunk, "response_id"))
        for candidate in field_of(chunk, "candidates") or ():
            _parts_text(candidate, self._text)
            reason = finish_reasons((field_of(candidate, "finish_reason"),))
            if reason:
                self._finish = reason

    def normalize(self, raw: Any, unmeasured: list[str]) -> Usage | None:
        usage = normalize_usage(raw, unmeasured)
        if usage is not None and self._finish is None:
            usage.output = None  # counts before the last chunk are not final: estimate what was streamed
            usage.reasoning = 0
        return usage


_CALL = GenerateContentTranslation(stream=False)
_STREAM = GenerateContentTranslation(stream=True)
_MODULE = "google.genai.models"
TARGETS = Targets([
    Target(_MODULE, "Models", "_generate_content", lambda t: sync_wrapper(t, _CALL)),
    Target(_MODULE, "Models", "_generate_content_stream", lambda t: sync_wrapper(t, _STREAM)),
    Target(_MODULE, "AsyncModels", "_generate_content", lambda t: async_wrapper(t, _CALL)),
    Target(_MODULE, "AsyncModels", "_generate_content_stream", lambda t: async_wrapper(t, _STREAM)),
])


class GoogleGenAIInstrumentor(TargetsInstrumentor):
    """Measures ``google-genai`` generate_content calls, sync and async, Gemini API and Vertex AI."""

    targets = TARGETS
    dependencies = _INSTRUMENTS
