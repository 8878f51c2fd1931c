"""llmmeter instrumentor for Amazon Bedrock through boto3 (``bedrock-runtime``): ``converse``,
``converse_stream``, ``invoke_model`` and ``invoke_model_with_response_stream``.

boto3 builds client classes at run time from service models, so there is no ``BedrockRuntime.converse``
to wrap. Every operation of every client goes through ``botocore.client.BaseClient._make_api_call``:
that one method is wrapped, and calls whose service is not ``bedrock-runtime`` (or whose operation is not
one of the four) pass straight through after two string comparisons.

Where usage comes from, per operation (each source is what Bedrock bills):

* Converse: ``usage.inputTokens`` / ``outputTokens`` / ``cacheReadInputTokens`` / ``cacheWriteInputTokens``.
* ConverseStream: the same block in the final ``metadata`` event.
* InvokeModel: the ``X-Amzn-Bedrock-{Input,Output,Cache-Read-Input,Cache-Write-Input}-Token-Count`` response
  headers, which Bedrock sends for every model family. The body is a one-shot ``StreamingBody`` that
  belongs to the app: llmmeter never reads it, so it needs no per-family body parser here.
* InvokeModelWithResponseStream: ``amazon-bedrock-invocationMetrics`` in the last chunk (every family);
  failing that, the family's own usage fields (Anthropic ``message_start``/``message_delta``, Nova
  ``metadata.usage``, Meta ``prompt_token_count``/``generation_token_count``, Titan
  ``inputTextTokenCount``/``totalOutputTextTokenCount``). Text deltas of the Anthropic, Meta, Mistral,
  Amazon (Titan / Nova) and Cohere body formats are kept (bounded) for an estimate when a stream ends early.

Bedrock's ``inputTokens`` EXCLUDES cache reads and writes (like Anthropic's API), so the semconv input is
``inputTokens + cacheRead + cacheWrite``. Model ids are reported as sent (``us.``/``eu.``/``apac.``
inference profiles, ARNs, ``-v1:0`` versions); the price table normalizes them.

Streams: the response is the app's dict; its ``stream`` (Converse) or ``body`` (InvokeModel) EventStream is
replaced by a transparent proxy of the same object, so the span ends when the events are exhausted,
the stream is closed, errors, or is dropped unread.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

from opentelemetry.trace import Tracer

from llmmeter import names
from llmmeter.call import AttributeValue, RequestInfo, ResponseInfo
from llmmeter.instrumentors._common import (
    Target,
    Targets,
    TargetsInstrumentor,
    TextBuffer,
    number_attributes,
)
from llmmeter.instrumentors._wrap import Running, Translation, begin_call, mark_ours
from llmmeter.streams import StreamAccumulator, SyncStreamProxy
from llmmeter.usage import Usage, as_count, field_of

_log = logging.getLogger(__name__)

_INSTRUMENTS = ("botocore >= 1.34",)
SERVICE = "bedrock-runtime"
CONVERSE = "Converse"
CONVERSE_STREAM = "ConverseStream"
INVOKE = "InvokeModel"
INVOKE_STREAM = "InvokeModelWithResponseStream"
_OPERATIONS = frozenset({CONVERSE, CONVERSE_STREAM, INVOKE, INVOKE_STREAM})
_STREAM_KEY = {CONVERSE_STREAM: "stream", INVOKE_STREAM: "body"}
_HEADER = "x-amzn-bedrock-{}-token-count"


# --- usage -----------------------------------------------------------------------------------------


def normalize_usage(
    input_tokens: Any, output_tokens: Any, cache_read: Any, cache_write: Any, unmeasured: list[str] | None = None
) -> Usage | None:
    """Bedrock counts (input WITHOUT cache) as semconv :class:`Usage`; junk counts stay unknown (None)."""
    raw_input = as_count(input_tokens)
    output = as_count(output_tokens)
    if raw_input is None and output is None:
        if unmeasured is not None:
            unmeasured.append("usage_missing")
        return None
    read = as_count(cache_read) or 0
    write = as_count(cache_write) or 0
    if unmeasured is not None:
        if raw_input is None:
            unmeasured.append("usage.inputTokens")
        if output is None:
            unmeasured.append("usage.outputTokens")
    return Usage(
        input=None if raw_input is None else raw_input + read + write,
        output=output,
        cache_read=read,
        cache_creation=write,
    )


def converse_usage(usage: Any, unmeasured: list[str] | None = None) -> Usage | None:
    """A Converse ``usage`` block (the ``...TokenCount`` spellings appear in some recordings too)."""
    if not isinstance(usage, dict):
        if unmeasured is not None:
            unmeasured.append("usage_missing")
        return None
    return normalize_usage(
        usage.get("inputTokens"),
        usage.get("outputTokens"),
        _first(usage, "cacheReadInputTokens", "cacheReadInputTokenCount"),
        _first(usage, "cacheWriteInputTokens", "cacheWriteInputTokenCount"),
        unmeasured,
    )


def header_usage(headers: Any, unmeasured: list[str] | None = None) -> Usage | None:
    """InvokeModel usage from Bedrock's token-count response headers (botocore lower-cases header names)."""
    if not isinstance(headers, dict):
        headers = {}

    def count(kind: str) -> int | None:
        value = headers.get(_HEADER.format(kind))
        try:
            return int(value) if isinstance(value, str) and value.strip().isdigit() else None
        except ValueError:
            return None

    return normalize_usage(count("input"), count("output"), count("cache-read-input"), count("cache-write-input"),
                           unmeasured)


def _first(mapping: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if mapping.get(key) is not None:
            return mapping[key]
    return None


# --- request -----------------------------------------------------------------------------------------


def _json_body(body: Any) -> Any:
    """The InvokeModel request body as JSON when it is bytes/str (a file object is left alone)."""
    if isinstance(body, (bytes, bytearray, str)):
        try:
            return json.loads(body)
        except ValueError:
            return None
    return None


def _texts(value: Any, out: list[str]) -> None:
    """Every string under ``text``/``content``/``prompt``/``inputText``/``message`` keys, depth first."""
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, dict):
        for key in ("system", "prompt", "inputText", "message", "messages", "content", "text", "chat_history"):
            if key in value:
                _texts(value[key], out)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _texts(item, out)


def _operation(op: str, model: str | None, body: Any) -> str:
    if op in (CONVERSE, CONVERSE_STREAM):
        return names.OP_CHAT
    if model and "embed" in model.lower():
        return names.OP_EMBEDDINGS
    if isinstance(body, dict) and ("prompt" in body or "inputText" in body) and "messages" not in body:
        return names.OP_TEXT_COMPLETION
    return names.OP_CHAT


class BedrockTranslation(Translation):
    """Reads ``_make_api_call(operation_name, api_params)`` for the four bedrock-runtime inference operations."""

    def request(self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> RequestInfo | None:
        op = args[0] if args else kwargs.get("operation_name")
        if op not in _OPERATIONS:
            return None
        meta = getattr(instance, "meta", None)
        if getattr(getattr(meta, "service_model", None), "service_name", None) != SERVICE:
            return None
        params = args[1] if len(args) > 1 else kwargs.get("api_params")
        if not isinstance(params, dict):
            return None
        model = params.get("modelId") if isinstance(params.get("modelId"), str) else None
        body = _json_body(params.get("body")) if op in (INVOKE, INVOKE_STREAM) else None
        attrs: dict[str, AttributeValue] = {}
        if op in (CONVERSE, CONVERSE_STREAM):
            attrs.update(number_attributes(params.get("inferenceConfig") or {}, {
                "maxTokens": names.REQUEST_MAX_TOKENS,
                "temperature": names.REQUEST_TEMPERATURE,
                "topP": names.REQUEST_TOP_P,
            }))
        elif isinstance(body, dict):
            attrs.update(number_attributes(body, {
                "max_tokens": names.REQUEST_MAX_TOKENS,
                "max_gen_len": names.REQUEST_MAX_TOKENS,
                "temperature": names.REQUEST_TEMPERATURE,
                "top_p": names.REQUEST_TOP_P,
            }))
        host = getattr(meta, "endpoint_url", None)
        if isinstance(host, str) and "://" in host:
            attrs[names.SERVER_ADDRESS] = host.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[0]

        def prompt_text() -> str:
            out: list[str] = []
            _texts(body if body is not None else {"system": params.get("system"), "messages": params.get("messages")},
                   out)
            return "\n".join(t for t in out if t)

        return RequestInfo(
            provider=names.PROVIDER_AWS_BEDROCK,
            operation=_operation(op, model, body),
            model=model,
            attributes=attrs,
            stream=op in _STREAM_KEY,
            prompt_text=prompt_text,
        )

    def response(self, request: RequestInfo, result: Any) -> ResponseInfo:
        unmeasured: list[str] = []
        metadata = field_of(result, "ResponseMetadata") or {}
        request_id = field_of(metadata, "RequestId")
        if "usage" in result or "output" in result:  # Converse
            usage = converse_usage(result.get("usage"), unmeasured)
            stop = result.get("stopReason")
            info = ResponseInfo(id=request_id if isinstance(request_id, str) else None, usage=usage,
                                finish_reasons=(stop,) if isinstance(stop, str) else None, unmeasured=unmeasured)
            if usage is None or usage.output is None:
                out: list[str] = []
                _texts(field_of(field_of(result.get("output"), "message"), "content"), out)
                info.output_text = "\n".join(out)
            return info
        usage = header_usage(field_of(metadata, "HTTPHeaders"), unmeasured)
        return ResponseInfo(id=request_id if isinstance(request_id, str) else None, usage=usage,
                            unmeasured=unmeasured)

    def accumulator(self, request: RequestInfo) -> StreamAccumulator:
        return BedrockStreamAccumulator()


class BedrockStreamAccumulator(StreamAccumulator):
    """ConverseStream events (``{"contentBlockDelta": ...}``, ``{"metadata": ...}``) and InvokeModel stream
    chunks (``{"chunk": {"bytes": b"<family JSON>"}}``) in one place: both end in a usage block."""

    __slots__ = ("_anthropic", "_metrics", "_stop", "_text", "_usage")

    def __init__(self) -> None:
        super().__init__()
        self._text = TextBuffer()
        self._usage: Usage | None = None  # Converse metadata / Nova / Meta / Titan usage
        self._metrics: dict[str, Any] | None = None  # amazon-bedrock-invocationMetrics
        self._anthropic: dict[str, Any] = {}
        self._stop: str | None = None

    def on_chunk(self, chunk: Any) -> None:
        if not isinstance(chunk, dict):
            return
        if "chunk" in chunk:
            raw = field_of(chunk["chunk"], "bytes")
            if isinstance(raw, (bytes, bytearray, str)):
                payload = json.loads(raw)
                if isinstance(payload, dict):
                    self._on_payload(payload)
            return
        self._on_converse(chunk)

    def _on_converse(self, event: dict[str, Any]) -> None:
        if "contentBlockDelta" in event:
            delta = field_of(event["contentBlockDelta"], "delta")
            self._text.add(field_of(delta, "text"))
            self._text.add(field_of(field_of(delta, "reasoningContent"), "text"))
        elif "messageStop" in event:
            stop = field_of(event["messageStop"], "stopReason")
            self._stop = stop if isinstance(stop, str) else None
        elif "metadata" in event:
            usage = field_of(event["metadata"], "usage")
            if usage is not None:
                self._usage = converse_usage(usage)

    def _on_payload(self, payload: dict[str, Any]) -> None:
        metrics = payload.get("amazon-bedrock-invocationMetrics")
        if isinstance(metrics, dict):
            self._metrics = metrics
        kind = payload.get("type")
        if isinstance(kind, str):  # Anthropic Messages events
            self._on_anthropic(kind, payload)
            return
        if any(k in payload for k in ("contentBlockDelta", "messageStop", "metadata")):  # Nova
            self._on_converse(payload)
            return
        # Meta ("generation"), Titan ("outputText"), Cohere ("text" / "generations"), Mistral ("outputs" /
        # "choices"): text, then any family usage fields.
        for key in ("generation", "outputText", "text", "completion"):
            self._text.add(payload.get(key))
        for key in ("generations", "outputs", "choices"):
            for item in payload.get(key) or ():
                self._text.add(field_of(item, "text"))
                self._text.add(field_of(field_of(item, "message"), "content"))
                self._text.add(field_of(field_of(item, "delta"), "content"))
                stop = field_of(item, "stop_reason") or field_of(item, "finish_reason")
                if isinstance(stop, str):
                    self._stop = stop
        for key in ("stop_reason", "completionReason", "finish_reason"):
            if isinstance(payload.get(key), str):
                self._stop = payload[key]
        prompt = payload.get("prompt_token_count", payload.get("inputTextTokenCount"))
        output = payload.get("generation_token_count", payload.get("totalOutputTextTokenCount"))
        if prompt is not None or output is not None:
            previous = self._usage
            self._usage = normalize_usage(
                prompt if prompt is not None else (previous.input if previous else None),
                output if output is not None else (previous.output if previous else None),
                None,
                None,
            )

    def _on_anthropic(self, kind: str, payload: dict[str, Any]) -> None:
        if kind == "content_block_delta":
            delta = payload.get("delta")
            self._text.add(field_of(delta, "text") or field_of(delta, "thinking") or field_of(delta, "partial_json"))
        elif kind == "completion":  # legacy Text Completions
            self._text.add(payload.get("completion"))
        elif kind == "message_start":
            usage = field_of(payload.get("message"), "usage")
            if isinstance(usage, dict):
                self._anthropic.update(usage)
        elif kind == "message_delta":
            usage = payload.get("usage")
            if isinstance(usage, dict):
                self._anthropic.update({k: v for k, v in usage.items() if v is not None})
            stop = field_of(payload.get("delta"), "stop_reason")
            if isinstance(stop, str):
                self._stop = stop

    def result(self) -> ResponseInfo:
        unmeasured: list[str] = []
        usage: Usage | None = None
        if self._metrics is not None:
            m = self._metrics
            usage = normalize_usage(m.get("inputTokenCount"), m.get("outputTokenCount"),
                                    m.get("cacheReadInputTokenCount"), m.get("cacheWriteInputTokenCount"), unmeasured)
        elif self._usage is not None:
            usage = self._usage
        elif self._anthropic and "output_tokens" in self._anthropic and self._stop is not None:
            a = self._anthropic
            usage = normalize_usage(a.get("input_tokens"), a.get("output_tokens"), a.get("cache_read_input_tokens"),
                                    a.get("cache_creation_input_tokens"), unmeasured)
        info = ResponseInfo(usage=usage, finish_reasons=(self._stop,) if self._stop else None, unmeasured=unmeasured)
        if usage is None or usage.output is None:
            info.output_text = self._text.text()
        return info


class EventStreamProxy(SyncStreamProxy):
    """A botocore ``EventStream`` is iterable but not an iterator: iterate it through ``iter()`` while every
    other attribute (``close()``, ``get_initial_response()``...) still reaches the EventStream itself."""

    def __init__(self, stream: Any, call: Any, acc: StreamAccumulator) -> None:
        super().__init__(stream, call, acc)
        self._self_iter: Iterator[Any] | None = None

    def __next__(self) -> Any:
        try:
            if self._self_iter is None:
                self._self_iter = iter(self.__wrapped__)
            chunk = next(self._self_iter)
        except StopIteration:
            self._self_end(None, "exhausted")
            raise
        except BaseException as exc:
            self._self_end(exc, "error")
            raise
        self._self_on_chunk(chunk)
        return chunk


def _make_api_call_wrapper(get_tracer: Callable[[], Tracer], translation: Translation) -> Callable[..., Any]:
    """Like ``_wrap.sync_wrapper``, but a stream is proxied INSIDE the response dict the app gets back."""

    def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        call = begin_call(get_tracer(), translation, instance, args, kwargs)
        if call is None:
            return wrapped(*args, **kwargs)
        with Running(call):
            result = wrapped(*args, **kwargs)
        try:
            key = _STREAM_KEY.get(args[0] if args else kwargs.get("operation_name"))
            if key is not None and isinstance(result, dict) and result.get(key) is not None:
                metadata = field_of(result, "ResponseMetadata") or {}
                request_id = field_of(metadata, "RequestId")
                if isinstance(request_id, str):
                    call.span.set_attribute(names.RESPONSE_ID, request_id)
                result[key] = EventStreamProxy(result[key], call, translation.accumulator(call.request))
            else:
                call.finish(translation.response(call.request, result))
        except Exception:
            _log.debug("llmmeter: could not read a Bedrock response", exc_info=True)
            call.finish(ResponseInfo(unmeasured=["response_unreadable"]))
        return result

    return mark_ours(wrapper)


_TRANSLATION = BedrockTranslation()
TARGETS = Targets([
    Target("botocore.client", "BaseClient", "_make_api_call", lambda t: _make_api_call_wrapper(t, _TRANSLATION)),
])


class BedrockInstrumentor(TargetsInstrumentor):
    """Measures Amazon Bedrock inference calls made with boto3 (see the module docstring)."""

    targets = TARGETS
    dependencies = _INSTRUMENTS
