"""One generic wrapper for every provider's streaming response, sync and async.

The proxy hands every chunk to the app unchanged (same object, same order, same exceptions) and feeds a
provider's :class:`StreamAccumulator` on the side. The span ends exactly once, at whichever comes first:
the stream is exhausted, raises, is closed (``close()``, ``with`` exit), or is garbage-collected unread.
Per chunk the proxy does as little as possible; all interpretation is deferred to the end.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import wrapt

from llmmeter.call import (
    REASON_NO_USAGE_IN_STREAM,
    REASON_STREAM_ABANDONED,
    REASON_STREAM_CLOSED_EARLY,
    REASON_STREAM_ERROR,
    LLMCall,
    ResponseInfo,
)

_log = logging.getLogger(__name__)


class StreamAccumulator:
    """Provider-specific stream state. ``on_chunk`` runs per chunk and must be cheap; ``result`` once."""

    __slots__ = ("chunks",)

    def __init__(self) -> None:
        self.chunks = 0

    def on_chunk(self, chunk: Any) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def result(self) -> ResponseInfo:  # pragma: no cover - overridden
        raise NotImplementedError


def _finish(call: LLMCall, acc: StreamAccumulator, error: BaseException | None, how: str) -> None:
    """End the span from what the stream delivered; ``how`` is exhausted|closed|error|abandoned."""
    if call.ended:
        return
    try:
        response = acc.result()
        response.chunks = acc.chunks
    except Exception:
        _log.debug("llmmeter: stream accumulator failed", exc_info=True)
        response = ResponseInfo(unmeasured=["stream_accumulator_error"], chunks=acc.chunks)
    usage = response.usage
    complete = usage is not None and not usage.is_estimated and usage.input is not None and usage.output is not None
    reason = None
    if not complete:
        reason = {
            "exhausted": REASON_NO_USAGE_IN_STREAM,
            "closed": REASON_STREAM_CLOSED_EARLY,
            "error": REASON_STREAM_ERROR,
            "abandoned": REASON_STREAM_ABANDONED,
        }[how]
    elif how == "error":
        reason = REASON_STREAM_ERROR
    call.finish(response, error, estimate_reason=reason)


class _ProxyBase(wrapt.ObjectProxy):  # type: ignore[misc]
    def __init__(self, stream: Any, call: LLMCall, acc: StreamAccumulator) -> None:
        super().__init__(stream)
        self._self_call = call
        self._self_acc = acc

    def __del__(self) -> None:
        # Ends the span if the app drops the stream without reading or closing it (CPython runs this when
        # the last reference goes; cheaper per stream than a weakref.finalize registration).
        try:
            call = self._self_call
        except AttributeError:  # __init__ did not complete
            return
        if not call.ended:
            _finish(call, self._self_acc, None, "abandoned")

    def _self_on_chunk(self, chunk: Any) -> None:
        acc = self._self_acc
        if acc.chunks == 0:
            self._self_call.first_chunk_ns = time.monotonic_ns()
        acc.chunks += 1
        try:
            acc.on_chunk(chunk)
        except Exception:
            _log.debug("llmmeter: could not read a stream chunk", exc_info=True)

    def _self_end(self, error: BaseException | None, how: str) -> None:
        _finish(self._self_call, self._self_acc, error, how)


class SyncStreamProxy(_ProxyBase):
    """Wraps an SDK stream object (``openai.Stream``, ``anthropic.Stream``, any iterator)."""

    def __iter__(self) -> Iterator[Any]:
        # ``for chunk in stream`` (the common case) runs this generator: one generator resume per chunk
        # instead of two Python-level __next__ calls (ours and the SDK stream's). ``next(stream)`` still
        # goes through __next__ below; both feed the same accumulator and end the span once.
        # The loop body is _self_on_chunk inlined: a Python call per chunk is a measurable share of the cost.
        acc = self._self_acc
        on_chunk = acc.on_chunk
        try:
            for chunk in self.__wrapped__:
                if not acc.chunks:
                    self._self_call.first_chunk_ns = time.monotonic_ns()
                acc.chunks += 1
                try:
                    on_chunk(chunk)
                except Exception:
                    _log.debug("llmmeter: could not read a stream chunk", exc_info=True)
                yield chunk
        except GeneratorExit:  # the app stopped iterating; it may go on with next(), close() or drop it
            raise
        except BaseException as exc:
            self._self_end(exc, "error")
            raise
        self._self_end(None, "exhausted")

    def __next__(self) -> Any:
        try:
            chunk = next(self.__wrapped__)
        except StopIteration:
            self._self_end(None, "exhausted")
            raise
        except BaseException as exc:
            self._self_end(exc, "error")
            raise
        self._self_on_chunk(chunk)
        return chunk

    def __enter__(self) -> SyncStreamProxy:
        enter = getattr(self.__wrapped__, "__enter__", None)
        if enter is not None:
            enter()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> Any:
        try:
            exit_ = getattr(self.__wrapped__, "__exit__", None)
            return exit_(exc_type, exc, tb) if exit_ is not None else None
        finally:
            self._self_end(None, "closed")

    def close(self) -> Any:
        try:
            return self.__wrapped__.close()
        finally:
            self._self_end(None, "closed")


class AsyncStreamProxy(_ProxyBase):
    """Wraps an SDK async stream object (``openai.AsyncStream``, ``anthropic.AsyncStream``, ...)."""

    def __aiter__(self) -> AsyncStreamProxy:
        return self

    async def __anext__(self) -> Any:
        try:
            chunk = await self.__wrapped__.__anext__()
        except StopAsyncIteration:
            self._self_end(None, "exhausted")
            raise
        except BaseException as exc:
            self._self_end(exc, "error")
            raise
        self._self_on_chunk(chunk)
        return chunk

    async def __aenter__(self) -> AsyncStreamProxy:
        enter = getattr(self.__wrapped__, "__aenter__", None)
        if enter is not None:
            await enter()
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> Any:
        try:
            exit_ = getattr(self.__wrapped__, "__aexit__", None)
            return (await exit_(exc_type, exc, tb)) if exit_ is not None else None
        finally:
            self._self_end(None, "closed")

    async def close(self) -> Any:
        try:
            return await self.__wrapped__.close()
        finally:
            self._self_end(None, "closed")

    async def aclose(self) -> Any:
        try:
            closer = getattr(self.__wrapped__, "aclose", None) or self.__wrapped__.close
            return await closer()
        finally:
            self._self_end(None, "closed")
