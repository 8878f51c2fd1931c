"""CrewAI: a crew kickoff is an agent run, each agent's task a nested run, each tool use an ``execute_tool`` span.

* ``Crew.kickoff`` / ``Crew.akickoff`` are wrapped: the call becomes ``invoke_agent {crew name}``, a
  :class:`llmmeter.Run` with that name's guard limits, current for the whole crew. ``kickoff_async`` runs
  ``kickoff`` in a thread with a copy of the caller's context, ``kickoff_for_each*`` call ``kickoff`` /
  ``akickoff`` on a copy of the crew per input, and a streaming kickoff runs the non-streaming one in a thread
  that copies the context too: each is one run, nested under whatever span the app had current.
* ``Agent.execute_task`` / ``Agent.aexecute_task`` are wrapped: one agent working one task is a nested run
  ``invoke_agent {agent role}`` (limits by role), under the crew's. CrewAI retries a failed task by calling
  ``execute_task`` again from inside the failing one (``max_retry_limit`` times): a retry stays in the same
  run, so the guard's counts carry over and a refused call stays refused. A standalone ``Agent.kickoff`` /
  ``kickoff_async`` (no crew) is a run of its own.
* Flows: ``Flow.kickoff_async`` (which ``kickoff`` and ``akickoff`` both run) is wrapped: a flow is one run
  ``invoke_agent {flow name}`` (its ``name``, else its class name; guard limits by that name cover everything the
  flow does, so a flow looping over crews is stopped as a whole). Each ``@start`` / ``@listen`` / ``@router``
  method, dispatched by CrewAI's ``Flow._execute_method``, is a ``step {method}`` span under it, and the crews and
  ``LLM.call`` s a step makes nest under that step. The user's flow class is never touched. CrewAI's internal
  flows (``AgentExecutor``, memory) are ``is_crewai_internal`` and skipped. ``Flow.resume_async`` (run by
  ``resume`` too) makes a flow resumed after a human-feedback pause a run of its own; the flow's state id, as
  ``gen_ai.agent.id``, links the two.
* Tools: the native function-calling path (``AgentExecutor._execute_single_native_tool_call``) and the ReAct
  text path (``ToolUsage.use`` / ``ause``) become ``execute_tool {name}`` spans, counted by the run and its
  repeated-identical-call guard (arguments parsed, so key order and spacing do not matter; hashed, never
  recorded). A cached tool result is still a call the model asked for, so it counts.

CrewAI 1.x calls models through its native providers on the real SDKs (``OpenAICompletion`` -> ``openai``,
``AnthropicCompletion`` -> ``anthropic``, ...); llmmeter's provider instrumentors price those calls, once, under
the agent's run (CrewAI's flows, threads and ``asyncio.to_thread`` hops all copy the context). Models CrewAI
routes to LiteLLM are priced by llmmeter's litellm instrumentor the same way. This module prices nothing.

The hard guard refuses the run's next model call with :class:`llmmeter.AgentLoopDetected`; CrewAI treats it
as a failed attempt, retries the task (each retry's first call is refused before it is sent) and then raises
it from ``kickoff``. In a hierarchical crew the manager delegates through CrewAI's delegation tools, so a
coworker's task is a run inside the manager's ``execute_tool`` span; CrewAI hands any error of that tool to the
manager as text, so a coworker's refusal is also kept on the manager's run and refuses its next call (below).
CrewAI's own telemetry keeps its own ``TracerProvider`` and never sets the global one.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import weakref
from collections.abc import Iterator
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from llmmeter import agents as _agents
from llmmeter import hooks, names
from llmmeter.errors import AgentLoopDetected
from llmmeter.frameworks import _runs

_log = logging.getLogger(__name__)

FRAMEWORK = names.FRAMEWORK_CREWAI

# id() of the agent whose execute_task is running in this context: its retry (execute_task called again from
# inside) stays in the same run.
_in_task: contextvars.ContextVar[int | None] = contextvars.ContextVar("llmmeter_crewai_task", default=None)
# The run of the agent task running in this context: a task started under it is work delegated by it.
_task_run_current: contextvars.ContextVar[_agents.Run | None] = contextvars.ContextVar(
    "llmmeter_crewai_task_run", default=None)
# id() of the agent whose standalone kickoff is running: kickoff -> kickoff_async inside an event loop is one run.
_in_kickoff: contextvars.ContextVar[int | None] = contextvars.ContextVar("llmmeter_crewai_kickoff", default=None)
# id() of the flow whose kickoff_async is running in this context: a reentrant kickoff stays in the same run.
_in_flow: contextvars.ContextVar[int | None] = contextvars.ContextVar("llmmeter_crewai_flow", default=None)


class _State:
    enabled = False


_state = _State()


def _text(value: Any, default: str) -> str:
    return value.strip() if isinstance(value, str) and value.strip() else default


def _identity(instance: Any) -> dict[str, Any]:
    ident = getattr(instance, "id", None)
    return {names.AGENT_ID: str(ident)} if ident is not None else {}


def _start(name: str, attributes: dict[str, Any]) -> _runs.RunHandle | None:
    try:
        return _runs.start_run(name, FRAMEWORK, attributes)
    except Exception:
        _log.debug("llmmeter: could not start a crewai run", exc_info=True)
        return None


def _end(handle: _runs.RunHandle, error: BaseException | None) -> None:
    handle.detach()
    handle.finish(error)


def _run_sync(handle: _runs.RunHandle | None, wrapped: Any, args: Any, kwargs: Any) -> Any:
    if handle is None:
        return wrapped(*args, **kwargs)
    try:
        result = wrapped(*args, **kwargs)
    except BaseException as exc:
        _end(handle, exc)
        raise
    _end(handle, None)
    return result


async def _run_async(handle: _runs.RunHandle | None, wrapped: Any, args: Any, kwargs: Any) -> Any:
    if handle is None:
        return await wrapped(*args, **kwargs)
    try:
        result = await wrapped(*args, **kwargs)
    except BaseException as exc:
        _end(handle, exc)
        raise
    _end(handle, None)
    return result


def _close_span(span: trace.Span, ctx: Any, token: Any, error: BaseException | None, failure: Any = None) -> None:
    """Ends a step or tool span made current by its wrapper; ``error`` / ``failure`` mark it failed."""
    try:
        if otel_context.get_current() is ctx:
            otel_context.detach(token)
        if error is not None:
            span.set_attribute(names.ERROR_TYPE, type(error).__qualname__)
            span.set_status(Status(StatusCode.ERROR, type(error).__name__))
        elif failure is not None:  # CrewAI caught the tool's error and handed it to the model as the result
            reason = getattr(getattr(failure, "reason", None), "value", None) or "tool_error"
            span.set_attribute(names.ERROR_TYPE, str(reason))
            span.set_status(Status(StatusCode.ERROR, str(reason)))
        span.end()
    except Exception:
        _log.debug("llmmeter: could not end a crewai span", exc_info=True)


@contextlib.contextmanager
def _marked(marker_var: contextvars.ContextVar[int | None], instance: Any) -> Iterator[None]:
    """Marks ``instance`` as running in this context while its run runs: the same object's wrapped method called
    again from inside (a retry, ``kickoff`` -> ``kickoff_async``, a reentrant flow kickoff) stays in that run."""
    marker = marker_var.set(id(instance))
    try:
        yield
    finally:
        marker_var.reset(marker)


# --- crews -----------------------------------------------------------------------------------------


def _crew_passthrough(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """Not a run of its own: llmmeter off, a streaming kickoff (its inner non-streaming kickoff is the run) or a
    kickoff resuming from a checkpoint (the restored crew's kickoff is the run)."""
    if not _state.enabled or getattr(instance, "stream", False) is True:
        return True
    return (kwargs.get("from_checkpoint") if "from_checkpoint" in kwargs else
            (args[2] if len(args) > 2 else None)) is not None


def _crew_run(instance: Any) -> _runs.RunHandle | None:
    return _start(_text(getattr(instance, "name", None), "crew"), _identity(instance))


def _wrap_crew_kickoff(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if _crew_passthrough(instance, args, kwargs):
        return wrapped(*args, **kwargs)
    return _run_sync(_crew_run(instance), wrapped, args, kwargs)


async def _wrap_crew_akickoff(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if _crew_passthrough(instance, args, kwargs):
        return await wrapped(*args, **kwargs)
    return await _run_async(_crew_run(instance), wrapped, args, kwargs)


# --- agents ----------------------------------------------------------------------------------------


def _task_run(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> _runs.RunHandle | None:
    attributes = _identity(instance)
    task = args[0] if args else kwargs.get("task")
    task_name = getattr(task, "name", None)
    if isinstance(task_name, str) and task_name:
        attributes[names.AGENT_STEP] = task_name
    return _start(_text(getattr(instance, "role", None), "agent"), attributes)


@contextlib.contextmanager
def _task_scope(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Iterator[_runs.RunHandle | None]:
    """One agent task's run (yielded, for the sync or async runner), current as ``_task_run_current`` so a task
    started inside it is known as delegated work; a hard stop of this task is kept on the task that delegated it."""
    delegator = _task_run_current.get()  # set: this task runs inside another agent's task (delegated work)
    handle = _task_run(instance, args, kwargs)
    marker = _in_task.set(id(instance))
    run_marker = _task_run_current.set(handle.run if handle is not None else delegator)
    try:
        yield handle
    except AgentLoopDetected as refusal:
        if delegator is not None:
            _delegation_stopped(delegator, refusal)
        raise
    finally:
        _task_run_current.reset(run_marker)
        _in_task.reset(marker)


def _wrap_execute_task(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if not _state.enabled or _in_task.get() == id(instance):
        return wrapped(*args, **kwargs)
    with _task_scope(instance, args, kwargs) as handle:
        return _run_sync(handle, wrapped, args, kwargs)


async def _wrap_aexecute_task(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if not _state.enabled or _in_task.get() == id(instance):
        return await wrapped(*args, **kwargs)
    with _task_scope(instance, args, kwargs) as handle:
        return await _run_async(handle, wrapped, args, kwargs)


# --- a hard stop inside a delegated task stops the delegating agent --------------------------------
#
# An agent's task that starts inside another agent's task is delegated work: a hierarchical crew's manager (or
# any agent with ``allow_delegation``) runs it through CrewAI's "Delegate work" / "Ask question" tools (a tool
# that kicks off a crew of its own is treated the same way). CrewAI turns every error of that tool, the loop
# guard's refusal included, into text for the delegating model (``BaseAgentTool._execute`` and the executor's
# tool-error handling), so the manager would delegate again to a fresh coworker run and the guard would stop
# nothing. Instead the refusal is kept on the delegating run: its next model call (and the first call of each
# of CrewAI's retries) is refused with the same reason, so the crew ends with ``AgentLoopDetected`` as a
# sequential crew does.

_delegation_stops: weakref.WeakKeyDictionary[_agents.Run, AgentLoopDetected] = weakref.WeakKeyDictionary()


def _delegation_stopped(delegator: _agents.Run, refusal: AgentLoopDetected) -> None:
    try:
        if delegator not in _delegation_stops:
            _delegation_stops[delegator] = refusal
            # registered on the first delegated stop, not at instrument(): an app whose crews never hit one
            # adds no hook to every model call
            hooks.register_before_call(_refuse_after_delegated_stop)
    except Exception:
        _log.debug("llmmeter: could not keep a delegated crewai refusal", exc_info=True)


def _refuse_after_delegated_stop(request: Any, span: Any) -> None:
    """Before-call hook: refuse a model call of a run whose delegated work a hard guard stopped."""
    if not _delegation_stops:
        return
    run = _agents.current_run()
    chain = list(run.chain()) if run is not None else []
    for stopped in chain:
        refusal = _delegation_stops.get(stopped)
        if refusal is None:
            continue
        error = AgentLoopDetected(refusal.agent, refusal.reason, refusal.limit, refusal.value, refusal.detail)
        for r in chain:  # this run and the runs up to the delegating one are stopped by it
            if r.stopped_by is None:
                r.stopped_by, r.stopped_error = refusal.reason, error
            if r is stopped:
                break
        raise hooks.refuse(span, error)


def _delegated_refusal(before: AgentLoopDetected | None) -> AgentLoopDetected | None:
    """The refusal a delegated task raised during the tool call that just returned, if any."""
    run = _agents.current_run()
    after = _delegation_stops.get(run) if run is not None else None
    return after if after is not None and after is not before else None


def _stop_before() -> AgentLoopDetected | None:
    run = _agents.current_run()
    return _delegation_stops.get(run) if run is not None and _delegation_stops else None


def _inside_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _agent_run(instance: Any) -> _runs.RunHandle | None:
    return _start(_text(getattr(instance, "role", None), "agent"), _identity(instance))


def _wrap_agent_kickoff(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    # Inside an event loop CrewAI's Agent.kickoff returns kickoff_async's coroutine: that one is the run.
    if not _state.enabled or _in_kickoff.get() == id(instance) or _inside_event_loop():
        return wrapped(*args, **kwargs)
    with _marked(_in_kickoff, instance):
        return _run_sync(_agent_run(instance), wrapped, args, kwargs)


async def _wrap_agent_kickoff_async(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if not _state.enabled or _in_kickoff.get() == id(instance):
        return await wrapped(*args, **kwargs)
    with _marked(_in_kickoff, instance):
        return await _run_async(_agent_run(instance), wrapped, args, kwargs)


# --- flows -----------------------------------------------------------------------------------------


def _flow_internal(instance: Any) -> bool:
    """CrewAI runs its own machinery as flows too (``AgentExecutor``, memory's encoding and recall flows), marked
    ``is_crewai_internal``: those are not the app's flows, and their methods are not the app's steps."""
    return getattr(type(instance), "is_crewai_internal", False) is True


def _flow_passthrough(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """Not a run of its own: llmmeter off, an internal flow, a streaming kickoff (the non-streaming kickoff it
    runs is the run), a kickoff resuming from a checkpoint (the restored flow's kickoff is the run) or a
    reentrant kickoff of a flow already running in this context (the outer one is the run)."""
    if not _state.enabled or _flow_internal(instance) or getattr(instance, "stream", False) is True:
        return True
    if _in_flow.get() == id(instance):
        return True
    checkpoint = kwargs.get("from_checkpoint") if "from_checkpoint" in kwargs else (args[2] if len(args) > 2 else None)
    return getattr(checkpoint, "restore_from", None) is not None


def _flow_run(instance: Any) -> _runs.RunHandle | None:
    attributes: dict[str, Any] = {}
    try:
        flow_id = instance.flow_id  # the flow state's id (a property that reads the state)
        if flow_id:
            attributes[names.AGENT_ID] = str(flow_id)
    except Exception:
        pass
    return _start(_text(getattr(instance, "name", None), type(instance).__name__), attributes)


async def _wrap_flow_kickoff_async(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    # Flow.kickoff runs this coroutine (asyncio.run, or a thread with a copy of the context inside a running
    # loop) and Flow.akickoff awaits it: wrapping it alone makes every entry point one run.
    if _flow_passthrough(instance, args, kwargs):
        return await wrapped(*args, **kwargs)
    with _marked(_in_flow, instance):
        return await _run_async(_flow_run(instance), wrapped, args, kwargs)


async def _wrap_flow_resume_async(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    # A flow paused for human feedback ended its kickoff (which returned HumanFeedbackPending); resuming it, often
    # in another process, is a run of its own under the same name (Flow.resume runs this coroutine too).
    if not _state.enabled or _flow_internal(instance) or _in_flow.get() == id(instance):
        return await wrapped(*args, **kwargs)
    with _marked(_in_flow, instance):
        return await _run_async(_flow_run(instance), wrapped, args, kwargs)


def _step_failed(error: BaseException) -> bool:
    # A @human_feedback step raising HumanFeedbackPending pauses the flow; CrewAI does not count it as failed.
    return type(error).__name__ != "HumanFeedbackPending"


async def _wrap_flow_execute_method(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``Flow._execute_method`` is CrewAI's one dispatcher of ``@start`` / ``@listen`` / ``@router`` methods: each
    call is a ``step {method}`` span, current while the method runs (a sync method runs in a thread with a copy
    of this context), so the crews and model calls a step makes nest under it. Not a run: totals stay on the
    flow's run."""
    if not _state.enabled or _flow_internal(instance):
        return await wrapped(*args, **kwargs)
    try:
        step = str(args[0] if args else kwargs.get("method_name"))
        span = _runs.start_child_span(f"step {step}", {names.AGENT_STEP: step})
        ctx = trace.set_span_in_context(span)
        token = otel_context.attach(ctx)
    except Exception:
        _log.debug("llmmeter: crewai flow step not instrumented", exc_info=True)
        return await wrapped(*args, **kwargs)
    error: BaseException | None = None
    try:
        return await wrapped(*args, **kwargs)
    except BaseException as exc:
        error = exc
        raise
    finally:
        _close_span(span, ctx, token, error if error is not None and _step_failed(error) else None)


# --- tools -----------------------------------------------------------------------------------------


def _field(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)


def _arguments(raw: Any) -> Any:
    """Tool arguments as the model sent them, parsed when JSON, so equal calls compare equal."""
    if isinstance(raw, (str, bytes)):
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return raw


def _native_call(tool_call: Any) -> tuple[str, Any, str | None]:
    """(name, arguments, call id) of a provider's tool call, object or dict: OpenAI's ``function`` shape,
    Anthropic's and Bedrock's ``name`` / ``input``, Gemini's ``function_call`` with ``name`` / ``args``."""
    function = _field(tool_call, "function")
    if function is None:
        function = _field(tool_call, "function_call")
    source = function if function is not None else tool_call
    name = _field(source, "name")
    raw = _field(source, "arguments")
    for key in ("input", "args"):
        if raw is None:
            raw = _field(source, key)
    call_id = _field(tool_call, "id") or _field(tool_call, "toolUseId") or _field(source, "id")
    return _text(name, "tool"), _arguments(raw), call_id if isinstance(call_id, str) and call_id else None


def _open_tool(name: str, arguments: Any, call_id: str | None) -> tuple[trace.Span, Any, Any]:
    attrs: dict[str, Any] = {names.OPERATION: names.OP_EXECUTE_TOOL, names.TOOL_NAME: name,
                             names.TOOL_TYPE: "function"}
    if call_id:
        attrs[names.TOOL_CALL_ID] = call_id
    span = _runs.start_child_span(f"{names.OP_EXECUTE_TOOL} {name}", attrs)
    run = _agents.current_run()
    if run is not None:
        run.record_tool_call(name, arguments)
    ctx = trace.set_span_in_context(span)
    return span, ctx, otel_context.attach(ctx)


class _ToolOutcome:
    """What :func:`_tool_scope` closes the span with when the tool returned: ``failure`` is set by the native
    path when CrewAI caught the tool's error and handed it to the model as the result."""

    failure: Any = None


@contextlib.contextmanager
def _tool_scope(opened: tuple[trace.Span, Any, Any]) -> Iterator[_ToolOutcome]:
    """The tool's ``execute_tool`` span (opened by :func:`_open_tool`) ended when the tool returns or raises; a
    hard stop of work the tool delegated (a coworker's task) marks the span as failed with that refusal."""
    before = _stop_before()
    outcome = _ToolOutcome()
    try:
        yield outcome
    except BaseException as exc:
        _close_span(*opened, exc)
        raise
    _close_span(*opened, _delegated_refusal(before), outcome.failure)


def _wrap_native_tool_call(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if not _state.enabled:
        return wrapped(*args, **kwargs)
    try:
        opened = _open_tool(*_native_call(args[0] if args else kwargs.get("tool_call")))
    except Exception:
        _log.debug("llmmeter: crewai tool call not instrumented", exc_info=True)
        return wrapped(*args, **kwargs)
    with _tool_scope(opened) as outcome:
        result = wrapped(*args, **kwargs)
        outcome.failure = result.get("tool_failure") if isinstance(result, dict) else None
    return result


def _react_call(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, Any, None] | None:
    calling = args[0] if args else kwargs.get("calling")
    name = getattr(calling, "tool_name", None)
    if not isinstance(name, str) or not name:
        return None  # a ToolUsageError: the model's text named no usable tool, nothing runs
    return name, _arguments(getattr(calling, "arguments", None)), None


def _open_react(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[trace.Span, Any, Any] | None:
    """The span of a ReAct tool use, or None when the model named no usable tool (or opening it failed)."""
    if not _state.enabled:
        return None
    try:
        call = _react_call(args, kwargs)
        return _open_tool(*call) if call is not None else None
    except Exception:
        _log.debug("llmmeter: crewai tool use not instrumented", exc_info=True)
        return None


def _wrap_tool_use(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    opened = _open_react(args, kwargs)
    if opened is None:
        return wrapped(*args, **kwargs)
    with _tool_scope(opened):
        return wrapped(*args, **kwargs)


async def _wrap_tool_ause(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    opened = _open_react(args, kwargs)
    if opened is None:
        return await wrapped(*args, **kwargs)
    with _tool_scope(opened):
        return await wrapped(*args, **kwargs)


# Checked against crewai 1.15.30's source. A release without one of these loses that piece, logged once.
TARGETS = (
    ("crewai.crew", "Crew.kickoff", _wrap_crew_kickoff),
    ("crewai.crew", "Crew.akickoff", _wrap_crew_akickoff),
    ("crewai.agent.core", "Agent.execute_task", _wrap_execute_task),
    ("crewai.agent.core", "Agent.aexecute_task", _wrap_aexecute_task),
    ("crewai.agent.core", "Agent.kickoff", _wrap_agent_kickoff),
    ("crewai.agent.core", "Agent.kickoff_async", _wrap_agent_kickoff_async),
    ("crewai.agents.agent_executor", "AgentExecutor._execute_single_native_tool_call", _wrap_native_tool_call),
    ("crewai.tools.tool_usage", "ToolUsage.use", _wrap_tool_use),
    ("crewai.tools.tool_usage", "ToolUsage.ause", _wrap_tool_ause),
    ("crewai.flow.runtime", "Flow.kickoff_async", _wrap_flow_kickoff_async),
    ("crewai.flow.runtime", "Flow.resume_async", _wrap_flow_resume_async),
    ("crewai.flow.runtime", "Flow._execute_method", _wrap_flow_execute_method),
)


class CrewAIInstrumentor(_runs.FrameworkInstrumentor):
    """``CrewAIInstrumentor().instrument()``; entry point ``llmmeter_crewai``."""

    framework = FRAMEWORK
    targets = TARGETS
    dependencies = ("crewai >= 1.0",)
    state = _state

    def _uninstrument(self, **kwargs: Any) -> None:
        # the delegated-stop hook is registered lazily (after the first such refusal): remove it with the wrappers
        if _refuse_after_delegated_stop in hooks.BEFORE_CALL:
            hooks.BEFORE_CALL.remove(_refuse_after_delegated_stop)
        _delegation_stops.clear()
        super()._uninstrument(**kwargs)
