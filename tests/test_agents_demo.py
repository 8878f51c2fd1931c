"""The demo's agent scenario end to end: real openai SDK -> llmmeter's OpenAI instrumentor -> the demo's
OpenAI-wire server on 127.0.0.1, which always answers with the same tool call. The exported trace is
the one Jaeger shows: one agent span, LLM and tool children, the loop-guard event and the totals."""

from __future__ import annotations

import openai
import pytest
from guard_support import guarded
from llmmeter import names
from llmmeter.demo import agent_scenario
from llmmeter.demo.server import DemoServer
from opentelemetry.trace import SpanKind, StatusCode


@pytest.fixture
def tel(telemetry):
    with guarded(telemetry):
        yield telemetry


def test_agent_scenario_trace_tree(tel):
    with DemoServer() as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="demo", max_retries=0)
        result = agent_scenario.run_agent_scenario(client)
        sent = server.state.requests

    n = agent_scenario.MAX_REPEATED_TOOL_CALLS
    assert result.stopped_by == "repeated_tool_call"
    assert (result.llm_calls, result.tool_calls, sent) == (n, n, n)  # the refused call never reached the server

    spans = tel.spans()
    [root] = [s for s in spans if s.name == f"invoke_agent {agent_scenario.AGENT_NAME}"]
    assert root.parent is None and root.kind is SpanKind.INTERNAL
    children = sorted((s for s in spans if s.parent is not None and s.parent.span_id == root.context.span_id),
                      key=lambda s: s.start_time)
    assert [s.name for s in children] == (
        [f"chat {agent_scenario.MODEL}", f"execute_tool {agent_scenario.TOOL_NAME}"] * n
        + [f"chat {agent_scenario.MODEL}"])
    assert all(s.context.trace_id == root.context.trace_id for s in spans)
    blocked = children[-1]
    assert blocked.attributes[names.LLMMETER_BLOCKED] is True
    assert blocked.attributes[names.ERROR_TYPE] == "llmmeter.errors.AgentLoopDetected"

    llm = [s for s in children if s.kind is SpanKind.CLIENT and not s.attributes.get(names.LLMMETER_BLOCKED)]
    attrs = root.attributes
    assert attrs[names.RUN_LLM_CALLS] == n and attrs[names.RUN_TOOL_CALLS] == n
    assert attrs[names.RUN_INPUT_TOKENS] == sum(s.attributes[names.USAGE_INPUT_TOKENS] for s in llm)
    assert attrs[names.RUN_OUTPUT_TOKENS] == sum(s.attributes[names.USAGE_OUTPUT_TOKENS] for s in llm)
    assert attrs[names.RUN_COST_USD] == pytest.approx(sum(s.attributes[names.COST_USD] for s in llm))
    assert attrs[names.RUN_COST_USD] > 0
    assert attrs[names.RUN_STOPPED_BY] == "repeated_tool_call"
    assert root.status.status_code is StatusCode.ERROR
    assert [e.name for e in root.events] == [names.EVENT_LOOP_GUARD, names.EVENT_OUTCOME]
    assert all(s.attributes[names.ATTRIBUTION_SPAN_PREFIX + "tenant"] == "acme" for s in llm)
    assert tel.metric_total(names.METRIC_OUTCOMES, **{names.LABEL_SUCCESS: "false"}) == 1
