"""llmmeter instrumentor for the ``cohere`` SDK's v2 chat: ``ClientV2.chat`` / ``chat_stream`` and the async
client's twins.

Cohere reports two usage blocks: ``usage.tokens`` (what the model processed, including the chat template
and tool preamble Cohere adds) and ``usage.billed_units`` (what the account is charged for). llmmeter prices
what is billed, so the span's token counts are the billed units; ``tokens`` is used only when a response
carries no billed units (e.g. a proxy that strips them), and the span then says so in
``llmmeter.usage.unmeasured``.

``chat_stream`` is a (sync or async) generator function: nothing is sent until the app iterates, so the
stream proxy also sees HTTP errors, as stream errors. Usage arrives in the ``message-end`` event.
"""

from __future__ import annotations

from typing import Any

from llmmeter import names
from llmmeter.call import RequestInfo, ResponseInfo
from llmmeter.instrumentors._common import (
    ProviderTranslation,
    Target,
    Targets,
    TargetsInstrumentor,
    UsageStreamAccumulator,
    async_iterator_wrapper,
    finish_reasons,
    number_attributes,
    str_or_none,
    with_output_text,
)
from llmmeter.instrumentors._wrap import async_wrapper, sync_wrapper
from llmmeter.usage import Usage, as_count, field_of

_INSTRUMENTS = ("cohere >= 5.10",)
NOTE_UNBILLED = "usage.billed_units_missing_used_tokens"


def normalize_usage(usage: Any, unmeasured: list[str] | None = None) -> Usage | None:
    """Cohere v2 ``usage`` as semconv :class:`Usage`, from ``billed_units`` (what is charged)."""
    notes = unmeasured if unmeasured is not None else []
    if usage is None:
        notes.append("usage_missing")
        return None
    billed = field_of(usage, "billed_units")
    source = billed
    if billed is None:
        source = field_of(usage, "tokens")
        if source is None:
            notes.append("usage_missing")
            return None
        notes.append(NOTE_UNBILLED)
    input_tokens = as_count(field_of(source, "input_tokens"))
    output = as_count(field_of(source, "output_tokens"))
    if input_tokens is None:
        notes.append("usage.billed_units.input_tokens")
    if output is None:
        notes.append("usage.billed_units.output_tokens")
    # ``usage.cached_tokens`` counts against ``tokens`` (processed), not ``billed_units``: the billed units
    # already are what is charged, so no cache share is split off them here.
    return Usage(input=input_tokens, output=output)


def _message_text(message: Any) -> str:
    content = field_of(message, "content")
    if isinstance(content, str):
        return content
    texts = [field_of(c, "text") for c in content or ()] if isinstance(content, (list, tuple)) else []
    return "\n".join(t for t in texts if isinstance(t, str))


class ChatTranslation(ProviderTranslation):
    provider = names.PROVIDER_COHERE

    def request(self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> RequestInfo | None:
        model = kwargs.get("model")
        messages = kwargs.get("messages")
        attrs = number_attributes(kwargs, {
            "max_tokens": names.REQUEST_MAX_TOKENS,
            "temperature": names.REQUEST_TEMPERATURE,
            "p": names.REQUEST_TOP_P,
            "seed": names.REQUEST_SEED,
        })

        def prompt_text() -> str:
            return "\n".join(_message_text(m) for m in messages or ())

        return self.request_info(model, attrs, prompt_text)

    def response(self, request: RequestInfo, result: Any) -> ResponseInfo:
        unmeasured: list[str] = []
        usage = normalize_usage(field_of(result, "usage"), unmeasured)
        info = ResponseInfo(
            id=str_or_none(field_of(result, "id")),
            finish_reasons=finish_reasons((field_of(result, "finish_reason"),)),
            usage=usage,
            unmeasured=unmeasured,
        )
        return with_output_text(info, lambda: _message_text(field_of(result, "message")))

    def accumulator(self, request: RequestInfo) -> ChatStreamAccumulator:
        return ChatStreamAccumulator()


class ChatStreamAccumulator(UsageStreamAccumulator):
    """v2 stream events: ``message-start`` (id), ``content-delta`` / ``tool-call-delta`` (text),
    ``message-end`` (finish reason and usage). Cohere chunks carry no model name."""

    __slots__ = ()

    def on_chunk(self, chunk: Any) -> None:
        kind = field_of(chunk, "type")
        if kind == "content-delta":
            self._text.add(field_of(field_of(field_of(field_of(chunk, "delta"), "message"), "content"), "text"))
        elif kind == "tool-call-delta":
            calls = field_of(field_of(field_of(chunk, "delta"), "message"), "tool_calls")
            self._text.add(field_of(field_of(calls, "function"), "arguments"))
        elif kind == "message-start":
            self._id = str_or_none(field_of(chunk, "id"))
        elif kind == "message-end":
            delta = field_of(chunk, "delta")
            self._finish = finish_reasons((field_of(delta, "finish_reason"),))
            self._usage = field_of(delta, "usage")

    def normalize(self, raw: Any, unmeasured: list[str]) -> Usage | None:
        return normalize_usage(raw, unmeasured)


_CALL = ChatTranslation(stream=False)
_STREAM = ChatTranslation(stream=True)
_MODULE = "cohere.v2.client"
TARGETS = Targets([
    Target(_MODULE, "V2Client", "chat", lambda t: sync_wrapper(t, _CALL)),
    Target(_MODULE, "V2Client", "chat_stream", lambda t: sync_wrapper(t, _STREAM)),
    Target(_MODULE, "AsyncV2Client", "chat", lambda t: async_wrapper(t, _CALL)),
    Target(_MODULE, "AsyncV2Client", "chat_stream", lambda t: async_iterator_wrapper(t, _STREAM)),
])


class CohereInstrumentor(TargetsInstrumentor):
    """Measures ``cohere`` v2 chat calls (ClientV2 / AsyncClientV2), plain and streamed."""

    targets = TARGETS
    dependencies = _INSTRUMENTS
