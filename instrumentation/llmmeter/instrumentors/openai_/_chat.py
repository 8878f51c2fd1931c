"""Chat Completions (``chat.completions.create`` / ``.parse``, and ``.stream()`` which calls create).

Usage normalization: ``prompt_tokens`` already includes cached tokens (semconv ``input``);
``prompt_tokens_details.cached_tokens`` is the cache read, ``cache_write_tokens`` the cache write,
``completion_tokens_details.reasoning_tokens`` the reasoning subset of output. Streams carry usage only
in a final chunk (``stream_options.include_usage``; DeepSeek and others send it unasked, some on the
chunk that also carries the last choice; Groq puts it under ``x_groq.usage``).
"""

from __future__ import annotations

from typing import Any

import wrapt

from llmmeter import config, names
from llmmeter.call import ResponseInfo
from llmmeter.instrumentors.openai_._common import (
    MAX_TOKEN_COUNT,
    NOTE_OUTPUT_TRUNCATED,
    NOTE_USAGE_MISSING,
    OpenAIRequest,
    OpenAITranslation,
    TextBuffer,
    arg,
    build_usage,
    chat_overhead,
    content_texts,
    count,
    count_texts,
    dedupe,
    fill_input_estimate,
    given,
    header_cost,
    items,
    json_attribute,
    read_count,
    text,
    text_parts,
)
from llmmeter.streams import StreamAccumulator
from llmmeter.usage import Usage, field_of

CHAT_FIELDS: tuple[tuple[str, str, type], ...] = (
    (names.REQUEST_MAX_TOKENS, "max_tokens", int),
    (names.REQUEST_MAX_TOKENS, "max_completion_tokens", int),
    (names.REQUEST_TEMPERATURE, "temperature", float),
    (names.REQUEST_TOP_P, "top_p", float),
    (names.REQUEST_SEED, "seed", int),
    (names.REQUEST_CHOICE_COUNT, "n", int),
    (names.OPENAI_REQUEST_SERVICE_TIER, "service_tier", str),
)
_MAX_FINISH_REASONS = 16

# The SDK's chunk and usage types, for the typed fast paths of ChatStreamAccumulator and chat_usage. Bound
# when the app imports openai (a post-import hook): importing openai here would cost every process that has
# the SDK installed ~1 s of start-up CPU whether it uses openai or not. Until then (and for an SDK without
# these types) they are None and the generic path reads everything.
_ChunkType: Any = None
_ChoiceType: Any = None
_DeltaType: Any = None
_UsageType: Any = None
_InputDetailsType: Any = None
_OutputDetailsType: Any = None


def _bind_chunk_types(module: Any) -> None:
    global _ChunkType, _ChoiceType, _DeltaType
    _ChunkType = getattr(module, "ChatCompletionChunk", None)
    _ChoiceType = getattr(module, "Choice", None)
    _DeltaType = getattr(module, "ChoiceDelta", None)


def _bind_usage_types(module: Any) -> None:
    global _UsageType, _InputDetailsType, _OutputDetailsType
    _UsageType = getattr(module, "CompletionUsage", None)
    _InputDetailsType = getattr(module, "PromptTokensDetails", None)
    _OutputDetailsType = getattr(module, "CompletionTokensDetails", None)


wrapt.register_post_import_hook(_bind_chunk_types, "openai.types.chat.chat_completion_chunk")
wrapt.register_post_import_hook(_bind_usage_types, "openai.types.completion_usage")


def _count_or_zero(value: Any) -> int | None:
    """0 for None, the value for a sane int count, None (not fast-path material) for anything else."""
    if value is None:
        return 0
    return value if type(value) is int and 0 <= value <= MAX_TOKEN_COUNT else None


def _typed_usage(raw: Any) -> Usage | None:
    """The SDK's own ``CompletionUsage`` with plain int counts and no extra fields, read with attribute
    access; None sends anything else (DeepSeek's extra fields, strings, contradictions) to the general path."""
    if raw.__pydantic_extra__:
        return None
    input_, output = raw.prompt_tokens, raw.completion_tokens
    if type(input_) is not int or type(output) is not int or not 0 <= input_ <= MAX_TOKEN_COUNT:
        return None
    if not 0 <= output <= MAX_TOKEN_COUNT:
        return None
    cache_read = cache_write = reasoning = audio_in = audio_out = 0
    details = raw.prompt_tokens_details
    if details is not None:
        if type(details) is not _InputDetailsType or details.__pydantic_extra__:
            return None
        cache_read, cache_write = _count_or_zero(details.cached_tokens), _count_or_zero(details.cache_write_tokens)
        audio_in = _count_or_zero(details.audio_tokens)
        if cache_read is None or cache_write is None or audio_in is None or \
                cache_read + cache_write + audio_in > input_:
            return None
    details = raw.completion_tokens_details
    if details is not None:
        if type(details) is not _OutputDetailsType or details.__pydantic_extra__:
            return None
        reasoning = _count_or_zero(details.reasoning_tokens)
        audio_out = _count_or_zero(details.audio_tokens)
        if reasoning is None or audio_out is None or reasoning + audio_out > output:
            return None
    # No extra fields anywhere: no image counts and no provider cost to read (see _modalities).
    return Usage(input=input_, output=output, cache_read=cache_read, cache_creation=cache_write, reasoning=reasoning,
                 audio_input=audio_in, audio_output=audio_out)


def _modalities(raw: Any, usage: Usage) -> Usage:
    """Audio and image token subsets (``prompt_tokens_details.audio_tokens`` / ``image_tokens``,
    ``completion_tokens_details.audio_tokens`` / ``image_tokens``), priced at their own rates, and a cost the
    provider reported in the usage block (OpenRouter's ``usage.cost``, USD)."""
    prompt = field_of(raw, "prompt_tokens_details")
    completion = field_of(raw, "completion_tokens_details")
    if prompt is not None:
        usage.audio_input = count(field_of(prompt, "audio_tokens")) or 0
        usage.image_input = count(field_of(prompt, "image_tokens")) or 0
        if usage.audio_input + usage.image_input + usage.cache_read + usage.cache_creation > (usage.input or 0):
            usage.audio_input = usage.image_input = 0
    if completion is not None:
        usage.audio_output = count(field_of(completion, "audio_tokens")) or 0
        usage.image_output = count(field_of(completion, "image_tokens")) or 0
        if usage.audio_output + usage.image_output + usage.reasoning > (usage.output or 0):
            usage.audio_output = usage.image_output = 0
    cost = field_of(raw, "cost")
    if cost.__class__ in (int, float) and 0 <= cost < 1e9:
        usage.provider_cost = float(cost)
    return usage


def chat_usage(raw: Any, notes: list[str]) -> Usage | None:
    """Normalize a Chat Completions ``usage`` block (SDK model or dict); None when there is none."""
    if raw is None:
        notes.append(NOTE_USAGE_MISSING)
        return None
    if type(raw) is _UsageType:
        usage = _typed_usage(raw)
        if usage is not None:
            return usage
    input_ = read_count(raw, "prompt_tokens", notes, "usage")
    output = read_count(raw, "completion_tokens", notes, "usage")
    prompt_details = field_of(raw, "prompt_tokens_details")
    cache_read = count(field_of(prompt_details, "cached_tokens"))
    if cache_read is None:  # DeepSeek's own spelling
        cache_read = count(field_of(raw, "prompt_cache_hit_tokens"))
    cache_write = count(field_of(prompt_details, "cache_write_tokens"))
    if cache_write is None:
        cache_write = count(field_of(raw, "cache_write_tokens"))
    reasoning = count(field_of(field_of(raw, "completion_tokens_details"), "reasoning_tokens"))
    return _modalities(raw, build_usage(input_, output, cache_read or 0, cache_write or 0, reasoning or 0, notes))


# --- request side -------------------------------------------------------------------------------


def _message_texts(message: Any, notes: list[str]) -> list[str]:
    texts = [t for t in (text(field_of(message, "role")), text(field_of(message, "name"))) if t]
    texts += content_texts(field_of(message, "content"), notes)
    for call in items(field_of(message, "tool_calls")):
        function = field_of(call, "function")
        texts += [t for t in (text(field_of(function, "name")), text(field_of(function, "arguments"))) if t]
    return texts


def chat_input_estimate(messages: Any, tools: Any, model: str | None) -> tuple[int, str, list[str]]:
    """Prompt tokens as OpenAI counts them for chat: every message's role, name and content, plus
    :func:`chat_overhead`; tool definitions as their JSON (an approximation, marked estimated anyway)."""
    notes: list[str] = []
    messages = items(messages)
    texts: list[str] = []
    for message in messages:
        texts += _message_texts(message, notes)
    if given(tools) and tools:
        texts.append(json_attribute(list(tools)))
    tokens, method = count_texts(texts, model)
    return tokens + chat_overhead(len(messages)), method, notes


def _prompt_text(messages: Any) -> str:
    notes: list[str] = []
    return "\n".join("\n".join(_message_texts(m, notes)) for m in items(messages))


def _part(part: Any) -> dict[str, Any] | None:
    if isinstance(part, str):
        return {"type": "text", "content": part}
    kind = field_of(part, "type")
    if kind == "text":
        return {"type": "text", "content": text(field_of(part, "text"))}
    if kind == "image_url":
        url = text(field_of(field_of(part, "image_url"), "url")) or ""
        if url.startswith("data:"):  # inline bytes: not copied into telemetry
            return {"type": "blob", "modality": "image"}
        return {"type": "uri", "modality": "image", "uri": url}
    return {"type": str(kind)} if kind else None


def input_messages(messages: Any) -> list[dict[str, Any]]:
    """The semconv ``gen_ai.input.messages`` shape of a Chat Completions ``messages`` list."""
    out: list[dict[str, Any]] = []
    for message in items(messages):
        role = text(field_of(message, "role")) or "user"
        content = field_of(message, "content")
        parts: list[dict[str, Any]] = []
        if role == "tool":
            parts.append({"type": "tool_call_response", "id": field_of(message, "tool_call_id"), "response": content})
        elif isinstance(content, str):
            parts.append({"type": "text", "content": content})
        elif isinstance(content, (list, tuple)):
            parts += [p for p in (_part(x) for x in content) if p]
        for call in items(field_of(message, "tool_calls")):
            function = field_of(call, "function")
            parts.append(
                {
                    "type": "tool_call",
                    "id": field_of(call, "id"),
                    "name": field_of(function, "name"),
                    "arguments": field_of(function, "arguments"),
                }
            )
        out.append({"role": role, "parts": parts})
    return out


# --- response side ------------------------------------------------------------------------------


def _choice_output(choice: Any) -> tuple[list[str], list[dict[str, Any]]]:
    """(texts to count, semconv parts) of one non-streamed choice's message."""
    message = field_of(choice, "message")
    texts: list[str] = []
    parts: list[dict[str, Any]] = []
    content = text(field_of(message, "content"))
    refusal = text(field_of(message, "refusal"))
    for piece in (content, refusal):
        if piece:
            texts.append(piece)
            parts.append({"type": "text", "content": piece})
    for call in items(field_of(message, "tool_calls")):
        function = field_of(call, "function")
        name, arguments = text(field_of(function, "name")), text(field_of(function, "arguments"))
        texts += [t for t in (name, arguments) if t]
        parts.append({"type": "tool_call", "id": field_of(call, "id"), "name": name, "arguments": arguments})
    legacy = field_of(message, "function_call")
    if legacy is not None:
        texts += [t for t in (text(field_of(legacy, "name")), text(field_of(legacy, "arguments"))) if t]
    return texts, parts


def _finish_reasons(choices: Any) -> tuple[str, ...] | None:
    return dedupe(r for c in choices if isinstance(r := field_of(c, "finish_reason"), str)) or None


def _response_attributes(obj: Any) -> dict[str, Any]:
    tier = text(field_of(obj, "service_tier"))
    return {names.OPENAI_RESPONSE_SERVICE_TIER: tier} if tier else {}


class ChatTranslation(OpenAITranslation):
    """``chat.completions.create`` / ``.parse`` (sync and async share it)."""

    operation = names.OP_CHAT

    def request(self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> OpenAIRequest | None:
        model = text(arg(kwargs, "model"))
        messages = arg(kwargs, "messages")
        tools = arg(kwargs, "tools")
        return self.openai_request(
            instance, kwargs, model, CHAT_FIELDS,
            input_messages=lambda: input_messages(messages),
            prompt_text=lambda: _prompt_text(messages),
            input_estimate=lambda: chat_input_estimate(messages, tools, model),
        )

    def prepare_kwargs(self, request: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Opt-in (``LLMMETER_STREAM_INCLUDE_USAGE``): ask for the usage chunk when the app did not
        set ``stream_options``. The app then receives one extra final chunk with empty ``choices``."""
        if request.stream and config.settings().stream_include_usage and not given(kwargs.get("stream_options")):
            return {**kwargs, "stream_options": {"include_usage": True}}
        return kwargs

    def accumulator(self, request: Any) -> ChatStreamAccumulator:
        return ChatStreamAccumulator(request)

    def read(self, request: Any, obj: Any, result: Any, info: ResponseInfo) -> None:
        info.model = text(field_of(obj, "model"))
        info.id = text(field_of(obj, "id"))
        choices = items(field_of(obj, "choices"))
        info.finish_reasons = _finish_reasons(choices)
        usage = chat_usage(field_of(obj, "usage"), info.unmeasured)
        info.attributes = _response_attributes(obj)
        if usage is not None:  # the tier the call was served at picks its rates
            usage.service_tier = text(field_of(obj, "service_tier"))
            if usage.provider_cost is None:
                usage.provider_cost = header_cost(result)
        if usage is None or usage.output is None or request.capture:
            outputs = [_choice_output(c) for c in choices]
            info.output_text = "".join(t for texts, _ in outputs for t in texts)
            if request.capture:
                info.attributes[names.OUTPUT_MESSAGES] = json_attribute(
                    [
                        {"role": "assistant", "parts": parts, "finish_reason": text(field_of(c, "finish_reason")) or ""}
                        for c, (_, parts) in zip(choices, outputs, strict=True)
                    ]
                )
        info.usage = fill_input_estimate(request, usage, info)


_ChoiceFields = tuple[Any, Any, Any, Any, Any]  # finish_reason, delta content, index, tool_calls, refusal


def _any_choices(chunk: Any) -> list[_ChoiceFields]:
    """A chunk's choices from any shape (dicts, other SDK objects, garbage), never raising."""
    found: list[_ChoiceFields] = []
    for choice in items(field_of(chunk, "choices")):
        delta = field_of(choice, "delta")
        found.append((
            field_of(choice, "finish_reason"),
            field_of(delta, "content"),
            field_of(choice, "index"),
            field_of(delta, "tool_calls"),
            field_of(delta, "refusal"),
        ))
    return found


class ChatStreamAccumulator(StreamAccumulator):
    """Per chunk: model/id once, delta texts per choice, finish reasons, the usage block when present.

    Most chunks of most streams are the SDK's own ``ChatCompletionChunk`` with one choice whose delta
    holds a little text: :meth:`on_chunk` reads those with plain attribute access and type checks (the SDK
    builds chunks without validation, so a field may hold whatever the server sent) and hands anything
    else (several choices, tool calls, refusals, dicts, garbage) to the general path, which reads every
    shape through :func:`field_of` and never raises.
    """

    __slots__ = ("finish", "groq", "id", "model", "other", "request", "text0", "texts", "tier", "usage_raw")

    def __init__(self, request: Any) -> None:
        super().__init__()
        self.request = request
        self.groq = request.provider == names.PROVIDER_GROQ  # Groq sends usage under x_groq
        self.model: Any = None
        self.id: Any = None
        self.tier: Any = None
        self.finish: dict[str, None] = {}
        self.text0 = TextBuffer()  # choice 0, the only one unless the app asked for n > 1
        self.texts: dict[int, TextBuffer] = {0: self.text0}
        self.other = TextBuffer()  # tool-call names/arguments and refusals: counted, not captured
        self.usage_raw: Any = None

    def on_chunk(self, chunk: Any) -> None:
        if self.model is None:
            self.model = field_of(chunk, "model")
            self.id = field_of(chunk, "id")
            self.tier = field_of(chunk, "service_tier")
        if type(chunk) is _ChunkType:
            choices = chunk.choices
            if type(choices) is list and len(choices) == 1:
                choice = choices[0]
                delta = choice.delta if type(choice) is _ChoiceType else None
                if (
                    type(delta) is _DeltaType
                    and choice.index == 0
                    and delta.tool_calls is None
                    and delta.refusal is None
                ):
                    content = delta.content
                    if content is not None:
                        self.text0.add(content)
                    reason = choice.finish_reason
                    if reason is not None:
                        self._finish_reason(reason)
                    usage = chunk.usage
                    if usage is not None:
                        self.usage_raw = usage
                    elif self.groq:
                        self._usage(None, chunk)
                    return
        self._general(chunk)

    def _general(self, chunk: Any) -> None:
        for reason, content, index, calls, refusal in _any_choices(chunk):
            self._finish_reason(reason)
            if content:
                key = index if type(index) is int else 0
                buffer = self.texts.get(key)
                if buffer is None:
                    buffer = self.texts[key] = TextBuffer()
                buffer.add(content)
            if calls:
                for call in items(calls):
                    function = field_of(call, "function")
                    self.other.add(field_of(function, "name"))
                    self.other.add(field_of(function, "arguments"))
            if refusal:
                self.other.add(refusal)
        self._usage(field_of(chunk, "usage"), chunk)

    def _finish_reason(self, reason: Any) -> None:
        if isinstance(reason, str) and len(self.finish) < _MAX_FINISH_REASONS:
            self.finish[reason] = None

    def _usage(self, usage: Any, chunk: Any) -> None:
        if usage is None and self.groq:
            usage = field_of(field_of(chunk, "x_groq"), "usage")
        if usage is not None:
            self.usage_raw = usage

    def result(self) -> ResponseInfo:
        info = ResponseInfo(model=text(self.model), id=text(self.id), finish_reasons=tuple(self.finish) or None)
        tier = text(self.tier)
        info.attributes = {names.OPENAI_RESPONSE_SERVICE_TIER: tier} if tier else {}
        usage = chat_usage(self.usage_raw, info.unmeasured)
        if usage is not None:
            usage.service_tier = tier
        if usage is None or usage.output is None:
            info.output_text = "".join(b.text() for b in (*self.texts.values(), self.other))
        if self.other.truncated or self.text0.truncated or (
            len(self.texts) > 1 and any(b.truncated for b in self.texts.values())
        ):
            info.unmeasured.append(NOTE_OUTPUT_TRUNCATED)
        if self.request.capture:
            reason = next(iter(self.finish), "")
            info.attributes[names.OUTPUT_MESSAGES] = json_attribute(
                [
                    {"role": "assistant", "parts": text_parts([b.text()]), "finish_reason": reason}
                    for _, b in sorted(self.texts.items())
                    if b.parts
                ]
            )
        info.usage = fill_input_estimate(self.request, usage, info)
        return info
