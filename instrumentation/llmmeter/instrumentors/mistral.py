"""llmmeter instrumentor for the ``mistralai`` SDK: ``chat.complete`` / ``chat.stream`` and their async twins
(``complete_async`` / ``stream_async``).

Mistral's chat API speaks the OpenAI Chat Completions usage shape (``prompt_tokens`` including
``prompt_tokens_details.cached_tokens``, ``completion_tokens``), so the usage block is normalized by the
OpenAI instrumentor's ``chat_usage`` rather than a second copy of it. Streams are ``EventStream``s of
``CompletionEvent``s whose ``data`` is a chunk; the final chunk carries ``usage``.
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
    finish_reasons,
    number_attributes,
    str_or_none,
    with_output_text,
)
from llmmeter.instrumentors._wrap import async_wrapper, sync_wrapper
from llmmeter.instrumentors.openai_._chat import chat_usage
from llmmeter.usage import Usage, field_of

_INSTRUMENTS = ("mistralai >= 1.0",)


def content_text(content: Any) -> str:
    """A message's content as text: a str, or a list of chunks of which the text ones count."""
    if isinstance(content, str):
        return content
    if isinstance(content, (list, tuple)):
        return "".join(t for t in (field_of(c, "text") for c in content) if isinstance(t, str))
    return ""


class ChatTranslation(ProviderTranslation):
    provider = names.PROVIDER_MISTRAL

    def request(self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> RequestInfo | None:
        model = kwargs.get("model")
        messages = kwargs.get("messages")
        attrs = number_attributes(kwargs, {
            "max_tokens": names.REQUEST_MAX_TOKENS,
            "temperature": names.REQUEST_TEMPERATURE,
            "top_p": names.REQUEST_TOP_P,
            "random_seed": names.REQUEST_SEED,
            "n": names.REQUEST_CHOICE_COUNT,
        })

        def prompt_text() -> str:
            return "\n".join(content_text(field_of(m, "content")) for m in messages or ())

        return self.request_info(model, attrs, prompt_text)

    def response(self, request: RequestInfo, result: Any) -> ResponseInfo:
        unmeasured: list[str] = []
        usage = chat_usage(field_of(result, "usage"), unmeasured)
        choices = field_of(result, "choices") or ()
        info = ResponseInfo(
            model=str_or_none(field_of(result, "model")),
            id=str_or_none(field_of(result, "id")),
            finish_reasons=finish_reasons(field_of(c, "finish_reason") for c in choices),
            usage=usage,
            unmeasured=unmeasured,
        )
        return with_output_text(
            info, lambda: "".join(content_text(field_of(field_of(c, "message"), "content")) for c in choices)
        )

    def accumulator(self, request: RequestInfo) -> ChatStreamAccumulator:
        return ChatStreamAccumulator()


class ChatStreamAccumulator(UsageStreamAccumulator):
    __slots__ = ()

    def on_chunk(self, chunk: Any) -> None:
        data = field_of(chunk, "data")  # CompletionEvent -> CompletionChunk
        if data is None:
            return
        self._model = self._model or str_or_none(field_of(data, "model"))
        self._id = self._id or str_or_none(field_of(data, "id"))
        for choice in field_of(data, "choices") or ():
            self._text.add(content_text(field_of(field_of(choice, "delta"), "content")))
            reason = finish_reasons((field_of(choice, "finish_reason"),))
            if reason:
                self._finish = reason
        usage = field_of(data, "usage")
        if usage is not None:
            self._usage = usage

    def normalize(self, raw: Any, unmeasured: list[str]) -> Usage | None:
        return chat_usage(raw, unmeasured)


_CALL = ChatTranslation(stream=False)
_STREAM = ChatTranslation(stream=True)
# mistralai 2.x+ lives under mistralai.client; 1.x had the same class at mistralai.chat.
TARGETS = Targets(
    target
    for module in ("mistralai.client.chat", "mistralai.chat")
    for target in (
        Target(module, "Chat", "complete", lambda t: sync_wrapper(t, _CALL)),
        Target(module, "Chat", "stream", lambda t: sync_wrapper(t, _STREAM)),
        Target(module, "Chat", "complete_async", lambda t: async_wrapper(t, _CALL)),
        Target(module, "Chat", "stream_async", lambda t: async_wrapper(t, _STREAM)),
    )
)


class MistralInstrumentor(TargetsInstrumentor):
    """Measures ``mistralai`` chat calls, sync and async, plain and streamed."""

    targets = TARGETS
    dependencies = _INSTRUMENTS
