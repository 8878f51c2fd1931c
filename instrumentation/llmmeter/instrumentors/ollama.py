"""llmmeter instrumentor for the native ``ollama`` client: ``Client.chat`` / ``generate`` and ``AsyncClient``'s
twins, plain and ``stream=True``.

Usage is ``prompt_eval_count`` (input) and ``eval_count`` (output) on the response, or on the final
(``done``) chunk of a stream. Ollama leaves ``prompt_eval_count`` out when the whole prompt came from its
prompt cache; semconv input counts cached tokens too, so the input is then estimated from the prompt (and
the span says so) rather than recorded as 0. Local models cost nothing: the pricing module prices the
``ollama`` provider at exactly 0 USD (``llmmeter.cost.priced = true``), so dashboards show their tokens
beside paid calls without inventing a cost.
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
    TextBuffer,
    finish_reasons,
    number_attributes,
    str_or_none,
    with_output_text,
)
from llmmeter.instrumentors._wrap import async_wrapper, sync_wrapper
from llmmeter.streams import StreamAccumulator
from llmmeter.usage import Usage, as_count, field_of

_INSTRUMENTS = ("ollama >= 0.4",)


def normalize_usage(response: Any, unmeasured: list[str] | None = None) -> Usage | None:
    """``prompt_eval_count`` / ``eval_count`` of a final response as :class:`Usage` (unknown counts: None)."""
    notes = unmeasured if unmeasured is not None else []
    prompt = as_count(field_of(response, "prompt_eval_count"))
    output = as_count(field_of(response, "eval_count"))
    if prompt is None:
        notes.append("prompt_eval_count_missing")
    if output is None:
        notes.append("eval_count_missing")
    if prompt is None and output is None:
        return None
    return Usage(input=prompt, output=output)


def _output_text(response: Any) -> str:
    message = field_of(response, "message")
    if message is not None:
        return "".join(t for t in (field_of(message, "thinking"), field_of(message, "content")) if isinstance(t, str))
    text = field_of(response, "response")
    return text if isinstance(text, str) else ""


class OllamaTranslation(ProviderTranslation):
    """``chat(model, messages, ...)`` or ``generate(model, prompt, ...)``; ``model`` may be positional.

    One translation per method (not per plain/streamed method, as for the other SDKs): ``stream=True`` is
    an argument here, read per call.
    """

    provider = names.PROVIDER_OLLAMA

    def __init__(self, operation: str) -> None:
        super().__init__()
        self.operation = operation

    def request(self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> RequestInfo | None:
        model = kwargs.get("model", args[0] if args else None)
        second = "messages" if self.operation == names.OP_CHAT else "prompt"
        payload = kwargs.get(second, args[1] if len(args) > 1 else None)
        options = kwargs.get("options")
        attrs = number_attributes(options, {
            "num_predict": names.REQUEST_MAX_TOKENS,
            "temperature": names.REQUEST_TEMPERATURE,
            "top_p": names.REQUEST_TOP_P,
            "seed": names.REQUEST_SEED,
        }) if options is not None else {}
        host = getattr(getattr(getattr(instance, "_client", None), "base_url", None), "host", None)
        if host:
            attrs[names.SERVER_ADDRESS] = str(host)

        def prompt_text() -> str:
            if isinstance(payload, str):
                texts = [payload]
            else:
                texts = [field_of(m, "content") for m in payload or ()]
            system = kwargs.get("system")
            return "\n".join(t for t in (system, *texts) if isinstance(t, str) and t)

        request = self.request_info(model if isinstance(model, str) and model else None, attrs, prompt_text)
        request.stream = kwargs.get("stream") is True
        return request

    def response(self, request: RequestInfo, result: Any) -> ResponseInfo:
        unmeasured: list[str] = []
        usage = normalize_usage(result, unmeasured)
        info = ResponseInfo(
            model=str_or_none(field_of(result, "model")),
            finish_reasons=finish_reasons((field_of(result, "done_reason"),)),
            usage=usage,
            unmeasured=unmeasured,
        )
        return with_output_text(info, lambda: _output_text(result))

    def accumulator(self, request: RequestInfo) -> StreamAccumulator:
        return OllamaStreamAccumulator()


class OllamaStreamAccumulator(StreamAccumulator):
    __slots__ = ("_final", "_model", "_text")

    def __init__(self) -> None:
        super().__init__()
        self._text = TextBuffer()
        self._final: Any = None
        self._model: str | None = None

    def on_chunk(self, chunk: Any) -> None:
        self._model = self._model or str_or_none(field_of(chunk, "model"))
        self._text.add(_output_text(chunk))
        if field_of(chunk, "done") is True:
            self._final = chunk

    def result(self) -> ResponseInfo:
        if self._final is None:
            return ResponseInfo(model=self._model, output_text=self._text.text())
        unmeasured: list[str] = []
        usage = normalize_usage(self._final, unmeasured)
        info = ResponseInfo(model=self._model, finish_reasons=finish_reasons((field_of(self._final, "done_reason"),)),
                            usage=usage, unmeasured=unmeasured)
        return with_output_text(info, self._text.text)


_CHAT = OllamaTranslation(names.OP_CHAT)
_GENERATE = OllamaTranslation(names.OP_TEXT_COMPLETION)
_MODULE = "ollama._client"
TARGETS = Targets([
    Target(_MODULE, "Client", "chat", lambda t: sync_wrapper(t, _CHAT)),
    Target(_MODULE, "Client", "generate", lambda t: sync_wrapper(t, _GENERATE)),
    Target(_MODULE, "AsyncClient", "chat", lambda t: async_wrapper(t, _CHAT)),
    Target(_MODULE, "AsyncClient", "generate", lambda t: async_wrapper(t, _GENERATE)),
])


class OllamaInstrumentor(TargetsInstrumentor):
    """Measures native ``ollama`` client chat/generate calls (tokens; cost 0 by the price table)."""

    targets = TARGETS
    dependencies = _INSTRUMENTS
