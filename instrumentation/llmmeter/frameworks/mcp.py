"""MCP client SDK (``mcp``): ``ClientSession.call_tool`` is an ``execute_tool`` span in the current agent run.

Each call becomes ``execute_tool {tool}`` (``gen_ai.tool.type = extension``, ``llmmeter.mcp.server`` = the
server's name from its initialize/discover reply), current while the call runs (the SDK's own
``mcp-python-sdk`` spans and propagated trace context nest under it), counted in the enclosing
``llmmeter.agent`` / framework run and in its repeated-call guard (the arguments are hashed, never
recorded). A tool result with ``isError`` marks the span as an error. ``list_tools`` gets a light
``list_tools {server}`` span and is not counted.

When a framework already opened the tool span for this call (the OpenAI Agents SDK runs MCP tools as
function tools), the MCP call is not a second tool call: the open span gets the server name and nothing is
counted twice.
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

FRAMEWORK = names.FRAMEWORK_MCP


class _State:
    enabled = False


_state = _State()


def _server_name(session: Any) -> str | None:
    try:
        info = getattr(session, "server_info", None)
        if info is None:
            result = getattr(session, "_initialize_result", None)
            info = getattr(result, "server_info", None) or getattr(result, "serverInfo", None)
        name = getattr(info, "name", None)
        return str(name) if name else None
    except Exception:
        return None


def _already_open(tool_name: str) -> trace.Span | None:
    """The current span if a framework already made it the execute_tool span of this very tool."""
    span = trace.get_current_span()
    attrs = getattr(span, "attributes", None) or {}
    if attrs.get(names.OPERATION) == names.OP_EXECUTE_TOOL and attrs.get(names.TOOL_NAME) == tool_name:
        return span
    return None


async def _wrap_call_tool(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if not _state.enabled:
        return await wrapped(*args, **kwargs)
    try:
        name = str(args[0] if args else kwargs.get("name") or "tool")
        arguments = args[1] if len(args) > 1 else kwargs.get("arguments")
        server = _server_name(instance)
        outer = _already_open(name)
        if outer is not None:
            if server:
                outer.set_attribute(names.MCP_SERVER, server)
            return await wrapped(*args, **kwargs)
        attrs: dict[str, Any] = {names.OPERATION: names.OP_EXECUTE_TOOL, names.TOOL_NAME: name,
                                 names.TOOL_TYPE: "extension"}
        if server:
            attrs[names.MCP_SERVER] = server
        span = _runs.start_child_span(f"{names.OP_EXECUTE_TOOL} {name}", attrs)
        run = _agents.current_run()
        if run is not None:
            run.record_tool_call(name, arguments)
        ctx = trace.set_span_in_context(span)
        token = otel_context.attach(ctx)
    except Exception:
        _log.debug("llmmeter: mcp call_tool not instrumented", exc_info=True)
        return await wrapped(*args, **kwargs)
    try:
        result = await wrapped(*args, **kwargs)
    except BaseException as exc:
        _detach(token, ctx)
        span.set_attribute(names.ERROR_TYPE, type(exc).__qualname__)
        span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
        span.end()
        raise
    _detach(token, ctx)
    if getattr(result, "isError", None) is True or getattr(result, "is_error", None) is True:
        span.set_attribute(names.ERROR_TYPE, "tool_error")
        span.set_status(Status(StatusCode.ERROR, "tool_error"))
    span.end()
    return result


def _detach(token: Any, ctx: Any) -> None:
    if otel_context.get_current() is ctx:
        otel_context.detach(token)


async def _wrap_list_tools(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if not _state.enabled:
        return await wrapped(*args, **kwargs)
    server = _server_name(instance)
    try:
        span = _runs.start_child_span(f"list_tools {server}" if server else "list_tools",
                                      {names.MCP_SERVER: server} if server else {})
    except Exception:
        return await wrapped(*args, **kwargs)
    try:
        return await wrapped(*args, **kwargs)
    except BaseException as exc:
        span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
        raise
    finally:
        span.end()


TARGETS = (
    ("mcp.client.session", "ClientSession.call_tool", _wrap_call_tool),
    ("mcp.client.session", "ClientSession.list_tools", _wrap_list_tools),
)


class MCPInstrumentor(_runs.FrameworkInstrumentor):
    """``MCPInstrumentor().instrument()``; entry point ``llmmeter_mcp``."""

    framework = FRAMEWORK
    targets = TARGETS
    dependencies = ("mcp >= 1.0",)
    state = _state
    loads_guards = False
