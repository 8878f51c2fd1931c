"""The wrapt wrappers every instrumentor installs: thin, identical for all providers.

A provider supplies a :class:`Translation` (how to read its SDK's request, response and stream chunks);
the wrapper does the rest through :mod:`llmmeter.call` and :mod:`llmmeter.streams`. The wrapped SDK
call always runs exactly as it would without llmmeter: same arguments (unless the user opted in to
``include_usage``), same return object (a stream is proxied, never copied), same exception object.
"""

from __future__ import annotations

import contextvars
import inspect
import logging
from collections.abc import Callable
from typing import Any

import wrapt
from opentelemetry.trace import Tracer

from llmmeter.call import LLMCall, RequestInfo, ResponseInfo, start_call
from llmmeter.streams import AsyncStreamProxy, StreamAccumulator, SyncStreamProxy
from llmmeter.streams import _finish as finish_stream

_log = logging.getLogger(__name__)


class Translation:
    """How one SDK operation's calls are read. Subclasses override what their SDK needs."""

    def request(self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> RequestInfo | None:
        """Read the call's arguments; None means "not an LLM call we measure" (passed through)."""
        raise NotImplementedError

    def prepare_kwargs(self, request: RequestInfo, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Opt-in request changes (e.g. ``include_usage``); returns the kwargs to call with."""
        return kwargs

    def response(self, request: RequestInfo, result: Any) -> ResponseInfo:
        raise NotImplementedError

    def is_stream(self, request: RequestInfo, result: Any) -> bool:
        return request.stream

    def accumulator(self, request: RequestInfo) -> StreamAccumulator:
        raise NotImplementedError


# True while a wrapper that measures a whole call runs (LiteLLM, which may call a provider SDK underneath): the
# provider SDK wrappers inside it pass through, so one call is one span, one price and one guard check.
_inside_measured_call: contextvars.ContextVar[bool] = contextvars.ContextVar("llmmeter_measured_call", default=False)


def begin_call(tracer: Tracer, translation: Translation, instance: Any, args: Any, kwargs: Any) -> LLMCall | None:
    if _inside_measured_call.get():
        return None
    try:
        request = translation.request(instance, args, kwargs)
    except Exception:
        _log.debug("llmmeter: could not read a request", exc_info=True)
        return None
    if request is None:
        return None
    return start_call(tracer, request)  # a guard's refusal propagates from here, on purpose


class Running:
    """``with Running(call):`` around the SDK's own call: the call's span is current inside (HTTP spans nest
    under it, traceparent is sent); an exception ends the span as failed and propagates unchanged (the
    same object: ``__exit__`` never swallows it).

    ``measured``: this call measures a whole framework call (LiteLLM); provider SDK wrappers inside it pass
    through. Written once for the sync and async wrappers, Bedrock's and Anthropic's ``stream()`` managers;
    a slotted class rather than ``@contextmanager``, which costs a generator per call.
    """

    __slots__ = ("_call", "_inside", "_measured", "_token")

    def __init__(self, call: LLMCall, measured: bool = False) -> None:
        self._call = call
        self._measured = measured

    def __enter__(self) -> None:
        self._token = self._call.activate()
        self._inside = _inside_measured_call.set(True) if self._measured else None

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        try:
            if exc is not None:
                self._call.finish(None, exc)
        finally:
            if self._inside is not None:
                _inside_measured_call.reset(self._inside)
            self._call.deactivate(self._token)
        return False


def _handle_result(call: LLMCall, translation: Translation, result: Any, proxy: type) -> Any:
    try:
        if call.request.stream and type(result).__name__ in _STREAMING_RESPONSES and hasattr(result, "parse"):
            return StreamingResponseProxy(result, call, translation.accumulator(call.request), proxy)
        if translation.is_stream(call.request, result):
            return proxy(result, call, translation.accumulator(call.request))
        call.finish(translation.response(call.request, result))
    except Exception:
        _log.debug("llmmeter: could not read a response", exc_info=True)
        call.finish(ResponseInfo(unmeasured=["response_unreadable"]))
    return result


# What ``with_streaming_response.create(stream=True)`` returns (Stainless SDKs: openai, anthropic): an unread body.
_STREAMING_RESPONSES = frozenset({"APIResponse", "AsyncAPIResponse"})


class StreamingResponseProxy(wrapt.ObjectProxy):  # type: ignore[misc]
    """The unread response of ``with_streaming_response`` for a streamed call (the OpenAI Agents SDK streams this way).

    ``parse()`` returns the SDK's stream wrapped like a plain stream, so the call is measured from its chunks
    (usage included) and the span ends with the stream. An app that never parses (reads ``iter_lines()``
    itself) leaves the span to end as abandoned, with estimates, when this object goes.
    """

    def __init__(self, response: Any, call: LLMCall, acc: StreamAccumulator, proxy: type) -> None:
        super().__init__(response)
        self._self_call, self._self_acc, self._self_proxy = call, acc, proxy
        self._self_parsed = False

    def parse(self, *args: Any, **kwargs: Any) -> Any:
        result = self.__wrapped__.parse(*args, **kwargs)
        if inspect.isawaitable(result):
            return self._self_parse_async(result)
        return self._self_wrap(result)

    async def _self_parse_async(self, awaitable: Any) -> Any:
        return self._self_wrap(await awaitable)

    def _self_wrap(self, stream: Any) -> Any:
        if self._self_parsed or self._self_call.ended:
            return stream
        self._self_parsed = True
        try:
            return self._self_proxy(stream, self._self_call, self._self_acc)
        except Exception:
            return stream

    def __del__(self) -> None:
        try:
            call, parsed = self._self_call, self._self_parsed
        except AttributeError:
            return
        if not parsed and not call.ended:
            finish_stream(call, self._self_acc, None, "abandoned")


def _prepared(call: LLMCall, translation: Translation, kwargs: dict[str, Any]) -> dict[str, Any]:
    try:
        return translation.prepare_kwargs(call.request, kwargs)
    except Exception:
        return kwargs


_MAX_WRAPPER_DEPTH = 8  # wrappers stacked on one SDK method that unwrap_ours() looks through


def mark_ours(wrapper: Callable[..., Any]) -> Callable[..., Any]:
    """Tag a wrapper as llmmeter's, so uninstrument can tell it from another instrumentor's wrapper."""
    wrapper.__llmmeter__ = True  # type: ignore[attr-defined]
    return wrapper


def is_ours(obj: Any) -> bool:
    """Whether ``obj`` (a class attribute, plain or bound wrapt wrapper) is an llmmeter wrapper."""
    return bool(getattr(getattr(obj, "_self_wrapper", None), "__llmmeter__", False))


def unwrap_ours(cls: type, method: str) -> bool:
    """Remove llmmeter's wrapper from ``cls.method``; returns whether it was found.

    Outermost (plain, or the bound form OTel's ``unwrap()`` writes back): the attribute is restored. Under
    another instrumentor's wrapper: ours is spliced out of the chain and theirs stays in place, so theirs
    keeps working and its own uninstrument later restores the SDK's function.
    """
    current = cls.__dict__.get(method)
    if is_ours(current):
        setattr(cls, method, current.__wrapped__)  # type: ignore[union-attr]
        return True
    outer = current
    for _ in range(_MAX_WRAPPER_DEPTH):
        inner = getattr(outer, "__wrapped__", None)
        if inner is None:
            return False
        if is_ours(inner):
            try:
                outer.__wrapped__ = inner.__wrapped__  # type: ignore[union-attr]
            except Exception:  # not a wrapt proxy: leave it (and ours under it) alone
                return False
            return True
        outer = inner
    return False


def sync_wrapper(
    get_tracer: Callable[[], Tracer], translation: Translation, measured: bool = False
) -> Callable[..., Any]:
    """``measured``: this wrapper measures the whole call; provider SDK wrappers under it pass through."""

    def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        call = begin_call(get_tracer(), translation, instance, args, kwargs)
        if call is None:
            return wrapped(*args, **kwargs)
        kwargs = _prepared(call, translation, kwargs)
        with Running(call, measured):
            result = wrapped(*args, **kwargs)
        return _handle_result(call, translation, result, SyncStreamProxy)

    return mark_ours(wrapper)


def async_wrapper(
    get_tracer: Callable[[], Tracer], translation: Translation, measured: bool = False
) -> Callable[..., Any]:
    async def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        call = begin_call(get_tracer(), translation, instance, args, kwargs)
        if call is None:
            return await wrapped(*args, **kwargs)
        kwargs = _prepared(call, translation, kwargs)
        with Running(call, measured):
            result = await wrapped(*args, **kwargs)
        return _handle_result(call, translation, result, AsyncStreamProxy)

    return mark_ours(wrapper)
