"""CrewAI crews through the real ``crewai`` 1.15 and ``openai`` 2.x SDKs against a Chat Completions server on
127.0.0.1 (tests/crewai/crew_support.py): span tree, prices, totals and the loop guard.

Expected costs by hand from OpenAI's published rates (https://openai.com/api/pricing): gpt-4o-mini $0.15 / $0.60
and gpt-4.1 $2.00 / $8.00 per 1M input / output tokens; every reply reports 200 input and 20 output tokens, so one
gpt-4o-mini call is 200 * 0.15e-6 + 20 * 0.60e-6 = $0.000042 and one gpt-4.1 call 200 * 2e-6 + 20 * 8e-6 = $0.00056.
"""

from __future__ import annotations

import pytest
from crew_support import COMPLETION, PROMPT, crew_server, make_crew
from guard_support import framework_instrumented
from llmmeter import names
from llmmeter.frameworks.crewai import CrewAIInstrumentor

MINI_USD = 200 * 0.15e-6 + 20 * 0.60e-6
GPT41_USD = 200 * 2e-6 + 20 * 8e-6


@pytest.fixture
def tel(telemetry):
    with framework_instrumented(telemetry, CrewAIInstrumentor()) as instrumented:
        yield instrumented


def by_op(tel, op):
    return [s for s in tel.spans() if s.attributes.get(names.OPERATION) == op]


def test_crew_is_a_run_with_agent_runs_tool_spans_and_each_call_priced_once(tel):
    assert (PROMPT, COMPLETION) == (200, 20)  # the figures the costs above were computed from
    with crew_server(steps=1) as server:
        result = make_crew(server).kickoff()
        # researcher: tool call, then its answer; writer: its answer
        assert [r.json["model"] for r in server.requests] == ["gpt-4o-mini", "gpt-4o-mini", "gpt-4.1"]
    assert result.raw == "sunny"
    runs = {s.name: s for s in by_op(tel, names.OP_INVOKE_AGENT)}
    assert sorted(runs) == ["invoke_agent researcher", "invoke_agent weather crew", "invoke_agent writer"]
    crew, researcher, writer = (runs["invoke_agent weather crew"], runs["invoke_agent researcher"],
                                runs["invoke_agent writer"])
    assert crew.parent is None
    assert researcher.parent.span_id == crew.context.span_id and writer.parent.span_id == crew.context.span_id
    assert {s.attributes[names.AGENT_FRAMEWORK] for s in runs.values()} == {"crewai"}
    [tool] = by_op(tel, names.OP_EXECUTE_TOOL)
    assert tool.name == "execute_tool lookup" and tool.attributes[names.TOOL_CALL_ID] == "call_0_0"
    assert tool.parent.span_id == researcher.context.span_id
    chats = tel.llm_spans()
    assert len(chats) == len(server.requests) == 3
    parents = sorted((s.parent.span_id, s.attributes[names.REQUEST_MODEL]) for s in chats)
    assert parents == sorted([(researcher.context.span_id, "gpt-4o-mini")] * 2
                             + [(writer.context.span_id, "gpt-4.1")])
    assert researcher.attributes[names.RUN_LLM_CALLS] == 2 and researcher.attributes[names.RUN_TOOL_CALLS] == 1
    assert researcher.attributes[names.RUN_COST_USD] == pytest.approx(2 * MINI_USD)
    assert writer.attributes[names.RUN_LLM_CALLS] == 1 and writer.attributes[names.RUN_TOOL_CALLS] == 0
    assert writer.attributes[names.RUN_COST_USD] == pytest.approx(GPT41_USD)
    assert crew.attributes[names.RUN_LLM_CALLS] == 3 and crew.attributes[names.RUN_TOOL_CALLS] == 1
    assert crew.attributes[names.RUN_INPUT_TOKENS] == 3 * 200
    assert crew.attributes[names.RUN_OUTPUT_TOKENS] == 3 * 20
    assert crew.attributes[names.RUN_COST_USD] == pytest.approx(2 * MINI_USD + GPT41_USD)
    # priced once: the cost metric is the sum of the three calls, no more
    assert tel.metric_total(names.METRIC_COST) == pytest.approx(2 * MINI_USD + GPT41_USD)
    assert tel.metric_total(names.METRIC_AGENT_RUNS, **{names.AGENT_FRAMEWORK: "crewai"}) == 3
