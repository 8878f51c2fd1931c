"""OpenAI Agents SDK (``openai-agents``): each ``Runner.run`` / ``run_sync`` / ``run_streamed`` is an agent run.

Two hooks, each doing what it is reliable for:

* ``AgentRunner.run`` / ``run_sync`` / ``run_streamed`` are wrapped (``Runner``'s classmethods call
  them). The wrapper opens the run (``invoke_agent {starting agent}``, a :class:`llmmeter.Run` with the
  agent's guard limits) in the caller's context, so the run loop, and every task it spawns, inherits it:
  the model calls, made through the real openai SDK, nest under it and are priced by llmmeter's openai
  instrumentor (exactly once; this module never prices anything) and counted in the run's totals. A
  streamed run's span ends when its background task does, with the error the stream raised.
* The SDK's own tracing API (``agents.add_trace_processor``) reports the steps inside a run: function
  tools become ``execute_tool {name}`` spans (counted by the run and by the repeated-call guard), an
  agent taking over after a handoff becomes a nested ``invoke_agent {name}`` run, handoffs and guardrails
  become ``handoff`` / ``guardrail {name}`` spans. The SDK's model spans are ignored (the provider
  instrumentor already has them).

The loop guard in hard mode refuses the run's next model call with :class:`llmmeter.AgentLoopDetected`,
which the SDK surfaces as the run's error (``Runner.run`` raises it; a streamed run's ``stream_events()``
raises it after the events already produced). Tool arguments feed the repeated-call check only when the
SDK hands them to tracing (``RunConfig.trace_include_sensitive_data``, on by default); they are hashed,
never recorded. Nothing is sent to OpenAI's trace backend by llmmeter.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections import OrderedDict
from typing import Any

import wrapt
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from llmmeter import agents as _agents
from llmmeter import names
from llmmeter.frameworks import _runs

_log = logging.getLogger(__name__)

FRAMEWORK = names.FRAMEWORK_OPENAI_AGENTS
MAX_OPEN_SPANS = 10_000  # SDK spans started and not yet ended; beyond this the oldest are forgotten

# Set by the run_sync wrapper for the run() call it makes on the same runner: that call is not a new run.
_inside_run_sync: contextvars.ContextVar[bool] = contextvars.ContextVar("llmmeter_oai_agents_sync", default=False)


def _starting_agent(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return args[0] if args else kwargs.get("starting_agent")


def _start(args: tuple[Any, ...], kwargs: dict[str, Any]) -> _runs.RunHandle | None:
    try:
        agent = _starting_agent(args, kwargs)
        name = getattr(agent, "name", None) or "agent"
        attributes: dict[str, Any] = {}
        model = getattr(agent, "model", None)
        if isinstance(model, str) and model:
            attributes[names.REQUEST_MODEL] = model
        conversation = kwargs.get("conversation_id")
        if isinstance(conversation, str) and conversation:
            attributes[names.CONVERSATION_ID] = conversation
        handle = _runs.start_run(str(name), FRAMEWORK, attributes)
        _roots[id(handle.run)] = handle.run  # the first agent span of this run is the run itself
        return handle
    except Exception:
        _log.debug("llmmeter: could not start an openai-agents run", exc_info=True)
        return None


def _end(handle: _runs.RunHandle, error: BaseException | None) -> None:
    _roots.pop(id(handle.run), None)
    with _state.lock:
        _state.absorbed.discard(id(handle.run))
    handle.finish(error)


async def _wrap_run(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if not _state.enabled:
        return await wrapped(*args, **kwargs)
    if _inside_run_sync.get():
        _inside_run_sync.set(False)  # this task's copy only: runs nested inside it are new runs
        return await wrapped(*args, **kwargs)
    handle = _start(args, kwargs)
    if handle is None:
        return await wrapped(*args, **kwargs)
    try:
        result = await wrapped(*args, **kwargs)
    except BaseException as exc:
        handle.detach()
        _end(handle, exc)
        raise
    handle.detach()
    _end(handle, None)
    return result


def _wrap_run_sync(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if not _state.enabled:
        return wrapped(*args, **kwargs)
    handle = _start(args, kwargs)
    if handle is None:
        return wrapped(*args, **kwargs)
    marker = _inside_run_sync.set(True)
    try:
        result = wrapped(*args, **kwargs)
    except BaseException as exc:
        _inside_run_sync.reset(marker)
        handle.detach()
        _end(handle, exc)
        raise
    _inside_run_sync.reset(marker)
    handle.detach()
    _end(handle, None)
    return result


def _wrap_run_streamed(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if not _state.enabled:
        return wrapped(*args, **kwargs)
    handle = _start(args, kwargs)
    if handle is None:
        return wrapped(*args, **kwargs)
    try:
        result = wrapped(*args, **kwargs)  # creates the run-loop task, which copies this context (our run)
    except BaseException as exc:
        handle.detach()
        _end(handle, exc)
        raise
    handle.detach()
    try:
        task = getattr(result, "run_loop_task", None) or getattr(result, "_run_impl_task", None)
        if task is None or not hasattr(task, "add_done_callback"):
            _runs.log_missing_once("RunResultStreaming.run_loop_task", FRAMEWORK)
            _end(handle, None)
        else:
            task.add_done_callback(lambda t: _end(handle, _stream_error(t, result)))
    except Exception:
        _log.debug("llmmeter: could not follow a streamed openai-agents run", exc_info=True)
        _end(handle, None)
    return result


def _stream_error(task: Any, result: Any) -> BaseException | None:
    try:
        if task.cancelled():
            return None
        error = task.exception()
        if error is None:
            error = getattr(result, "_stored_exception", None)
        return error if isinstance(error, BaseException) else None
    except Exception:
        return None


# --- the SDK's tracing processor ---------------------------------------------------------------------

_roots: dict[int, _agents.Run] = {}  # id(run) -> run, for runs started by the wrappers and still open


class _Open:
    """What an SDK span opened on our side, to close in on_span_end."""

    __slots__ = ("handle", "otel_ctx", "otel_token", "run", "span")

    def __init__(self, span: Any = None, run: _agents.Run | None = None, handle: _runs.RunHandle | None = None,
                 otel_token: Any = None, otel_ctx: Any = None) -> None:
        self.span, self.run, self.handle = span, run, handle
        self.otel_token, self.otel_ctx = otel_token, otel_ctx


class _State:
    def __init__(self) -> None:
        self.enabled = False
        self.registered = False
        self.open: OrderedDict[str, _Open] = OrderedDict()
        self.absorbed: set[int] = set()  # id(run) of root runs whose first agent span was the run itself
        self.lock = threading.Lock()


_state = _State()


class LLMMeterTracingProcessor:
    """An ``agents.tracing.TracingProcessor`` turning SDK step spans into llmmeter spans. Never raises."""

    def on_trace_start(self, trace_: Any) -> None:
        pass

    def on_trace_end(self, trace_: Any) -> None:
        pass

    def shutdown(self) -> None:
        pass

    def force_flush(self) -> None:
        pass

    def on_span_start(self, span: Any) -> None:
        if not _state.enabled:
            return
        try:
            opened = self._open(span)
        except Exception:
            _log.debug("llmmeter: openai-agents span start not handled", exc_info=True)
            return
        if opened is None:
            return
        with _state.lock:
            _state.open[str(getattr(span, "span_id", id(span)))] = opened
            while len(_state.open) > MAX_OPEN_SPANS:
                _state.open.popitem(last=False)

    def on_span_end(self, span: Any) -> None:
        with _state.lock:
            opened = _state.open.pop(str(getattr(span, "span_id", id(span))), None)
        if opened is None:
            return
        try:
            self._close(span, opened)
        except Exception:
            _log.debug("llmmeter: openai-agents span end not handled", exc_info=True)

    # -- per span type -----------------------------------------------------------------------------

    def _open(self, span: Any) -> _Open | None:
        data = getattr(span, "span_data", None)
        kind = getattr(data, "type", None)
        if kind == "agent":
            return self._open_agent(data)
        if kind == "function":
            name = str(getattr(data, "name", None) or "tool")
            attrs = {names.OPERATION: names.OP_EXECUTE_TOOL, names.TOOL_NAME: name, names.TOOL_TYPE: "function"}
            if getattr(data, "mcp_data", None):
                attrs[names.TOOL_TYPE] = "extension"
            tool_span = _runs.start_child_span(f"{names.OP_EXECUTE_TOOL} {name}", attrs)
            ctx = trace.set_span_in_context(tool_span)
            token = otel_context.attach(ctx)  # an agent used as a tool: its model calls nest under the tool
            return _Open(span=tool_span, run=_agents.current_run(), otel_token=token, otel_ctx=ctx)
        if kind == "handoff":
            source = getattr(data, "from_agent", None)
            attrs = {names.HANDOFF_FROM: source} if source else {}
            return _Open(span=_runs.start_child_span("handoff", attrs))
        if kind == "guardrail":
            name = str(getattr(data, "name", None) or "guardrail")
            return _Open(span=_runs.start_child_span(f"guardrail {name}", {names.GUARDRAIL_NAME: name}))
        return None  # generation / response spans: the provider instrumentor has the model call

    def _open_agent(self, data: Any) -> _Open | None:
        name = str(getattr(data, "name", None) or "agent")
        current = _agents.current_run()
        if current is not None and id(current) in _roots and current.name == name:
            with _state.lock:
                first = id(current) not in _state.absorbed
                _state.absorbed.add(id(current))
            if first:
                return _Open(run=current)  # the run's own span already stands for its first agent
        handle = _runs.start_run(name, FRAMEWORK)
        return _Open(handle=handle)

    def _close(self, span: Any, opened: _Open) -> None:
        data = getattr(span, "span_data", None)
        kind = getattr(data, "type", None)
        error = getattr(span, "error", None)
        if opened.handle is not None:  # a nested agent (after a handoff)
            opened.handle.detach()
            opened.handle.finish(_SpanError(error) if error else None)
            return
        if opened.span is None:  # the absorbed first agent span: the run's own span ends with the run
            return
        otel_span = opened.span
        if opened.otel_token is not None and otel_context.get_current() is opened.otel_ctx:
            otel_context.detach(opened.otel_token)
        if kind == "function" and opened.run is not None:
            arguments = getattr(data, "input", None)
            if arguments is None:  # not given to tracing: count the call, never call it a repeat
                arguments = {"llmmeter.unseen": id(span)}
            opened.run.record_tool_call(str(getattr(data, "name", None) or "tool"), arguments)
        elif kind == "handoff":
            target = getattr(data, "to_agent", None)
            if target:
                otel_span.set_attribute(names.HANDOFF_TO, str(target))
                otel_span.update_name(f"handoff {target}")
        elif kind == "guardrail":
            otel_span.set_attribute(names.GUARDRAIL_TRIGGERED, bool(getattr(data, "triggered", False)))
        if error:
            otel_span.set_attribute(names.ERROR_TYPE, _error_type(error))
            otel_span.set_status(Status(StatusCode.ERROR, _error_type(error)))
        otel_span.end()


class _SpanError(Exception):
    """An SDK span's error dict, as an exception for the run's status (its message, never its data)."""

    def __init__(self, error: Any) -> None:
        super().__init__(_error_type(error))


def _error_type(error: Any) -> str:
    message = error.get("message") if isinstance(error, dict) else None
    return str(message)[:120] if message else "error"


# --- the instrumentor --------------------------------------------------------------------------------


def _register_processor(module: Any) -> None:
    """Add llmmeter's processor to the SDK's tracing, once per process (the SDK cannot remove one)."""
    if _state.registered:
        return
    try:
        module.add_trace_processor(LLMMeterTracingProcessor())
        _state.registered = True
    except Exception:
        _runs.log_missing_once("agents.add_trace_processor", FRAMEWORK)

TARGETS = (
    ("agents.run", "AgentRunner.run", _wrap_run),
    ("agents.run", "AgentRunner.run_sync", _wrap_run_sync),
    ("agents.run", "AgentRunner.run_streamed", _wrap_run_streamed),
)


class OpenAIAgentsInstrumentor(_runs.FrameworkInstrumentor):
    """``OpenAIAgentsInstrumentor().instrument()``; entry point ``llmmeter_openai_agents``.

    Pair it with the openai instrumentor (``llmmeter_openai``): that one prices the model calls. On
    ``uninstrument()`` its trace processor stays registered (the SDK has no API to remove one processor)
    and does nothing while disabled.
    """

    framework = FRAMEWORK
    targets = TARGETS
    dependencies = ("openai-agents >= 0.24",)
    state = _state

    def _on_instrument(self) -> None:
        # On import of the SDK (now if the app already imported it): importing it here would cost the app time.
        wrapt.register_post_import_hook(_register_processor, "agents")
