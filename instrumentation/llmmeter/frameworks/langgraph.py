"""LangGraph and LangChain: a compiled graph's ``invoke`` / ``ainvoke`` / ``stream`` / ``astream`` is an agent run.

* ``Pregel.invoke`` / ``ainvoke`` / ``stream`` / ``astream`` (every compiled ``StateGraph``, the prebuilt
  ``create_react_agent`` graph, subgraphs) are wrapped: the call becomes ``invoke_agent {graph name}``
  (the ``run_name`` of its config, else the graph's ``name``), a :class:`llmmeter.Run` with that name's
  guard limits, current while the graph runs, so the model calls its nodes make through the provider SDKs
  (langchain-openai -> openai, langchain-anthropic -> anthropic) nest under it and are priced there, once.
  ``invoke`` calls ``stream`` on the same graph: that is one run, not two. A subgraph is a nested run.
  A stream's run is current only while the graph computes the next chunk, never in the caller's code.
* A LangChain callback handler (added to every callback manager, as LangChain's own tracers are) turns
  graph nodes into ``step {node}`` spans (``llmmeter.agent.step``) and tools into ``execute_tool {name}``
  spans, counted by the run and its repeated-call guard. It ignores LangChain's LLM callbacks on
  purpose: the provider instrumentor already measured that call, so it is never counted twice.

A cycling graph past its limits is stopped by the hard guard refusing the next model call with
:class:`llmmeter.AgentLoopDetected`, which LangGraph raises from ``invoke`` / ``stream`` as the node's error.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from llmmeter import agents as _agents
from llmmeter import names
from llmmeter.frameworks import _runs

_log = logging.getLogger(__name__)

FRAMEWORK = names.FRAMEWORK_LANGGRAPH
MAX_OPEN_SPANS = 10_000

# id() of the graph whose invoke()/ainvoke() is calling its own stream()/astream(): not a second run.
_entered: contextvars.ContextVar[int | None] = contextvars.ContextVar("llmmeter_langgraph_entered", default=None)


class _State:
    enabled = False


_state = _State()


def _graph_name(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    cfg = kwargs.get("config") if "config" in kwargs else (args[1] if len(args) > 1 else None)
    if isinstance(cfg, dict):
        run_name = cfg.get("run_name")
        if isinstance(run_name, str) and run_name:
            return run_name
    name = getattr(instance, "name", None)
    return name if isinstance(name, str) and name else "LangGraph"


def _start(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any], attach: bool) -> _runs.RunHandle | None:
    """The graph call's run; None when llmmeter is off, when this is the graph's invoke() calling its own
    stream() (one run, not two), or when the run could not start (the graph then runs unmeasured)."""
    if not _state.enabled or _entered.get() == id(instance):
        return None
    try:
        return _runs.start_run(_graph_name(instance, args, kwargs), FRAMEWORK, attach=attach)
    except Exception:
        _log.debug("llmmeter: could not start a langgraph run", exc_info=True)
        return None


class _Finishing:
    """``with _Finishing(handle):`` around a graph's own work: on the way out the run is detached (if it was
    attached) and ended, with the exception if there was one; a GeneratorExit is the app closing a stream
    early, not an error. The exception itself propagates unchanged."""

    __slots__ = ("_handle",)

    def __init__(self, handle: _runs.RunHandle) -> None:
        self._handle = handle

    def __enter__(self) -> None:
        pass

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        self._handle.detach()
        self._handle.finish(None if isinstance(exc, GeneratorExit) else exc)
        return False


class _Entered:
    """``with _Entered(graph):`` the graph's own invoke() calling its own stream() inside is not a second run."""

    __slots__ = ("_instance", "_marker")

    def __init__(self, instance: Any) -> None:
        self._instance = instance

    def __enter__(self) -> None:
        self._marker = _entered.set(id(self._instance))

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        _entered.reset(self._marker)
        return False


class _Current:
    """``with _Current(handle):`` a stream's run (its span, llmmeter's current run) is current for the block
    only, while the graph computes: never in the caller's code between chunks."""

    __slots__ = ("_handle", "_tokens")

    def __init__(self, handle: _runs.RunHandle) -> None:
        self._handle = handle

    def __enter__(self) -> None:
        run = self._handle.run
        self._tokens = otel_context.attach(trace.set_span_in_context(run.span)), _agents._current_run.set(run)

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        try:
            _agents._current_run.reset(self._tokens[1])
        except (ValueError, RuntimeError):
            pass
        otel_context.detach(self._tokens[0])
        return False


def _wrap_invoke(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    handle = _start(instance, args, kwargs, attach=True)
    if handle is None:
        return wrapped(*args, **kwargs)
    with _Finishing(handle), _Entered(instance):
        return wrapped(*args, **kwargs)


async def _wrap_ainvoke(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    handle = _start(instance, args, kwargs, attach=True)
    if handle is None:
        return await wrapped(*args, **kwargs)
    with _Finishing(handle), _Entered(instance):
        return await wrapped(*args, **kwargs)


def _stream_wrapper(generator: Callable[..., Any]) -> Callable[..., Any]:
    """``stream`` / ``astream``: the run starts at the call and ends with the (sync or async) generator."""

    def wrapper(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        handle = _start(instance, args, kwargs, attach=False)
        if handle is None:
            return wrapped(*args, **kwargs)
        return generator(handle, instance, wrapped, args, kwargs)

    return wrapper


def _stream(handle: _runs.RunHandle, instance: Any, wrapped: Any, args: Any, kwargs: Any) -> Any:
    with _Finishing(handle):
        with _Current(handle), _Entered(instance):
            iterator = iter(wrapped(*args, **kwargs))
        while True:
            with _Current(handle):
                item = next(iterator, _DONE)
            if item is _DONE:
                return
            yield item


async def _astream(handle: _runs.RunHandle, instance: Any, wrapped: Any, args: Any, kwargs: Any) -> Any:
    with _Finishing(handle):
        with _Current(handle), _Entered(instance):
            iterator = wrapped(*args, **kwargs).__aiter__()
        while True:
            with _Current(handle):
                item = await anext(iterator, _DONE)
            if item is _DONE:
                return
            yield item


_DONE = object()  # the end of a graph's stream (next()/anext() default): no StopIteration to catch
_wrap_stream = _stream_wrapper(_stream)
_wrap_astream = _stream_wrapper(_astream)


# --- LangChain callbacks: nodes and tools ------------------------------------------------------------


def _handler_class() -> type | None:
    try:
        from langchain_core.callbacks import BaseCallbackHandler
    except Exception:
        return None

    class LLMMeterCallbackHandler(BaseCallbackHandler):  # type: ignore[misc, valid-type]
        """Graph nodes -> ``step`` spans, tools -> ``execute_tool`` spans. LLM callbacks are ignored on purpose."""

        run_inline = True  # called in the node's own context (its run, its span), never from a thread pool
        raise_error = False

        def __init__(self) -> None:
            super().__init__()
            self._open: OrderedDict[Any, tuple[trace.Span, bool]] = OrderedDict()
            self._lock = threading.Lock()

        def _parent(self, parent_run_id: Any) -> trace.Span | None:
            with self._lock:
                found = self._open.get(parent_run_id)
            return found[0] if found else None

        def _remember(self, run_id: Any, span: trace.Span, is_tool: bool) -> None:
            with self._lock:
                self._open[run_id] = (span, is_tool)
                while len(self._open) > MAX_OPEN_SPANS:
                    self._open.popitem(last=False)

        def _close(self, run_id: Any, error: BaseException | None) -> None:
            with self._lock:
                found = self._open.pop(run_id, None)
            if found is None:
                return
            span = found[0]
            if error is not None:
                span.set_attribute(names.ERROR_TYPE, type(error).__qualname__)
                span.set_status(Status(StatusCode.ERROR, type(error).__name__))
            span.end()

        def on_chain_start(self, serialized: Any, inputs: Any, *, run_id: Any, parent_run_id: Any = None,
                           metadata: dict[str, Any] | None = None, **kwargs: Any) -> None:
            if not _state.enabled or not metadata:
                return
            try:
                node = metadata.get("langgraph_node")
                if not node or kwargs.get("name") != node or _agents.current_run() is None:
                    return
                attrs: dict[str, Any] = {names.AGENT_STEP: str(node)}
                step = metadata.get("langgraph_step")
                if isinstance(step, int):
                    attrs[names.AGENT_STEP_INDEX] = step
                span = _runs.start_child_span(f"step {node}", attrs, self._parent(parent_run_id))
                self._remember(run_id, span, False)
            except Exception:
                _log.debug("llmmeter: langgraph node start not handled", exc_info=True)

        def on_chain_end(self, outputs: Any, *, run_id: Any, **kwargs: Any) -> None:
            self._close(run_id, None)

        def on_chain_error(self, error: BaseException, *, run_id: Any, **kwargs: Any) -> None:
            self._close(run_id, error)

        def on_tool_start(self, serialized: Any, input_str: str, *, run_id: Any, parent_run_id: Any = None,
                          inputs: dict[str, Any] | None = None, **kwargs: Any) -> None:
            if not _state.enabled:
                return
            try:
                name = kwargs.get("name") or (serialized or {}).get("name") or "tool"
                attrs = {names.OPERATION: names.OP_EXECUTE_TOOL, names.TOOL_NAME: str(name),
                         names.TOOL_TYPE: "function"}
                span = _runs.start_child_span(f"{names.OP_EXECUTE_TOOL} {name}", attrs, self._parent(parent_run_id))
                self._remember(run_id, span, True)
                run = _agents.current_run()
                if run is not None:
                    run.record_tool_call(str(name), inputs if inputs is not None else input_str)
            except Exception:
                _log.debug("llmmeter: langchain tool start not handled", exc_info=True)

        def on_tool_end(self, output: Any, *, run_id: Any, **kwargs: Any) -> None:
            self._close(run_id, None)

        def on_tool_error(self, error: BaseException, *, run_id: Any, **kwargs: Any) -> None:
            self._close(run_id, error)

    return LLMMeterCallbackHandler


_handler: Any = None


def _wrap_manager_init(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    global _handler
    wrapped(*args, **kwargs)
    if not _state.enabled:
        return
    try:
        if _handler is None:  # made on first use: langchain_core is imported by then, never by llmmeter
            cls = _handler_class()
            if cls is None:
                return
            _handler = cls()
        if not any(h is _handler for h in instance.inheritable_handlers):
            instance.add_handler(_handler, inherit=True)
    except Exception:
        _log.debug("llmmeter: could not add the langchain callback handler", exc_info=True)


TARGETS = (
    ("langgraph.pregel", "Pregel.invoke", _wrap_invoke),
    ("langgraph.pregel", "Pregel.ainvoke", _wrap_ainvoke),
    ("langgraph.pregel", "Pregel.stream", _wrap_stream),
    ("langgraph.pregel", "Pregel.astream", _wrap_astream),
    ("langchain_core.callbacks.base", "BaseCallbackManager.__init__", _wrap_manager_init),
)


class LangGraphInstrumentor(_runs.FrameworkInstrumentor):
    """``LangGraphInstrumentor().instrument()``; entry point ``llmmeter_langgraph``.

    Pair it with the provider instrumentors (``llmmeter_openai``, ``llmmeter_anthropic``): they price the calls.
    """

    framework = FRAMEWORK
    targets = TARGETS
    dependencies = ("langgraph >= 0.2",)
    state = _state
