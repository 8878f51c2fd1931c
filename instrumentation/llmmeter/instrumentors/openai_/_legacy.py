"""Embeddings (``embeddings.create``) and legacy text completions (``completions.create``).

Both take a ``prompt``/``input`` that is a string, a list of strings, or pre-tokenized ids (a list of
ints, or a list of such lists): ids are counted as they are. Neither has a chat-format overhead.
Embeddings produce no output tokens: output is 0 by definition, never estimated.
"""

from __future__ import annotations

from typing import Any

from llmmeter import estimate, names
from llmmeter.call import ResponseInfo
from llmmeter.instrumentors.openai_._common import (
    NOTE_OUTPUT_TRUNCATED,
    NOTE_USAGE_MISSING,
    OpenAIRequest,
    OpenAITranslation,
    TextBuffer,
    arg,
    build_usage,
    count_texts,
    dedupe,
    fill_input_estimate,
    items,
    json_attribute,
    read_count,
    text,
    text_parts,
)
from llmmeter.streams import StreamAccumulator
from llmmeter.usage import Usage, field_of

COMPLETION_FIELDS: tuple[tuple[str, str, type], ...] = (
    (names.REQUEST_MAX_TOKENS, "max_tokens", int),
    (names.REQUEST_TEMPERATURE, "temperature", float),
    (names.REQUEST_TOP_P, "top_p", float),
    (names.REQUEST_SEED, "seed", int),
    (names.REQUEST_CHOICE_COUNT, "n", int),
)


def _prompt_strings(prompt: Any) -> list[str]:
    if isinstance(prompt, str):
        return [prompt]
    return [p for p in items(prompt) if isinstance(p, str)]


def prompt_estimate(prompt: Any, model: str | None) -> tuple[int, str, list[str]]:
    """Tokens of a string / list of strings; pre-tokenized ids count one token each."""
    if isinstance(prompt, (list, tuple)) and prompt and all(isinstance(p, int) for p in prompt):
        return len(prompt), estimate.METHOD_TIKTOKEN, []
    ids = sum(len(p) for p in items(prompt) if isinstance(p, (list, tuple)))
    tokens, method = count_texts(_prompt_strings(prompt), model)
    return tokens + ids, method, []


def _usage(raw: Any, info: ResponseInfo, with_output: bool) -> Usage | None:
    if raw is None:
        info.unmeasured.append(NOTE_USAGE_MISSING)
        return Usage(output=0) if not with_output else None
    input_ = read_count(raw, "prompt_tokens", info.unmeasured, "usage")
    output = read_count(raw, "completion_tokens", info.unmeasured, "usage") if with_output else 0
    return build_usage(input_, output, 0, 0, 0, info.unmeasured)


class _PromptTranslation(OpenAITranslation):
    """Embeddings and text completions: one ``prompt_arg`` holding strings or token ids, no chat format."""

    prompt_arg: str
    fields: tuple[tuple[str, str, type], ...] = ()

    def request(self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> OpenAIRequest:
        model = text(arg(kwargs, "model"))
        prompt = arg(kwargs, self.prompt_arg)
        return self.openai_request(
            instance, kwargs, model, self.fields,
            input_messages=lambda: [{"role": "user", "parts": text_parts(_prompt_strings(prompt))}],
            prompt_text=lambda: "\n".join(_prompt_strings(prompt)),
            input_estimate=lambda: prompt_estimate(prompt, model),
        )


class EmbeddingsTranslation(_PromptTranslation):
    operation = names.OP_EMBEDDINGS
    prompt_arg = "input"

    def request(self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> OpenAIRequest:
        request = super().request(instance, args, kwargs)
        encoding = text(arg(kwargs, "encoding_format"))
        if encoding:
            request.attributes[names.REQUEST_ENCODING_FORMATS] = (encoding,)
        request.stream = False
        return request

    def unread_usage(self) -> Usage | None:
        return Usage(output=0)  # embeddings produce no output tokens: 0 by definition, never estimated

    def read(self, request: Any, obj: Any, result: Any, info: ResponseInfo) -> None:
        info.model = text(field_of(obj, "model"))
        info.usage = fill_input_estimate(request, _usage(field_of(obj, "usage"), info, False), info)


class CompletionsTranslation(_PromptTranslation):
    operation = names.OP_TEXT_COMPLETION
    prompt_arg = "prompt"
    fields = COMPLETION_FIELDS

    def accumulator(self, request: Any) -> CompletionsStreamAccumulator:
        return CompletionsStreamAccumulator(request)

    def read(self, request: Any, obj: Any, result: Any, info: ResponseInfo) -> None:
        info.model = text(field_of(obj, "model"))
        info.id = text(field_of(obj, "id"))
        choices = items(field_of(obj, "choices"))
        info.finish_reasons = dedupe(r for c in choices if isinstance(r := field_of(c, "finish_reason"), str)) or None
        usage = _usage(field_of(obj, "usage"), info, True)
        if usage is None or usage.output is None or request.capture:
            outputs = [(text(field_of(c, "text")) or "", text(field_of(c, "finish_reason")) or "") for c in choices]
            info.output_text = "".join(t for t, _ in outputs)
            if request.capture:
                info.attributes = {
                    names.OUTPUT_MESSAGES: json_attribute(
                        [{"role": "assistant", "parts": text_parts([t]), "finish_reason": r} for t, r in outputs]
                    )
                }
        info.usage = fill_input_estimate(request, usage, info)


class CompletionsStreamAccumulator(StreamAccumulator):
    __slots__ = ("finish", "id", "model", "request", "texts", "usage_raw")

    def __init__(self, request: Any) -> None:
        super().__init__()
        self.request = request
        self.model: Any = None
        self.id: Any = None
        self.finish: dict[str, None] = {}
        self.texts = TextBuffer()
        self.usage_raw: Any = None

    def on_chunk(self, chunk: Any) -> None:
        if self.model is None:
            self.model = field_of(chunk, "model")
            self.id = field_of(chunk, "id")
        for choice in items(field_of(chunk, "choices")):
            self.texts.add(field_of(choice, "text"))
            reason = field_of(choice, "finish_reason")
            if isinstance(reason, str) and len(self.finish) < 16:
                self.finish[reason] = None
        usage = field_of(chunk, "usage")
        if usage is not None:
            self.usage_raw = usage

    def result(self) -> ResponseInfo:
        info = ResponseInfo(model=text(self.model), id=text(self.id), finish_reasons=tuple(self.finish) or None)
        usage = _usage(self.usage_raw, info, True)
        if usage is None or usage.output is None:
            info.output_text = self.texts.text()
        if self.texts.truncated:
            info.unmeasured.append(NOTE_OUTPUT_TRUNCATED)
        if self.request.capture:
            reason = next(iter(self.finish), "")
            info.attributes = {
                names.OUTPUT_MESSAGES: json_attribute(
                    [{"role": "assistant", "parts": text_parts([self.texts.text()]), "finish_reason": reason}]
                )
            }
        info.usage = fill_input_estimate(self.request, usage, info)
        return info
