"""MCP tool calls through the real ``mcp`` client and server SDKs (in-process transport, and stdio with the
server as a subprocess): execute_tool spans in the current agent run, counted by the repeated-call guard."""

from __future__ import annotations

import asyncio
import sys
import textwrap

import pytest
from guard_support import CountingServer, chat, guarded
from llmmeter import AgentLoopDetected, agent, names
from llmmeter.frameworks.mcp import MCPInstrumentor
from mcp import Client, StdioServerParameters
from mcp.server.mcpserver import MCPServer
from opentelemetry.trace import StatusCode


@pytest.fixture
def tel(telemetry):
    with guarded(telemetry):
        instrumentor = MCPInstrumentor()
        instrumentor.instrument()
        try:
            yield telemetry
        finally:
            instrumentor.uninstrument()


def weather_server() -> MCPServer:
    server = MCPServer("weather-mcp")

    @server.tool()
    def forecast(city: str) -> str:
        """Forecast for a city."""
        return f"{city}: rain"

    @server.tool()
    def broken(city: str) -> str:
        """Always fails."""
        raise RuntimeError("backend down")

    return server


def by_op(tel, op):
    return [s for s in tel.spans() if s.attributes.get(names.OPERATION) == op]


def test_call_tool_is_an_execute_tool_span_under_the_run_with_the_server_name(tel):
    async def main():
        with agent("planner") as run:
            async with Client(weather_server()) as client:
                await client.session.list_tools()
                result = await client.session.call_tool("forecast", {"city": "Oslo"})
        return run, result

    run, result = asyncio.run(main())
    assert "Oslo: rain" in str(result.content)
    assert run.tool_calls == 1
    [root] = by_op(tel, names.OP_INVOKE_AGENT)
    [tool] = by_op(tel, names.OP_EXECUTE_TOOL)
    assert tool.name == "execute_tool forecast"
    assert tool.attributes[names.TOOL_NAME] == "forecast"
    assert tool.attributes[names.TOOL_TYPE] == "extension"
    assert tool.attributes[names.MCP_SERVER] == "weather-mcp"
    assert tool.parent.span_id == root.context.span_id
    assert tool.status.status_code is not StatusCode.ERROR
    [listing] = [s for s in tel.spans() if s.name.startswith("list_tools")]
    assert listing.attributes[names.MCP_SERVER] == "weather-mcp"
    assert root.attributes[names.RUN_TOOL_CALLS] == 1  # list_tools is not a tool call


def test_tool_error_result_marks_the_span(tel):
    async def main():
        async with Client(weather_server()) as client:
            return await client.session.call_tool("broken", {"city": "Oslo"})

    result = asyncio.run(main())
    assert result.is_error if hasattr(result, "is_error") else result.isError
    [tool] = by_op(tel, names.OP_EXECUTE_TOOL)
    assert tool.status.status_code is StatusCode.ERROR
    assert tool.attributes[names.ERROR_TYPE] == "tool_error"


def test_repeated_identical_mcp_calls_trip_the_guard_and_the_next_llm_call_is_refused(tel):
    async def main(llm):
        with agent("looper", max_repeated_tool_calls=3, mode="hard"):
            async with Client(weather_server()) as client:
                for _ in range(3):
                    await client.session.call_tool("forecast", {"city": "Oslo"})
                await client.session.call_tool("forecast", {"city": "Bergen"})  # different arguments
            chat(llm)  # refused: three identical calls crossed the limit

    with CountingServer() as server:
        with pytest.raises(AgentLoopDetected) as caught:
            asyncio.run(main(server.client()))
        assert server.requests == 0
    assert caught.value.reason == "repeated_tool_call"
    [root] = by_op(tel, names.OP_INVOKE_AGENT)
    [event] = root.events
    assert event.attributes[names.LOOP_GUARD_DETAIL] == "forecast"
    assert event.attributes[names.LOOP_GUARD_VALUE] == 3
    assert root.attributes[names.RUN_TOOL_CALLS] == 4


STDIO_SERVER = textwrap.dedent('''
    from mcp.server.mcpserver import MCPServer
    server = MCPServer("stdio-calc")

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    server.run("stdio")
''')


def test_stdio_server_subprocess(tel, tmp_path):
    script = tmp_path / "calc_server.py"
    script.write_text(STDIO_SERVER)

    async def main():
        with agent("calculator"):
            async with Client(StdioServerParameters(command=sys.executable, args=[str(script)])) as client:
                return await client.session.call_tool("add", {"a": 2, "b": 3})

    result = asyncio.run(main())
    assert "5" in str(result.content)
    [tool] = by_op(tel, names.OP_EXECUTE_TOOL)
    assert tool.attributes[names.MCP_SERVER] == "stdio-calc"


def test_uninstrument_removes_the_spans(tel):
    MCPInstrumentor().uninstrument()

    async def main():
        async with Client(weather_server()) as client:
            await client.session.call_tool("forecast", {"city": "Oslo"})

    asyncio.run(main())
    assert by_op(tel, names.OP_EXECUTE_TOOL) == []
