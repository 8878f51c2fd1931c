"""``llmmeter demo --agents``: agent-framework runs against the demo server, so their trees show in Jaeger.

* OpenAI Agents SDK: ``triage`` answers in one model call (a clean run with its totals), then ``order-bot``,
  whose model keeps asking for the same tool, is stopped by its guard (``max_llm_calls=4``, set by agent
  name as an app would in ``LLMMETER_AGENT_GUARDS``) with :class:`llmmeter.AgentLoopDetected`.
* LangGraph: a ReAct-style graph (model node, tool node, cycle) that loops on one identical tool call is
  stopped by the repeated-tool-call guard (3 identical calls); its nodes show as ``step`` spans.

Both talk Chat Completions through the real openai SDK (the demo server's API), instrumented by llmmeter's
openai instrumentor: every model call is priced once, under its run. A framework that is not installed is
skipped with a note (``pip install 'llmmeter[agents,langgraph]'``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from llmmeter.errors import AgentLoopDetected
from llmmeter.frameworks import set_agent_guard

MODEL = "gpt-4o-mini"


@dataclass
class FrameworkRun:
    framework: str
    agent: str
    outcome: str  # "ok" | "stopped by <guard>" | "error: <type>" | "skipped: <why>"


def run_openai_agents(base_url: str) -> list[FrameworkRun]:
    try:
        import openai
        from agents import Agent, OpenAIChatCompletionsModel, Runner, function_tool, set_trace_processors

        from llmmeter.frameworks.openai_agents import LLMMeterTracingProcessor
    except ImportError:
        return [FrameworkRun("openai-agents", "-", "skipped: pip install 'llmmeter[agents]'")]
    # Only llmmeter's processor: the SDK's default one would send the demo's traces to OpenAI's backend.
    set_trace_processors([LLMMeterTracingProcessor()])
    client = openai.AsyncOpenAI(base_url=base_url, api_key="demo-not-a-secret", max_retries=0)
    model = OpenAIChatCompletionsModel(model=MODEL, openai_client=client)

    @function_tool
    def search_orders(query: str) -> str:
        """Look up a customer's orders."""
        return '{"orders": [{"id": "1234", "status": "in transit"}]}'

    triage = Agent(name="triage", instructions="Answer briefly.", model=model)
    order_bot = Agent(name="order-bot", instructions="Use tools to answer.", model=model, tools=[search_orders])
    set_agent_guard("order-bot", max_llm_calls=4, mode="hard")

    async def main() -> list[FrameworkRun]:
        out = []
        await Runner.run(triage, "What are your opening hours?")
        out.append(FrameworkRun("openai-agents", "triage", "ok"))
        try:
            await Runner.run(order_bot, "Where is my order 1234?", max_turns=20)
            out.append(FrameworkRun("openai-agents", "order-bot", "ok"))
        except AgentLoopDetected as exc:
            out.append(FrameworkRun("openai-agents", "order-bot", f"stopped by {exc.reason}"))
        await client.close()
        return out

    return asyncio.run(main())


def run_langgraph(base_url: str) -> list[FrameworkRun]:
    try:
        from langchain_core.messages import HumanMessage
        from langchain_core.tools import tool
        from langchain_openai import ChatOpenAI
        from langgraph.graph import START, MessagesState, StateGraph
        from langgraph.prebuilt import ToolNode, tools_condition
    except ImportError:
        return [FrameworkRun("langgraph", "-", "skipped: pip install 'llmmeter[langgraph]' langchain-openai")]

    @tool
    def search_orders(query: str) -> str:
        """Look up a customer's orders."""
        return '{"orders": [{"id": "1234", "status": "in transit"}]}'

    llm = ChatOpenAI(model=MODEL, base_url=base_url, api_key="demo-not-a-secret", max_retries=0)
    bound = llm.bind_tools([search_orders])

    def call_model(state: MessagesState) -> dict[str, Any]:
        return {"messages": [bound.invoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("model", call_model)
    builder.add_node("tools", ToolNode([search_orders]))
    builder.add_edge(START, "model")
    builder.add_conditional_edges("model", tools_condition)
    builder.add_edge("tools", "model")
    graph = builder.compile(name="support-graph")
    set_agent_guard("support-graph", max_repeated_tool_calls=3, mode="hard")
    try:
        graph.invoke({"messages": [HumanMessage("Where is my order 1234?")]}, config={"recursion_limit": 50})
        return [FrameworkRun("langgraph", "support-graph", "ok")]
    except AgentLoopDetected as exc:
        return [FrameworkRun("langgraph", "support-graph", f"stopped by {exc.reason}")]


def run_all(base_url: str) -> list[FrameworkRun]:
    """Every framework scenario; one failing never stops the others (the demo reports it)."""
    out: list[FrameworkRun] = []
    for scenario, name in ((run_openai_agents, "openai-agents"), (run_langgraph, "langgraph")):
        try:
            out.extend(scenario(base_url))
        except Exception as exc:
            out.append(FrameworkRun(name, "-", f"error: {type(exc).__name__}: {exc}"))
    return out
