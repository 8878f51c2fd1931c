"""pydantic-ai runs through the real ``pydantic-ai`` and ``openai`` SDKs against an OpenAI-wire server on 127.0.0.1
with fixed usage per reply: gpt-4o-mini at $0.15 / 1M input and $0.60 / 1M output (https://openai.com/api/pricing)."""

from __future__ import annotations

import asyncio

import openai
import pytest
from guard_support import framework_instrumented, tool_calling_server
from llmmeter import AgentLoopDetected, names
from llmmeter.frameworks import set_agent_guard
from llmmeter.frameworks.pydantic_ai import PydanticAIInstrumentor
from pydantic_ai import Agent
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

PROMPT, COMPLETION = 30, 6
CALL_USD = PROMPT * 0.15 / 1e6 + COMPLETION * 0.60 / 1e6


@pytest.fixture
def tel(telemetry):
    with framework_instrumented(telemetry, PydanticAIInstrumentor()) as instrumented:
        yield instrumented


def model_server(tool_calls_first: int):
    """The first ``tool_calls_first`` replies ask for ``lookup(city="Paris")``, then a text answer."""
    return tool_calling_server(tool_calls_first, PROMPT, COMPLETION, "sunny")


def make_agent(server, name="weather") -> Agent:
    client = openai.AsyncOpenAI(base_url=server.base_url + "/v1", api_key="test-key", max_retries=0)
    model = OpenAIChatModel("gpt-4o-mini", provider=OpenAIProvider(openai_client=client))
    agent = Agent(model, name=name)

    @agent.tool_plain
    def lookup(city: str) -> str:
        """Look a city up."""
        return f"{city}: sunny"

    return agent


def by_op(tel, op):
    return [s for s in tel.spans() if s.attributes.get(names.OPERATION) == op]


def test_run_is_an_agent_span_with_tool_spans_and_totals(tel):
    with model_server(tool_calls_first=1) as server:
        result = make_agent(server).run_sync("weather in Paris?")
        assert len(server.requests) == 2
    assert result.output == "sunny"
    [root] = by_op(tel, names.OP_INVOKE_AGENT)
    [tool] = by_op(tel, names.OP_EXECUTE_TOOL)
    assert root.name == "invoke_agent weather"
    assert root.attributes[names.AGENT_FRAMEWORK] == "pydantic-ai"
    assert tool.name == "execute_tool lookup" and tool.attributes[names.TOOL_CALL_ID] == "call_0"
    llm = tel.llm_spans()
    assert len(llm) == 2
    for child in [tool, *llm]:
        assert child.parent.span_id == root.context.span_id
    assert root.attributes[names.RUN_LLM_CALLS] == 2
    assert root.attributes[names.RUN_TOOL_CALLS] == 1
    assert root.attributes[names.RUN_COST_USD] == pytest.approx(2 * CALL_USD)
    assert tel.metric_total(names.METRIC_COST) == pytest.approx(2 * CALL_USD)


def test_async_run_and_guard_stop_a_looping_agent(tel):
    set_agent_guard("weather", max_repeated_tool_calls=2, mode="hard")
    with model_server(tool_calls_first=10**6) as server:
        with pytest.raises(AgentLoopDetected) as caught:
            asyncio.run(make_agent(server).run("loop"))
        assert len(server.requests) == 2
    assert caught.value.reason == "repeated_tool_call"
    [root] = by_op(tel, names.OP_INVOKE_AGENT)
    assert root.attributes[names.RUN_STOPPED_BY] == "repeated_tool_call"
    assert root.end_time is not None


def test_uninstrument_leaves_runs_alone(tel):
    PydanticAIInstrumentor().uninstrument()
    with model_server(tool_calls_first=1) as server:
        make_agent(server).run_sync("x")
    assert by_op(tel, names.OP_INVOKE_AGENT) == [] and by_op(tel, names.OP_EXECUTE_TOOL) == []
    assert len(tel.llm_spans()) == 2
