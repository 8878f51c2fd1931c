"""llmmeter instrumentor for the ``anthropic`` SDK: Messages API (plain and beta), sync and async, on the
first-party client and on the Bedrock / Vertex AI clients the same SDK ships.

What is wrapped, and why at that depth:

* ``messages.create`` / ``messages.parse`` (and their beta twins): one call, one span. With ``stream=True``
  ``create`` returns the SDK's raw ``Stream``, which :mod:`llmmeter.streams` proxies.
* ``messages.stream()`` does NOT go through ``create``: it returns a ``MessageStreamManager`` holding a
  ``partial(self._post, ...)`` that is only sent when the manager is entered, and the ``MessageStream`` it
  yields iterates the raw ``Stream`` itself for every helper (``text_stream``, ``get_final_message()``,
  ``until_done()``, plain iteration). So the only object every helper reads through is that raw stream.
  The ``stream()`` wrapper returns the manager behind a proxy whose ``__enter__`` starts the span and
  sends the request; while it runs, the wrapper of ``MessageStream.__init__`` hands the SDK our proxy of
  the raw stream instead of the raw stream. Every helper then feeds the same accumulator and the span
  ends exactly once: at the end of the events, on ``close()`` / ``with`` exit, on error or at GC.
* The Bedrock and Vertex beta resources copy ``create``/``stream`` from the first-party beta class at
  import time (``create = FirstPartyMessagesAPI.create``), so they are wrapped separately.

Usage is normalized to semconv: Anthropic's ``input_tokens`` EXCLUDES the cache, so
``input = input_tokens + cache_read_input_tokens + cache_creation_input_tokens``; the 1-hour share of
cache writes (``cache_creation.ephemeral_1h_input_tokens``) is kept apart because it is priced higher.
Streams report input usage in ``message_start`` and cumulative output in ``message_delta``; a stream
that ends before ``message_delta`` has its output estimated (the span says so).
Thinking tokens are already inside ``output_tokens``; recent APIs also report them in
``usage.output_tokens_details.thinking_tokens``, which becomes the (subset) reasoning count when present.
"""

from __future__ import annotations

import contextvars
import functools
import importlib
import json
import logging
from collections.abc import Callable
from typing import Any

import wrapt
from opentelemetry.trace import Tracer

from llmmeter import names
from llmmeter.call import AttributeValue, LLMCall, RequestInfo, ResponseInfo, start_call
from llmmeter.config import settings
from llmmeter.instrumentors._common import Target, Targets, TargetsInstrumentor
from llmmeter.instrumentors._sdk import TextBuffer, given
from llmmeter.instrumentors._wrap import Running, Translation, async_wrapper, mark_ours, sync_wrapper
from llmmeter.streams import AsyncStreamProxy, StreamAccumulator, SyncStreamProxy
from llmmeter.usage import Usage, as_count, field_of

_log = logging.getLogger(__name__)

_INSTRUMENTS = ("anthropic >= 0.40",)
_VERSION = "0.1.0"

# (module, class, method, kind); kind: "call" (create/parse) or "stream" (the stream() manager).
_RESOURCE_METHODS: tuple[tuple[str, str, str, str], ...] = tuple(
    (module, cls, method, kind)
    for module in (
        "anthropic.resources.messages.messages",
        "anthropic.resources.beta.messages.messages",
        "anthropic.lib.bedrock._beta_messages",
        "anthropic.lib.vertex._beta_messages",
    )
    for cls in ("Messages", "AsyncMessages")
    for method, kind in (("create", "call"), ("parse", "call"), ("stream", "stream"))
)
# The stream helpers' constructors, which receive the raw stream (see the module docstring).
_STREAM_HELPERS: tuple[tuple[str, str, bool], ...] = (
    ("anthropic.lib.streaming._messages", "MessageStream", False),
    ("anthropic.lib.streaming._messages", "AsyncMessageStream", True),
    ("anthropic.lib.streaming._beta_messages", "BetaMessageStream", False),
    ("anthropic.lib.streaming._beta_messages", "BetaAsyncMessageStream", True),
)

# Client classes whose calls are billed by a cloud platform, not by Anthropic.
_PLATFORM_CLIENTS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("anthropic.lib.bedrock", ("AnthropicBedrock", "AsyncAnthropicBedrock"), names.PROVIDER_AWS_BEDROCK),
    (
        "anthropic.lib.bedrock._mantle",
        ("AnthropicBedrockMantle", "AsyncAnthropicBedrockMantle"),
        names.PROVIDER_AWS_BEDROCK,
    ),
    ("anthropic.lib.vertex", ("AnthropicVertex", "AsyncAnthropicVertex"), names.PROVIDER_GCP_VERTEX_AI),
)


@functools.lru_cache(maxsize=1)
def _platform_classes() -> tuple[tuple[tuple[type, ...], str], ...]:
    found = []
    for module_name, class_names, provider in _PLATFORM_CLIENTS:
        try:
            module = importlib.import_module(module_name)
        except Exception:  # an SDK version without that client
            continue
        classes = tuple(c for c in (getattr(module, n, None) for n in class_names) if isinstance(c, type))
        if classes:
            found.append((classes, provider))
    return tuple(found)


def provider_of(client: Any) -> str:
    """The semconv provider name for an SDK client: Bedrock and Vertex clients bill through the cloud."""
    for classes, provider in _platform_classes():
        if isinstance(client, classes):
            return provider
    return names.PROVIDER_ANTHROPIC


# --- usage -----------------------------------------------------------------------------------------


def normalize_usage(usage: Any, unmeasured: list[str] | None = None) -> Usage | None:
    """An Anthropic ``usage`` block (SDK model or dict) as semconv :class:`Usage`; None if there is none.

    Counts that are missing or not counts (None, strings, negatives) stay unknown (None) and are named in
    ``unmeasured``, so the call's span estimates them instead of recording a wrong number.
    """
    if usage is None:
        if unmeasured is not None:
            unmeasured.append("usage_missing")
        return None
    raw_input = as_count(field_of(usage, "input_tokens"))
    output = as_count(field_of(usage, "output_tokens"))
    cache_read = as_count(field_of(usage, "cache_read_input_tokens")) or 0
    cache_write = as_count(field_of(usage, "cache_creation_input_tokens"))
    breakdown = field_of(usage, "cache_creation")
    write_5m = as_count(field_of(breakdown, "ephemeral_5m_input_tokens")) or 0
    write_1h = as_count(field_of(breakdown, "ephemeral_1h_input_tokens")) or 0
    if cache_write is None:  # only the per-TTL breakdown was sent
        cache_write = write_5m + write_1h
    thinking = as_count(field_of(field_of(usage, "output_tokens_details"), "thinking_tokens")) or 0
    if unmeasured is not None:
        if raw_input is None:
            unmeasured.append("usage.input_tokens")
        if output is None:
            unmeasured.append("usage.output_tokens")
    return Usage(
        input=None if raw_input is None else raw_input + cache_read + cache_write,
        output=output,
        cache_read=cache_read,
        cache_creation=cache_write,
        cache_creation_1h=min(write_1h, cache_write),
        reasoning=min(thinking, output) if output is not None else 0,
        # "standard" | "priority" | "batch": the tier the call was billed at (Messages API usage.service_tier)
        service_tier=tier if isinstance(tier := field_of(usage, "service_tier"), str) else None,
    )


# --- content (opt-in only) -----------------------------------------------------------------------------


def _block_text(block: Any) -> str:
    kind = field_of(block, "type")
    if kind == "text":
        return str(field_of(block, "text") or "")
    if kind == "thinking":
        return str(field_of(block, "thinking") or "")
    if kind == "tool_use":
        try:
            return json.dumps(field_of(block, "input"), default=str)
        except Exception:
            return ""
    return ""


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, (list, tuple)):
        return "\n".join(t for t in (_block_text(b) for b in content) if t)
    return ""


def _parts(content: Any) -> list[dict[str, Any]]:
    """Semconv message parts for Anthropic content (text kept; other blocks named by type only)."""
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    parts: list[dict[str, Any]] = []
    for block in content if isinstance(content, (list, tuple)) else ():
        kind = field_of(block, "type")
        if kind == "text":
            parts.append({"type": "text", "content": str(field_of(block, "text") or "")})
        elif kind == "thinking":
            parts.append({"type": "reasoning", "content": str(field_of(block, "thinking") or "")})
        elif kind == "tool_use":
            parts.append(
                {
                    "type": "tool_call",
                    "id": field_of(block, "id"),
                    "name": field_of(block, "name"),
                    "arguments": field_of(block, "input"),
                }
            )
        else:
            parts.append({"type": str(kind)})
    return parts


def _dumps(value: Any) -> str:
    return json.dumps(value, default=str, ensure_ascii=False)


def _input_content_attributes(kwargs: dict[str, Any]) -> dict[str, AttributeValue]:
    attrs: dict[str, AttributeValue] = {}
    messages = kwargs.get("messages")
    if isinstance(messages, (list, tuple)):
        attrs[names.INPUT_MESSAGES] = _dumps(
            [{"role": field_of(m, "role"), "parts": _parts(field_of(m, "content"))} for m in messages]
        )
    system = kwargs.get("system")
    if isinstance(system, (str, list, tuple)) and system:
        attrs[names.SYSTEM_INSTRUCTIONS] = _dumps(_parts(system))
    return attrs


def _output_messages(parts: list[dict[str, Any]], finish: str | None) -> str:
    return _dumps([{"role": "assistant", "parts": parts, "finish_reason": finish or ""}])


# --- translation -------------------------------------------------------------------------------------


class MessagesTranslation(Translation):
    """Reads ``messages.create`` / ``parse`` / ``stream`` calls (plain and beta: same wire format)."""

    def __init__(self, force_stream: bool = False) -> None:
        self.force_stream = force_stream

    def request(self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> RequestInfo | None:
        client = getattr(instance, "_client", None)
        model = kwargs.get("model")
        stream = self.force_stream or kwargs.get("stream") is True
        attrs: dict[str, AttributeValue] = {}
        for key, name in (
            ("max_tokens", names.REQUEST_MAX_TOKENS),
            ("temperature", names.REQUEST_TEMPERATURE),
            ("top_p", names.REQUEST_TOP_P),
        ):
            value = kwargs.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                attrs[name] = value
        base_url = getattr(client, "base_url", None)
        host = getattr(base_url, "host", None)
        if host:
            attrs[names.SERVER_ADDRESS] = str(host)
            port = getattr(base_url, "port", None)
            if isinstance(port, int):
                attrs[names.SERVER_PORT] = port
        if settings().capture_content:
            attrs.update(_input_content_attributes(kwargs))

        def prompt_text() -> str:
            texts = [_content_text(kwargs.get("system")) if given(kwargs.get("system")) else ""]
            for message in kwargs.get("messages") or ():
                texts.append(_content_text(field_of(message, "content")))
            return "\n".join(t for t in texts if t)

        return RequestInfo(
            provider=provider_of(client),
            operation=names.OP_CHAT,
            model=model if isinstance(model, str) else None,
            attributes=attrs,
            stream=stream,
            prompt_text=prompt_text,
        )

    def is_stream(self, request: RequestInfo, result: Any) -> bool:
        # Only the SDK's event streams are proxied; a raw-response wrapper (with_raw_response /
        # with_streaming_response) is handed back untouched and read, if possible, in response().
        return request.stream and (hasattr(result, "__next__") or hasattr(result, "__anext__"))

    def response(self, request: RequestInfo, result: Any) -> ResponseInfo:
        message = result
        if hasattr(result, "http_response") and not hasattr(result, "usage"):
            message = _raw_body(result)
            if message is None:
                return ResponseInfo(unmeasured=["raw_response_unread"])
        unmeasured: list[str] = []
        usage = normalize_usage(field_of(message, "usage"), unmeasured)
        stop = field_of(message, "stop_reason")
        content = field_of(message, "content")
        info = ResponseInfo(
            model=_str_or_none(field_of(message, "model")),
            id=_str_or_none(field_of(message, "id")),
            finish_reasons=(stop,) if isinstance(stop, str) else None,
            usage=usage,
            unmeasured=unmeasured,
        )
        if usage is None or usage.output is None:
            info.output_text = _content_text(content)
        if settings().capture_content:
            info.attributes = {names.OUTPUT_MESSAGES: _output_messages(_parts(content), stop)}
        return info

    def accumulator(self, request: RequestInfo) -> StreamAccumulator:
        return MessagesAccumulator(settings().capture_content)


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _raw_body(result: Any) -> Any:
    """The JSON body of an already-read raw response (``with_raw_response``), without reading it ourselves."""
    try:
        return json.loads(result.http_response.content)  # raises (no read) when the body was not read yet
    except Exception:
        return None


class MessagesAccumulator(StreamAccumulator):
    """Reads ``RawMessageStreamEvent``s: ids and input usage from ``message_start``, stop reason and the
    cumulative usage from ``message_delta``, text deltas only for an estimate or opted-in content."""

    __slots__ = ("_capture", "_final", "_stop", "_text", "id", "model", "usage_fields")

    def __init__(self, capture: bool = False) -> None:
        super().__init__()
        self._capture = capture
        self._final = False  # a message_delta with usage arrived: output_tokens is the final count
        self._stop: str | None = None
        self._text = TextBuffer()
        self.id: str | None = None
        self.model: str | None = None
        self.usage_fields: dict[str, Any] = {}

    def on_chunk(self, chunk: Any) -> None:
        kind = field_of(chunk, "type")
        if kind == "content_block_delta":
            if self._final and not self._capture:
                return
            delta = field_of(chunk, "delta")
            text = field_of(delta, "text") or field_of(delta, "thinking") or field_of(delta, "partial_json")
            self._text.add(text)
        elif kind == "message_start":
            message = field_of(chunk, "message")
            self.id = _str_or_none(field_of(message, "id"))
            self.model = _str_or_none(field_of(message, "model"))
            self._merge(field_of(message, "usage"))
        elif kind == "message_delta":
            stop = field_of(field_of(chunk, "delta"), "stop_reason")
            if isinstance(stop, str):
                self._stop = stop
            usage = field_of(chunk, "usage")
            if usage is not None:
                self._merge(usage)
                self._final = True

    def _merge(self, usage: Any) -> None:
        """Later events carry cumulative counts: a reported value replaces the earlier one."""
        if usage is None:
            return
        for key in (
            "input_tokens",
            "output_tokens",
            "cache_read_input_tokens",
            "cache_creation_input_tokens",
            "cache_creation",
            "output_tokens_details",
        ):
            value = field_of(usage, key)
            if value is not None:
                self.usage_fields[key] = value

    def result(self) -> ResponseInfo:
        unmeasured: list[str] = []
        usage = normalize_usage(self.usage_fields or None, unmeasured) if self.usage_fields else None
        if usage is not None and not self._final:
            # message_start's output_tokens is a running count of the first chunk, not the total.
            usage.output = None
            usage.reasoning = 0
        text = self._text.text()
        info = ResponseInfo(
            model=self.model,
            id=self.id,
            finish_reasons=(self._stop,) if self._stop else None,
            usage=usage,
            output_text=text,
            unmeasured=unmeasured if self._final else [],
        )
        if self._capture:
            parts = [{"type": "text", "content": text}] if text else []
            info.attributes = {names.OUTPUT_MESSAGES: _output_messages(parts, self._stop)}
        return info


# --- the stream() manager --------------------------------------------------------------------------------


class _Pending:
    """A ``stream()`` call waiting for the SDK to build its MessageStream, whose raw stream we then proxy.

    ``with pending:`` around the manager's own ``__enter__`` / ``__aenter__``: the span is current (see
    :class:`Running`) and ``_PENDING`` names this call, so :func:`_stream_helper_init` can claim the stream.
    """

    __slots__ = ("_running", "_var_token", "acc", "call", "claimed")

    def __init__(self, call: LLMCall, acc: StreamAccumulator) -> None:
        self.call = call
        self.acc = acc
        self.claimed = False

    def __enter__(self) -> None:
        self._var_token = _PENDING.set(self)
        self._running = Running(self.call)
        self._running.__enter__()

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        try:
            self._running.__exit__(exc_type, exc, tb)
        finally:
            _PENDING.reset(self._var_token)
        if exc is None and not self.claimed:
            # The SDK built its stream some other way (a future SDK): end the span rather than leave it open.
            self.call.finish(ResponseInfo(unmeasured=["stream_helper_not_observed"]))
        return False


# Set only while our manager proxy's __enter__ / __aenter__ runs the SDK's: the MessageStream built there
# reads its raw stream through our proxy.
_PENDING: contextvars.ContextVar[_Pending | None] = contextvars.ContextVar("llmmeter_anthropic_stream", default=None)


def _stream_helper_init(async_: bool) -> Callable[..., Any]:
    proxy_cls = AsyncStreamProxy if async_ else SyncStreamProxy

    def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        pending = _PENDING.get()
        if pending is not None and not pending.claimed:
            try:
                if args:
                    args = (proxy_cls(args[0], pending.call, pending.acc), *args[1:])
                    pending.claimed = True
                elif "raw_stream" in kwargs:
                    kwargs = {**kwargs, "raw_stream": proxy_cls(kwargs["raw_stream"], pending.call, pending.acc)}
                    pending.claimed = True
            except Exception:
                _log.debug("llmmeter: could not observe an Anthropic stream", exc_info=True)
        return wrapped(*args, **kwargs)

    return mark_ours(wrapper)


class _ManagerProxy(wrapt.ObjectProxy):  # type: ignore[misc]
    """The manager ``messages.stream()`` returns: nothing is sent until the app enters it, so the call starts
    there (sync and async subclasses differ only in how they enter the SDK's manager)."""

    def __init__(self, manager: Any, tracer: Tracer, translation: Translation, request: RequestInfo) -> None:
        super().__init__(manager)
        self._self_tracer = tracer
        self._self_translation = translation
        self._self_request = request

    def _self_start(self) -> _Pending | None:
        call = start_call(self._self_tracer, self._self_request)  # a guard's refusal propagates, on purpose
        if call is None:
            return None
        return _Pending(call, self._self_translation.accumulator(self._self_request))


class _SyncManagerProxy(_ManagerProxy):
    def __enter__(self) -> Any:
        pending = self._self_start()
        if pending is None:
            return self.__wrapped__.__enter__()
        with pending:
            return self.__wrapped__.__enter__()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> Any:
        return self.__wrapped__.__exit__(exc_type, exc, tb)


class _AsyncManagerProxy(_ManagerProxy):
    async def __aenter__(self) -> Any:
        pending = self._self_start()
        if pending is None:
            return await self.__wrapped__.__aenter__()
        with pending:
            return await self.__wrapped__.__aenter__()

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> Any:
        return await self.__wrapped__.__aexit__(exc_type, exc, tb)


def _stream_method_wrapper(
    get_tracer: Callable[[], Tracer], translation: Translation, async_: bool
) -> Callable[..., Any]:
    proxy_cls = _AsyncManagerProxy if async_ else _SyncManagerProxy

    def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        manager = wrapped(*args, **kwargs)  # nothing is sent yet: the manager sends on enter
        try:
            request = translation.request(instance, args, kwargs)
            if request is None:
                return manager
            return proxy_cls(manager, get_tracer(), translation, request)
        except Exception:
            _log.debug("llmmeter: could not read an Anthropic stream() call", exc_info=True)
            return manager

    return mark_ours(wrapper)


# --- the instrumentor ------------------------------------------------------------------------------------


def _target(module: str, cls: str, method: str, kind: str) -> Target:
    async_ = cls.startswith("Async")
    if kind == "stream":
        translation = MessagesTranslation(force_stream=True)
        return Target(module, cls, method, lambda get_tracer: _stream_method_wrapper(get_tracer, translation, async_))
    make = async_wrapper if async_ else sync_wrapper
    return Target(module, cls, method, lambda get_tracer: make(get_tracer, MessagesTranslation()))


TARGETS = Targets(
    [
        *(_target(*row) for row in _RESOURCE_METHODS),
        *(Target(module, cls, "__init__", lambda _get_tracer, a=async_: _stream_helper_init(a))
          for module, cls, async_ in _STREAM_HELPERS),
    ]
)


class AnthropicInstrumentor(TargetsInstrumentor):
    """Measures every Messages API call of the ``anthropic`` SDK (see the module docstring for what and how).

    Each module is wrapped when the app imports it (at once if it already has): an app that has the SDK
    installed but never imports it pays nothing for it at start-up.
    """

    targets = TARGETS
    dependencies = _INSTRUMENTS
    version = _VERSION
