"""Responses API (``responses.create`` / ``.parse``; ``responses.stream()`` calls create).

Operation ``chat``. Usage: ``input_tokens`` (includes cached), ``input_tokens_details.cached_tokens`` /
``cache_write_tokens``, ``output_tokens_details.reasoning_tokens``. Streams carry the final response,
usage included, in the ``response.completed`` (or ``.incomplete`` / ``.failed``) event.
"""

from __future__ import annotations

from typing import Any

from llmmeter import names
from llmmeter.call import ResponseInfo
from llmmeter.instrumentors.openai_._common import (
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
    fill_input_estimate,
    given,
    items,
    json_attribute,
    read_count,
    text,
    text_parts,
)
from llmmeter.streams import StreamAccumulator
from llmmeter.usage import Usage, field_of

RESPONSES_FIELDS: tuple[tuple[str, str, type], ...] = (
    (names.REQUEST_MAX_TOKENS, "max_output_tokens", int),
    (names.REQUEST_TEMPERATURE, "temperature", float),
    (names.REQUEST_TOP_P, "top_p", float),
    (names.OPENAI_REQUEST_SERVICE_TIER, "service_tier", str),
)
# Incomplete-response reasons in the Chat Completions vocabulary dashboards already use.
_INCOMPLETE_REASONS = {"max_output_tokens": "length", "content_filter": "content_filter"}
_FINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})
_START_EVENTS = frozenset({"response.created", "response.in_progress"})
_TEXT_DELTA_EVENTS = frozenset(
    {"response.output_text.delta", "response.refusal.delta", "response.function_call_arguments.delta"}
)


def responses_usage(raw: Any, notes: list[str]) -> Usage | None:
    if raw is None:
        notes.append(NOTE_USAGE_MISSING)
        return None
    input_ = read_count(raw, "input_tokens", notes, "usage")
    output = read_count(raw, "output_tokens", notes, "usage")
    details = field_of(raw, "input_tokens_details")
    cache_read = count(field_of(details, "cached_tokens")) or 0
    cache_write = count(field_of(details, "cache_write_tokens")) or 0
    reasoning = count(field_of(field_of(raw, "output_tokens_details"), "reasoning_tokens")) or 0
    return build_usage(input_, output, cache_read, cache_write, reasoning, notes)


def finish_reasons(response: Any) -> tuple[str, ...] | None:
    """A Response's status as a finish reason: completed -> stop (tool_calls when it called a tool),
    incomplete -> its reason (max_output_tokens -> length), other statuses as they are."""
    status = text(field_of(response, "status"))
    if status is None:
        return None
    if status == "completed":
        called = any(field_of(item, "type") == "function_call" for item in items(field_of(response, "output")))
        return ("tool_calls",) if called else ("stop",)
    if status == "incomplete":
        reason = text(field_of(field_of(response, "incomplete_details"), "reason"))
        return (_INCOMPLETE_REASONS.get(reason, reason or "incomplete"),)
    return ("error",) if status == "failed" else (status,)


# --- request side -------------------------------------------------------------------------------


def _input_items(input_: Any) -> list[Any] | tuple[Any, ...]:
    return [{"role": "user", "content": input_}] if isinstance(input_, str) else items(input_)


def _item_texts(item: Any, notes: list[str]) -> list[str]:
    texts = [t for t in (text(field_of(item, "role")), text(field_of(item, "name"))) if t]
    texts += content_texts(field_of(item, "content"), notes)
    texts += [t for t in (text(field_of(item, "arguments")), text(field_of(item, "output"))) if t]
    return texts


def responses_input_estimate(
    input_: Any, instructions: Any, tools: Any, model: str | None
) -> tuple[int, str, list[str]]:
    """Input tokens as for chat: each input item is a message; ``instructions`` a system message."""
    notes: list[str] = []
    entries = _input_items(input_)
    texts: list[str] = []
    messages = len(entries)
    if isinstance(instructions, str):
        texts += ["system", instructions]
        messages += 1
    for item in entries:
        texts += _item_texts(item, notes)
    if given(tools) and tools:
        texts.append(json_attribute(list(tools)))
    tokens, method = count_texts(texts, model)
    return tokens + chat_overhead(messages), method, notes


def input_messages(input_: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for item in _input_items(input_):
        kind = field_of(item, "type")
        if kind == "function_call_output":
            part = {"type": "tool_call_response", "id": field_of(item, "call_id"), "response": field_of(item, "output")}
            out.append({"role": "tool", "parts": [part]})
        elif kind == "function_call":
            part = {
                "type": "tool_call",
                "id": field_of(item, "call_id"),
                "name": field_of(item, "name"),
                "arguments": field_of(item, "arguments"),
            }
            out.append({"role": "assistant", "parts": [part]})
        else:
            role = text(field_of(item, "role")) or "user"
            out.append({"role": role, "parts": text_parts(content_texts(field_of(item, "content"), []))})
    return out


# --- response side ------------------------------------------------------------------------------


def _output(response: Any) -> tuple[list[str], list[dict[str, Any]]]:
    """(texts to count, semconv parts) of a Response's ``output`` items."""
    texts: list[str] = []
    parts: list[dict[str, Any]] = []
    for item in items(field_of(response, "output")):
        kind = field_of(item, "type")
        if kind == "message":
            for piece in items(field_of(item, "content")):
                value = text(field_of(piece, "text")) or text(field_of(piece, "refusal"))
                if value:
                    texts.append(value)
                    parts.append({"type": "text", "content": value})
        elif kind == "function_call":
            name, arguments = text(field_of(item, "name")), text(field_of(item, "arguments"))
            texts += [t for t in (name, arguments) if t]
            parts.append({"type": "tool_call", "id": field_of(item, "call_id"), "name": name, "arguments": arguments})
    return texts, parts


def _read_response(request: Any, response: Any, info: ResponseInfo, streamed_text: str | None) -> None:
    info.model = text(field_of(response, "model")) or info.model
    info.id = text(field_of(response, "id")) or info.id
    info.finish_reasons = finish_reasons(response)
    tier = text(field_of(response, "service_tier"))
    info.attributes = {names.OPENAI_RESPONSE_SERVICE_TIER: tier} if tier else {}
    usage = responses_usage(field_of(response, "usage"), info.unmeasured)
    if usage is not None:  # the tier the call was served at picks its rates
        usage.service_tier = tier
    if usage is None or usage.output is None or request.capture:
        texts, parts = _output(response)
        info.output_text = "".join(texts) if texts or streamed_text is None else streamed_text
        if request.capture:
            reason = info.finish_reasons[0] if info.finish_reasons else ""
            info.attributes[names.OUTPUT_MESSAGES] = json_attribute(
                [{"role": "assistant", "parts": parts, "finish_reason": reason}]
            )
    info.usage = fill_input_estimate(request, usage, info)


class ResponsesTranslation(OpenAITranslation):
    operation = names.OP_CHAT

    def request(self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> OpenAIRequest | None:
        model = text(arg(kwargs, "model"))
        input_ = arg(kwargs, "input")
        instructions = arg(kwargs, "instructions")
        tools = arg(kwargs, "tools")

        def prompt_text() -> str:
            texts = [instructions] if isinstance(instructions, str) else []
            for item in _input_items(input_):
                texts += _item_texts(item, [])
            return "\n".join(texts)

        request = self.openai_request(
            instance, kwargs, model, RESPONSES_FIELDS,
            input_messages=lambda: input_messages(input_),
            prompt_text=prompt_text,
            input_estimate=lambda: responses_input_estimate(input_, instructions, tools, model),
        )
        if request.capture and isinstance(instructions, str):
            request.attributes[names.SYSTEM_INSTRUCTIONS] = json_attribute(text_parts([instructions]))
        return request

    def accumulator(self, request: Any) -> ResponsesStreamAccumulator:
        return ResponsesStreamAccumulator(request)

    def read(self, request: Any, obj: Any, result: Any, info: ResponseInfo) -> None:
        _read_response(request, obj, info, None)


class ResponsesStreamAccumulator(StreamAccumulator):
    """Per event: model/id from ``response.created``, text deltas, the final response object."""

    __slots__ = ("final", "id", "model", "request", "texts")

    def __init__(self, request: Any) -> None:
        super().__init__()
        self.request = request
        self.model: Any = None
        self.id: Any = None
        self.final: Any = None
        self.texts = TextBuffer()

    def on_chunk(self, chunk: Any) -> None:
        kind = field_of(chunk, "type")
        if kind in _TEXT_DELTA_EVENTS:
            self.texts.add(field_of(chunk, "delta"))
        elif kind in _FINAL_EVENTS:
            self.final = field_of(chunk, "response")
        elif kind in _START_EVENTS and self.model is None:
            response = field_of(chunk, "response")
            self.model = field_of(response, "model")
            self.id = field_of(response, "id")

    def result(self) -> ResponseInfo:
        info = ResponseInfo(model=text(self.model), id=text(self.id))
        if self.texts.truncated:
            info.unmeasured.append(NOTE_OUTPUT_TRUNCATED)
        if self.final is not None:
            _read_response(self.request, self.final, info, self.texts.text())
            return info
        info.unmeasured.append(NOTE_USAGE_MISSING)
        info.output_text = self.texts.text()
        if self.request.capture:
            info.attributes = {
                names.OUTPUT_MESSAGES: json_attribute([{"role": "assistant", "parts": text_parts([info.output_text])}])
            }
        info.usage = fill_input_estimate(self.request, None, info)
        return info
