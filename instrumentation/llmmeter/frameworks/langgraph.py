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
from collections.abc import Collection
from typing import Any, ClassVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.trace import Status, StatusCode

from llmmeter import agents as _agents
from llmmeter import config, names
from llmmeter.frameworks import _runs, guards

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
    try:
        return _runs.start_run(_graph_name(instance, args, kwargs), FRAMEWORK, attach=attach)
    except Exception:
        _log.debug("llmmeter: could not start a langgraph run", exc_info=True)
        return None


def _passthrough(instance: Any) -> bool:
    return not _state.enabled or _entered.get() == id(instance)


def _wrap_invoke(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if _passthrough(instance):
        return wrapped(*args, **kwargs)
    handle = _start(instance, args, kwargs, attach=True)
    if handle is None:
        return wrapped(*args, **kwargs)
    marker = _entered.set(id(instance))
    try:
        result = wrapped(*args, **kwargs)
    except BaseException as exc:
        _entered.reset(marker)
        handle.detach()
        handle.finish(exc)
        raise
    _entered.reset(marker)
    handle.detach()
    handle.finish(None)
    return result


async def _wrap_ainvoke(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if _passthrough(instance):
        return await wrapped(*args, **kwargs)
    handle = _start(instance, args, kwargs, attach=True)
    if handle is None:
        return await wrapped(*args, **kwargs)
    marker = _entered.set(id(instance))
    try:
        result = await wrapped(*args, **kwargs)
    except BaseException as exc:
        _entered.reset(marker)
        handle.detach()
        handle.finish(exc)
        raise
    _entered.reset(marker)
    handle.detach()
    handle.finish(None)
    return result


def _activate(handle: _runs.RunHandle) -> tuple[Any, Any]:
    return otel_context.attach(trace.set_span_in_context(handle.run.span)), _agents._current_run.set(handle.run)


def _deactivate(tokens: tuple[Any, Any]) -> None:
    try:
        _agents._current_run.reset(tokens[1])
    except (ValueError, RuntimeError):
        pass
    otel_context.detach(tokens[0])


def _wrap_stream(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if _passthrough(instance):
        return wrapped(*args, **kwargs)
    handle = _start(instance, args, kwargs, attach=False)
    if handle is None:
        return wrapped(*args, **kwargs)
    return _stream(handle, instance, wrapped, args, kwargs)


def _stream(handle: _runs.RunHandle, instance: Any, wrapped: Any, args: Any, kwargs: Any) -> Any:
    error: BaseException | None = None
    try:
        tokens = _activate(handle)
        marker = _entered.set(id(instance))
        try:
            iterator = iter(wrapped(*args, **kwargs))
        finally:
            _entered.reset(marker)
            _deactivate(tokens)
        while True:
            tokens = _activate(handle)
            try:
                item = next(iterator)
            except StopIteration:
                return
            finally:
                _deactivate(tokens)
            yield item
    except BaseException as exc:
        if not isinstance(exc, GeneratorExit):
            error = exc
        raise
    finally:
        handle.finish(error)


def _wrap_astream(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if _passthrough(instance):
        return wrapped(*args, **kwargs)
    handle = _start(instance, args, kwargs, attach=False)
    if handle is None:
        return wrapped(*args, **kwargs)
    return _astream(handle, instance, wrapped, args, kwargs)


async def _astream(handle: _runs.RunHandle, instance: Any, wrapped: Any, args: Any, kwargs: Any) -> Any:
    error: BaseException | None = None
    try:
        tokens = _activate(handle)
        marker = _entered.set(id(instance))
        try:
            iterator = wrapped(*args, **kwargs).__aiter__()
        finally:
            _entered.reset(marker)
            _deactivate(tokens)
        while True:
            tokens = _activate(handle)
            try:
                item = await iterator.__anext__()
            except StopAsyncIteration:
                return
            finally:
                _deactivate(tokens)
            yield item
    except BaseException as exc:
        if not isinstance(exc, GeneratorExit):
            error = exc
        raise
    finally:
        handle.finish(error)


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


class LangGraphInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """``LangGraphInstrumentor().instrument()``; entry point ``llmmeter_langgraph``.

    Pair it with the provider instrumentors (``llmmeter_openai``, ``llmmeter_anthropic``): they price the calls.
    """

    _wrapped: ClassVar[list[tuple[Any, str]]] = []

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("langgraph >= 0.2",)

    def _instrument(self, **kwargs: Any) -> None:
        config.settings()
        guards.load()
        LangGraphInstrumentor._wrapped = _runs.wrap_targets(FRAMEWORK, TARGETS)
        _state.enabled = True

    def _uninstrument(self, **kwargs: Any) -> None:
        _state.enabled = False
        _runs.unwrap_all(LangGraphInstrumentor._wrapped)
