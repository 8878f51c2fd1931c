"""pydantic-ai: each agent run (``run`` / ``run_sync`` / ``run_stream`` / ``iter``) is an llmmeter agent run.

* ``Agent.iter`` is wrapped: every other entry point drives a run through it, so one run is one
  ``invoke_agent {agent name}`` span (a :class:`llmmeter.Run`, limits by agent name), current for the whole
  run: the model calls made through the provider SDKs (``OpenAIChatModel`` -> openai,
  ``AnthropicModel`` -> anthropic, ...) nest under it and are priced there, once.
* ``ToolManager.execute_tool_call`` is wrapped: each function-tool call is an ``execute_tool {name}`` span
  (with the tool call id), counted by the run and its repeated-call guard with the validated arguments.

pydantic-ai's own optional instrumentation (``instrument=True`` / logfire) is independent: its spans do not
carry llmmeter's totals, and its model-request spans use ``gen_ai.*`` usage attributes that a provider
instrumentor already reported; use one or the other for pricing. The hard guard's
:class:`llmmeter.AgentLoopDetected` propagates out of ``run`` / ``run_sync`` / the stream like any model error.
"""

from __future__ import annotations

import logging
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from llmmeter import agents as _agents
from llmmeter import names
from llmmeter.frameworks import _runs

_log = logging.getLogger(__name__)

FRAMEWORK = names.FRAMEWORK_PYDANTIC_AI


class _State:
    enabled = False


_state = _State()


class _RunContextManager:
    """Wraps the async context manager ``Agent.iter`` returns: the run opens on enter, ends on exit."""

    def __init__(self, inner: Any, name: str) -> None:
        self._inner = inner
        self._name = name
        self._handle: _runs.RunHandle | None = None

    async def __aenter__(self) -> Any:
        try:
            self._handle = _runs.start_run(self._name, FRAMEWORK)
        except Exception:
            _log.debug("llmmeter: could not start a pydantic-ai run", exc_info=True)
        try:
            return await self._inner.__aenter__()
        except BaseException as exc:
            self._end(exc)
            raise

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> Any:
        try:
            suppressed = await self._inner.__aexit__(exc_type, exc, tb)
        except BaseException as raised:
            self._end(raised)
            raise
        self._end(None if suppressed else exc)
        return suppressed

    def _end(self, error: BaseException | None) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            handle.detach()
            handle.finish(error)

    def __getattr__(self, item: str) -> Any:
        return getattr(self._inner, item)


def _wrap_iter(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    inner = wrapped(*args, **kwargs)
    if not _state.enabled or not hasattr(inner, "__aenter__"):
        return inner
    name = getattr(instance, "name", None)
    return _RunContextManager(inner, name if isinstance(name, str) and name else "agent")


async def _wrap_execute_tool_call(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if not _state.enabled:
        return await wrapped(*args, **kwargs)
    try:
        validated = args[0] if args else kwargs.get("validated")
        call = getattr(validated, "call", None)
        name = str(getattr(call, "tool_name", None) or "tool")
        attrs: dict[str, Any] = {names.OPERATION: names.OP_EXECUTE_TOOL, names.TOOL_NAME: name,
                                 names.TOOL_TYPE: "function"}
        call_id = getattr(call, "tool_call_id", None)
        if isinstance(call_id, str) and call_id:
            attrs[names.TOOL_CALL_ID] = call_id
        span = _runs.start_child_span(f"{names.OP_EXECUTE_TOOL} {name}", attrs)
        run = _agents.current_run()
        if run is not None:
            arguments = getattr(validated, "validated_args", None)
            run.record_tool_call(name, arguments if arguments is not None else getattr(call, "args", None))
        ctx = trace.set_span_in_context(span)
        token = otel_context.attach(ctx)
    except Exception:
        _log.debug("llmmeter: pydantic-ai tool call not instrumented", exc_info=True)
        return await wrapped(*args, **kwargs)
    try:
        result = await wrapped(*args, **kwargs)
    except BaseException as exc:
        if otel_context.get_current() is ctx:
            otel_context.detach(token)
        span.set_attribute(names.ERROR_TYPE, type(exc).__qualname__)
        span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
        span.end()
        raise
    if otel_context.get_current() is ctx:
        otel_context.detach(token)
    span.end()
    return result


TARGETS = (
    ("pydantic_ai.agent", "Agent.iter", _wrap_iter),
    ("pydantic_ai.tool_manager", "ToolManager.execute_tool_call", _wrap_execute_tool_call),
)


class PydanticAIInstrumentor(_runs.FrameworkInstrumentor):
    """``PydanticAIInstrumentor().instrument()``; entry point ``llmmeter_pydantic_ai``."""

    framework = FRAMEWORK
    targets = TARGETS
    dependencies = ("pydantic-ai-slim >= 1.0",)
    state = _state
