"""``llmmeter demo --agents``: the OpenAI Agents SDK and LangGraph runs against the real demo server, with the
trees and guard outcomes the README promises (the demo server repeats one tool call whenever tools are offered)."""

from __future__ import annotations

from guard_support import guarded
from llmmeter import names
from llmmeter.demo.framework_scenarios import FrameworkRun, run_all
from llmmeter.demo.server import DemoServer
from llmmeter.frameworks import clear_agent_guards
from llmmeter.frameworks.langgraph import LangGraphInstrumentor
from llmmeter.frameworks.openai_agents import OpenAIAgentsInstrumentor


def test_demo_framework_runs_show_as_agent_runs(telemetry):
    clear_agent_guards()
    with guarded(telemetry):
        instrumentors = [OpenAIAgentsInstrumentor(), LangGraphInstrumentor()]
        for instrumentor in instrumentors:
            instrumentor.instrument()
        try:
            with DemoServer() as server:
                runs = run_all(server.base_url)
        finally:
            for instrumentor in instrumentors:
                instrumentor.uninstrument()
            clear_agent_guards()
    assert runs == [
        FrameworkRun("openai-agents", "triage", "ok"),
        FrameworkRun("openai-agents", "order-bot", "stopped by max_llm_calls"),
        FrameworkRun("langgraph", "support-graph", "stopped by repeated_tool_call"),
    ]
    roots = {s.attributes[names.AGENT_NAME]: s for s in telemetry.spans()
             if s.attributes.get(names.OPERATION) == names.OP_INVOKE_AGENT}
    assert set(roots) == {"triage", "order-bot", "support-graph"}
    assert roots["triage"].attributes[names.RUN_LLM_CALLS] == 1
    assert roots["order-bot"].attributes[names.RUN_LLM_CALLS] == 4  # the 5th call was refused
    assert roots["support-graph"].attributes[names.RUN_TOOL_CALLS] == 3
    assert roots["support-graph"].attributes[names.RUN_STOPPED_BY] == "repeated_tool_call"
    for root in roots.values():
        children = [s for s in telemetry.llm_spans() if s.parent and s.parent.span_id == root.context.span_id]
        sent = [s for s in children if not s.attributes.get(names.LLMMETER_BLOCKED)]
        assert len(sent) == root.attributes[names.RUN_LLM_CALLS]
        assert len(children) - len(sent) == (1 if names.RUN_STOPPED_BY in root.attributes else 0)  # the refused one
