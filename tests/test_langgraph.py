"""LangGraph / LangChain runs through the real ``langgraph``, ``langchain-openai`` and ``openai`` SDKs against an
OpenAI-wire server on 127.0.0.1 whose replies carry fixed usage, so each call's cost is known by hand:
gpt-4o-mini at $0.15 / 1M input and $0.60 / 1M output tokens (https://openai.com/api/pricing)."""

from __future__ import annotations

import asyncio

import pytest
from guard_support import framework_instrumented, tool_calling_server
from langchain_core.messages import HumanMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition
from llmmeter import AgentLoopDetected, names
from llmmeter.agents import current_run
from llmmeter.frameworks import set_agent_guard
from llmmeter.frameworks.langgraph import LangGraphInstrumentor
from opentelemetry.trace import StatusCode

PROMPT, COMPLETION = 40, 10
CALL_USD = PROMPT * 0.15 / 1e6 + COMPLETION * 0.60 / 1e6


@pytest.fixture
def tel(telemetry):
    with framework_instrumented(telemetry, LangGraphInstrumentor()) as instrumented:
        yield instrumented


def model_server(tool_calls_first: int):
    """The first ``tool_calls_first`` replies ask for ``lookup(city="Paris")``, then a text answer."""
    return tool_calling_server(tool_calls_first, PROMPT, COMPLETION, "done")


@tool
def lookup(city: str) -> str:
    """Look a city up."""
    return f"{city}: sunny"


def graph(server, name="research"):
    llm = ChatOpenAI(model="gpt-4o-mini", base_url=server.base_url + "/v1", api_key="test-key",
                     max_retries=0).bind_tools([lookup])

    def agent(state: MessagesState):
        return {"messages": [llm.invoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("agent", agent)
    builder.add_node("tools", ToolNode([lookup]))
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", tools_condition)
    builder.add_edge("tools", "agent")
    return builder.compile(name=name)


def by_op(tel, op):
    return [s for s in tel.spans() if s.attributes.get(names.OPERATION) == op]


def test_graph_invoke_is_one_run_with_steps_tools_and_priced_calls(tel):
    with model_server(tool_calls_first=2) as server:
        graph(server).invoke({"messages": [HumanMessage("weather in Paris?")]})
        assert len(server.requests) == 3
    [root] = by_op(tel, names.OP_INVOKE_AGENT)  # invoke() calls stream(): one run, not two
    assert root.name == "invoke_agent research"
    assert root.attributes[names.AGENT_FRAMEWORK] == "langgraph"
    tools = by_op(tel, names.OP_EXECUTE_TOOL)
    assert [t.name for t in tools] == ["execute_tool lookup"] * 2
    steps = [s for s in tel.spans() if names.AGENT_STEP in s.attributes]
    assert sorted(s.attributes[names.AGENT_STEP] for s in steps) == ["agent"] * 3 + ["tools"] * 2
    for step in steps:
        assert step.parent.span_id == root.context.span_id
    for t in tools:
        assert t.parent.span_id in {s.context.span_id for s in steps if s.attributes[names.AGENT_STEP] == "tools"}
    llm = tel.llm_spans()
    assert len(llm) == 3  # LangChain's LLM callbacks add nothing: one priced span per call
    for span in llm:
        assert span.context.trace_id == root.context.trace_id
    assert root.attributes[names.RUN_LLM_CALLS] == 3
    assert root.attributes[names.RUN_TOOL_CALLS] == 2
    assert root.attributes[names.RUN_INPUT_TOKENS] == 3 * PROMPT
    assert root.attributes[names.RUN_COST_USD] == pytest.approx(3 * CALL_USD)
    assert tel.metric_total(names.METRIC_COST) == pytest.approx(3 * CALL_USD)
    assert tel.metric_total(names.METRIC_AGENT_RUNS, **{names.AGENT_FRAMEWORK: "langgraph"}) == 1


def test_graph_stream_is_one_run_ending_with_the_stream(tel):
    with model_server(tool_calls_first=1) as server:
        chunks = list(graph(server).stream({"messages": [HumanMessage("weather?")]},
                                           config={"run_name": "streamer"}))
    assert len(chunks) == 3  # agent, tools, agent
    [root] = by_op(tel, names.OP_INVOKE_AGENT)
    assert root.name == "invoke_agent streamer"
    assert root.attributes[names.RUN_LLM_CALLS] == 2
    assert root.attributes[names.RUN_COST_USD] == pytest.approx(2 * CALL_USD)


def test_stream_closed_early_ends_its_run_cleanly_and_is_not_current_between_chunks(tel):
    """The app reads one chunk and closes the stream: the run ends then (one model call, no error), and while
    the app holds the chunk the graph's run is not the current one (it is current only while the graph computes)."""
    with model_server(tool_calls_first=1) as server:
        stream = graph(server).stream({"messages": [HumanMessage("weather?")]}, config={"run_name": "early"})
        first = next(stream)
        between = current_run()
        stream.close()
    assert list(first) == ["agent"]  # the agent node's update; the tools node never ran
    assert between is None
    [root] = by_op(tel, names.OP_INVOKE_AGENT)
    assert root.name == "invoke_agent early"
    assert root.status.status_code is not StatusCode.ERROR
    assert root.attributes[names.RUN_LLM_CALLS] == 1
    assert tel.metric_total(names.METRIC_AGENT_RUNS, **{names.LABEL_STATUS: "ok"}) == 1


def test_graph_ainvoke_and_astream(tel):
    async def main(server):
        g = graph(server)
        await g.ainvoke({"messages": [HumanMessage("a")]})
        return [c async for c in g.astream({"messages": [HumanMessage("b")]})]

    with model_server(tool_calls_first=0) as server:
        chunks = asyncio.run(main(server))
    assert len(chunks) == 1
    roots = by_op(tel, names.OP_INVOKE_AGENT)
    assert len(roots) == 2
    assert [r.attributes[names.RUN_LLM_CALLS] for r in roots] == [1, 1]
    assert tel.metric_total(names.METRIC_COST) == pytest.approx(2 * CALL_USD)


def test_cycling_graph_is_stopped_by_the_hard_guard(tel):
    set_agent_guard("research", max_repeated_tool_calls=3, mode="hard")
    with model_server(tool_calls_first=10**6) as server:  # the model never stops asking for the same tool
        with pytest.raises(AgentLoopDetected) as caught:
            graph(server).invoke({"messages": [HumanMessage("loop")]}, config={"recursion_limit": 100})
        assert len(server.requests) == 3  # the 4th model call is refused before it is sent
    assert caught.value.reason == "repeated_tool_call"
    [root] = by_op(tel, names.OP_INVOKE_AGENT)
    assert root.attributes[names.RUN_STOPPED_BY] == "repeated_tool_call"
    assert tel.metric_total(names.METRIC_AGENT_RUNS, **{names.LABEL_STATUS: "blocked"}) == 1


def test_cycling_stream_ends_through_the_stream(tel):
    set_agent_guard("*", max_llm_calls=2, mode="hard")
    seen = []
    with model_server(tool_calls_first=10**6) as server:
        with pytest.raises(AgentLoopDetected):
            for chunk in graph(server).stream({"messages": [HumanMessage("loop")]}):
                seen.append(chunk)
        assert len(server.requests) == 2
    assert len(seen) == 4  # agent, tools, agent, tools: then the third model call is refused
    [root] = by_op(tel, names.OP_INVOKE_AGENT)
    assert root.attributes[names.RUN_STOPPED_BY] == "max_llm_calls"


def test_subgraph_is_a_nested_run_rolled_up(tel):
    with model_server(tool_calls_first=0) as server:
        inner = graph(server, name="inner")
        builder = StateGraph(MessagesState)
        builder.add_node("delegate", inner)
        builder.add_edge(START, "delegate")
        builder.add_edge("delegate", END)
        builder.compile(name="outer").invoke({"messages": [HumanMessage("x")]})
    spans = {s.name: s for s in by_op(tel, names.OP_INVOKE_AGENT)}
    assert set(spans) == {"invoke_agent outer", "invoke_agent inner"}
    assert spans["invoke_agent outer"].attributes[names.RUN_LLM_CALLS] == 1
    assert spans["invoke_agent inner"].attributes[names.RUN_LLM_CALLS] == 1
    assert tel.metric_total(names.METRIC_COST) == pytest.approx(CALL_USD)


def test_uninstrument_leaves_graphs_alone(tel):
    LangGraphInstrumentor().uninstrument()
    with model_server(tool_calls_first=1) as server:
        graph(server).invoke({"messages": [HumanMessage("x")]})
    assert by_op(tel, names.OP_INVOKE_AGENT) == [] and by_op(tel, names.OP_EXECUTE_TOOL) == []
    assert len(tel.llm_spans()) == 2


def test_langchain_anthropic_model_calls_are_priced_once_by_the_anthropic_instrumentor(tel):
    """langchain-anthropic -> the real anthropic SDK -> llmmeter's anthropic instrumentor, inside the graph run.
    Recording: claude-3-opus-20240229, 17 input / 220 output tokens at $15 / $75 per 1M
    (https://docs.anthropic.com/en/docs/about-claude/pricing)."""
    from langchain_anthropic import ChatAnthropic
    from llmmeter.instrumentors.anthropic import AnthropicInstrumentor
    from replay_server import replay

    anthropic_instrumentor = AnthropicInstrumentor()
    anthropic_instrumentor.instrument(tracer_provider=tel.tracer_provider)
    try:
        with replay("anthropic/tests/cassettes/test_messages/test_anthropic_message_create_legacy.yaml") as server:
            llm = ChatAnthropic(model="claude-3-opus-20240229", base_url=server.base_url, api_key="test-key",
                                max_retries=0, max_tokens=1024)
            builder = StateGraph(MessagesState)
            builder.add_node("write", lambda state: {"messages": [llm.invoke(state["messages"])]})
            builder.add_edge(START, "write")
            builder.add_edge("write", END)
            builder.compile(name="writer").invoke({"messages": [HumanMessage("Tell me a joke about OpenTelemetry")]})
    finally:
        anthropic_instrumentor.uninstrument()
    [root] = by_op(tel, names.OP_INVOKE_AGENT)
    [llm_span] = tel.llm_spans()  # LangChain's own LLM callbacks add no second count
    assert llm_span.attributes[names.PROVIDER] == "anthropic"
    expected = 17 * 15 / 1e6 + 220 * 75 / 1e6
    assert root.attributes[names.RUN_COST_USD] == pytest.approx(expected)
    assert tel.metric_total(names.METRIC_COST) == pytest.approx(expected)
