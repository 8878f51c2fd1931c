"""CrewAI crews through the real ``crewai`` 1.15 and ``openai`` 2.x SDKs against a Chat Completions server on
127.0.0.1 (tests/crewai/crew_support.py): span tree, prices, totals and the loop guard.

Expected costs by hand from OpenAI's published rates (https://openai.com/api/pricing): gpt-4o-mini $0.15 / $0.60
and gpt-4.1 $2.00 / $8.00 per 1M input / output tokens; every reply reports 200 input and 20 output tokens, so one
gpt-4o-mini call is 200 * 0.15e-6 + 20 * 0.60e-6 = $0.000042 and one gpt-4.1 call 200 * 2e-6 + 20 * 8e-6 = $0.00056.
"""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from crew_support import COMPLETION, CREWAI_QUIET, PROMPT, always_off_telemetry, by_op, crew_server, make_crew
from guard_support import framework_instrumented
from llmmeter import AgentLoopDetected, names
from llmmeter.frameworks import clear_agent_guards, guards, set_agent_guard
from llmmeter.frameworks import crewai as crewai_instrumentation
from llmmeter.frameworks.crewai import CrewAIInstrumentor
from llmmeter.instrumentors._wrap import is_ours
from replay_server import Reply, scripted

MINI_USD = 200 * 0.15e-6 + 20 * 0.60e-6
GPT41_USD = 200 * 2e-6 + 20 * 8e-6


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


def test_crewais_litellm_route_is_priced_once_under_the_agent_runs(tel):
    """``LLM(..., is_litellm=True)``: CrewAI calls ``litellm.completion``, which calls the openai SDK; with llmmeter's
    litellm and openai instrumentors both on, each call is one span, priced once."""
    from llmmeter.instrumentors.litellm import LiteLLMInstrumentor

    instrumentor = LiteLLMInstrumentor()
    instrumentor.instrument(tracer_provider=tel.tracer_provider)
    try:
        with crew_server(steps=1) as server:
            crew = make_crew(server, litellm=True)
            result = crew.kickoff()
            assert len(server.requests) == 3
    finally:
        instrumentor.uninstrument()
    assert result.raw == "sunny"
    # CrewAI's LiteLLM-backed class (crewai.llm.LLM), not its native OpenAICompletion (crewai.llms.providers.openai)
    assert {type(agent.llm).__module__ for agent in crew.agents} == {"crewai.llm"}
    runs = {s.name: s for s in by_op(tel, names.OP_INVOKE_AGENT)}
    chats = tel.llm_spans()
    assert len(chats) == 3
    assert {s.instrumentation_scope.name for s in chats} == {"llmmeter.instrumentors.litellm"}
    assert sorted(s.parent.span_id for s in chats) == sorted(
        [runs["invoke_agent researcher"].context.span_id] * 2 + [runs["invoke_agent writer"].context.span_id])
    assert runs["invoke_agent weather crew"].attributes[names.RUN_COST_USD] == pytest.approx(2 * MINI_USD + GPT41_USD)
    assert tel.metric_total(names.METRIC_COST) == pytest.approx(2 * MINI_USD + GPT41_USD)
    assert len(by_op(tel, names.OP_EXECUTE_TOOL)) == 1


def test_hard_guard_stops_a_looping_crew_and_no_refused_call_reaches_the_server(tel):
    set_agent_guard("researcher", max_llm_calls=3, mode="hard")
    with crew_server(steps=10**6, vary=True) as server:
        with pytest.raises(AgentLoopDetected) as caught:
            make_crew(server, max_retry_limit=2).kickoff()
        sent = len(server.requests)
    assert sent == 3
    assert type(caught.value) is AgentLoopDetected  # llmmeter's own error, not wrapped by CrewAI
    assert caught.value.reason == "max_llm_calls"
    runs = {s.name: s for s in by_op(tel, names.OP_INVOKE_AGENT)}
    assert sorted(runs) == ["invoke_agent researcher", "invoke_agent weather crew"]
    assert runs["invoke_agent researcher"].attributes[names.RUN_STOPPED_BY] == "max_llm_calls"
    assert runs["invoke_agent researcher"].attributes[names.RUN_LLM_CALLS] == 3
    # 3 sent, then the first call of the failed attempt and of each of CrewAI's 2 retries: refused, never sent
    llm = tel.llm_spans()
    assert len(llm) == 3 + 3
    assert sum(1 for s in llm if s.attributes.get(names.LLMMETER_BLOCKED) is True) == 3
    assert tel.metric_total(names.METRIC_COST) == pytest.approx(3 * MINI_USD)


def test_hard_guard_on_repeated_identical_tool_calls_stops_the_crew(tel):
    """CrewAI stops an agent on its own only at the 5th identical call with the same result; llmmeter's limit of 2
    refuses the model call after the 2nd."""
    set_agent_guard("researcher", max_repeated_tool_calls=2, mode="hard")
    with crew_server(steps=10**6) as server:
        with pytest.raises(AgentLoopDetected) as caught:
            make_crew(server).kickoff()
        assert len(server.requests) == 2  # two tool-call replies; the call after the 2nd tool call is refused
    assert caught.value.reason == "repeated_tool_call"
    tools = by_op(tel, names.OP_EXECUTE_TOOL)
    assert [t.name for t in tools] == ["execute_tool lookup"] * 2
    [researcher] = [s for s in by_op(tel, names.OP_INVOKE_AGENT) if s.name == "invoke_agent researcher"]
    assert researcher.attributes[names.RUN_STOPPED_BY] == "repeated_tool_call"
    assert researcher.attributes[names.RUN_TOOL_CALLS] == 2


def test_soft_guard_records_an_event_and_a_trip_and_lets_the_crew_finish(tel):
    set_agent_guard("researcher", max_repeated_tool_calls=2, mode="soft")
    with crew_server(steps=3) as server:
        result = make_crew(server).kickoff()
        assert len(server.requests) == 3 + 1 + 1  # researcher: 3 tool rounds and its answer; writer: its answer
    assert result.raw == "sunny"
    runs = {s.name: s for s in by_op(tel, names.OP_INVOKE_AGENT)}
    researcher = runs["invoke_agent researcher"]
    assert names.RUN_STOPPED_BY not in researcher.attributes
    assert [e.attributes[names.LABEL_GUARD] for e in researcher.events] == ["repeated_tool_call"]
    assert researcher.events[0].attributes[names.LOOP_GUARD_MODE] == "soft"
    assert researcher.attributes[names.RUN_TOOL_CALLS] == 3
    assert tel.metric_total(names.METRIC_LOOP_GUARD_TRIPS, **{names.AGENT_NAME: "researcher"}) == 1
    assert runs["invoke_agent weather crew"].attributes[names.RUN_COST_USD] == pytest.approx(4 * MINI_USD + GPT41_USD)


def test_guard_file_is_read_by_agent_role(tel, tmp_path, monkeypatch):
    path = tmp_path / "guards.yaml"
    path.write_text("'*': {max_llm_calls: 100}\nwriter: {max_llm_calls: 1, max_tokens: 100, mode: hard}\n")
    monkeypatch.setenv(guards.ENV_AGENT_GUARDS, str(path))
    clear_agent_guards()
    # The writer's one call (220 tokens) crosses its max_tokens; it has no second call to refuse, so the crew ends.
    with crew_server(steps=1) as server:
        make_crew(server).kickoff()
        assert len(server.requests) == 3
    [writer] = [s for s in by_op(tel, names.OP_INVOKE_AGENT) if s.name == "invoke_agent writer"]
    assert [e.attributes[names.LABEL_GUARD] for e in writer.events] == ["max_tokens"]
    assert writer.events[0].attributes[names.LOOP_GUARD_LIMIT] == 100
    # a file that limits the researcher stops it looping: 4 calls sent, the 5th refused
    path.write_text("researcher: {max_llm_calls: 4, mode: hard}\n")
    clear_agent_guards()
    with crew_server(steps=10**6, vary=True) as server:
        with pytest.raises(AgentLoopDetected):
            make_crew(server).kickoff()
        assert len(server.requests) == 4


@pytest.mark.parametrize("entry", ["akickoff", "kickoff_async"])
def test_async_kickoffs_are_one_run_each_with_the_same_tree(tel, entry):
    with crew_server(steps=1) as server:
        crew = make_crew(server)
        result = asyncio.run(getattr(crew, entry)())
        assert len(server.requests) == 3
    assert result.raw == "sunny"
    runs = {s.name: s for s in by_op(tel, names.OP_INVOKE_AGENT)}
    assert sorted(runs) == ["invoke_agent researcher", "invoke_agent weather crew", "invoke_agent writer"]
    crew_span = runs["invoke_agent weather crew"]
    assert crew_span.attributes[names.RUN_LLM_CALLS] == 3
    assert crew_span.attributes[names.RUN_COST_USD] == pytest.approx(2 * MINI_USD + GPT41_USD)
    [tool] = by_op(tel, names.OP_EXECUTE_TOOL)
    assert tool.parent.span_id == runs["invoke_agent researcher"].context.span_id
    for chat in tel.llm_spans():
        assert chat.parent.span_id in {runs["invoke_agent researcher"].context.span_id,
                                       runs["invoke_agent writer"].context.span_id}


def test_streaming_kickoff_is_one_run_and_a_guard_trip_ends_the_stream_with_the_error(tel):
    with crew_server(steps=1) as server:
        streaming = make_crew(server, stream=True).kickoff()
        chunks = list(streaming)
        assert len(server.requests) == 3 and all(r.json.get("stream") for r in server.requests)
    assert chunks and streaming.result.raw == "sunny"
    runs = {s.name: s for s in by_op(tel, names.OP_INVOKE_AGENT)}
    assert sorted(runs) == ["invoke_agent researcher", "invoke_agent weather crew", "invoke_agent writer"]
    assert runs["invoke_agent weather crew"].attributes[names.RUN_LLM_CALLS] == 3
    assert runs["invoke_agent weather crew"].attributes[names.RUN_COST_USD] == pytest.approx(
        2 * MINI_USD + GPT41_USD)  # exact usage from the streams' last chunk, not estimates
    set_agent_guard("researcher", max_llm_calls=2, mode="hard")
    with crew_server(steps=10**6, vary=True) as server:
        streaming = make_crew(server, stream=True).kickoff()
        with pytest.raises(AgentLoopDetected):
            for _chunk in streaming:
                pass
        assert len(server.requests) == 2


def test_kickoff_for_each_is_one_run_per_input(tel):
    with crew_server(steps=1) as server:
        make_crew(server).kickoff_for_each(inputs=[{"x": "1"}, {"x": "2"}])
        assert len(server.requests) == 6
    crews = [s for s in by_op(tel, names.OP_INVOKE_AGENT) if s.name == "invoke_agent weather crew"]
    assert len(crews) == 2
    for crew_span in crews:
        assert crew_span.attributes[names.RUN_LLM_CALLS] == 3
    assert tel.metric_total(names.METRIC_COST) == pytest.approx(2 * (2 * MINI_USD + GPT41_USD))


def test_react_text_tool_path_is_a_tool_span_too(tel):
    """Models without native function calling (o1) get CrewAI's ReAct text protocol: the tool still is a span.
    o1-mini: $1.10 / $4.40 per 1M input / output tokens (https://openai.com/api/pricing)."""

    def reply(request):
        body = request.json or {}
        asked = "Paris: sunny" not in json.dumps(body.get("messages"))  # the tool's result not seen yet
        content = ('Thought: I need the weather\nAction: lookup\nAction Input: {"city": "Paris"}' if asked
                   else "Thought: I now know the final answer\nFinal Answer: sunny")
        return Reply.json({"id": "c", "object": "chat.completion", "created": 1, "model": body.get("model"),
                           "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                        "finish_reason": "stop"}],
                           "usage": {"prompt_tokens": 200, "completion_tokens": 20, "total_tokens": 220}})

    from crewai import LLM, Agent, Crew, Task
    from crewai.tools import tool

    @tool("lookup")
    def lookup(city: str) -> str:
        """Look up the weather of a city."""
        return f"{city}: sunny"

    with scripted(reply) as server:
        llm = LLM(model="o1-mini", base_url=server.base_url + "/v1", api_key="test-key", max_retries=0)
        agent = Agent(role="researcher", goal="Find the weather", backstory="A meteorologist.", llm=llm,
                      tools=[lookup])
        task = Task(description="Find the weather in Paris.", expected_output="The weather.", agent=agent)
        assert Crew(agents=[agent], tasks=[task], name="react crew").kickoff().raw == "sunny"
        assert len(server.requests) == 2
        assert "tools" not in server.requests[0].json  # really the text protocol, not function calling
    [tool_span] = by_op(tel, names.OP_EXECUTE_TOOL)
    runs = {s.name: s for s in by_op(tel, names.OP_INVOKE_AGENT)}
    assert tool_span.name == "execute_tool lookup"
    assert tool_span.parent.span_id == runs["invoke_agent researcher"].context.span_id
    assert runs["invoke_agent react crew"].attributes[names.RUN_TOOL_CALLS] == 1
    assert runs["invoke_agent react crew"].attributes[names.RUN_COST_USD] == pytest.approx(
        2 * (200 * 1.10e-6 + 20 * 4.40e-6))


def test_standalone_agent_kickoff_is_a_run(tel):
    with crew_server(steps=1) as server:
        crew = make_crew(server)
        researcher = crew.agents[0]
        assert researcher.kickoff("Find the weather in Paris.").raw == "sunny"
        assert len(server.requests) == 2
    [run] = by_op(tel, names.OP_INVOKE_AGENT)
    assert run.name == "invoke_agent researcher"
    assert run.attributes[names.RUN_LLM_CALLS] == 2 and run.attributes[names.RUN_TOOL_CALLS] == 1
    assert run.attributes[names.RUN_COST_USD] == pytest.approx(2 * MINI_USD)


def test_a_method_missing_from_this_release_is_logged_once_and_the_rest_instrumented(tel, monkeypatch, caplog):
    import crewai.crew  # imported: wrapped (and found missing) at instrument(), not at a later import

    assert crewai.crew.Crew.kickoff
    CrewAIInstrumentor().uninstrument()
    renamed = (("crewai.crew", "Crew.kickoff_renamed_in_some_release", crewai_instrumentation._wrap_crew_kickoff),
               ("crewai.no_such_module", "Agent.execute_task", crewai_instrumentation._wrap_execute_task))
    monkeypatch.setattr(CrewAIInstrumentor, "targets", crewai_instrumentation.TARGETS + renamed)
    with caplog.at_level(logging.INFO, logger="llmmeter.frameworks"):
        for _ in range(2):
            CrewAIInstrumentor().instrument()
            CrewAIInstrumentor().uninstrument()
        CrewAIInstrumentor().instrument()
    missing = [r.getMessage() for r in caplog.records if "not found" in r.getMessage()]
    assert len(missing) == 2  # once each, not once per instrument()
    assert any("Crew.kickoff_renamed_in_some_release" in m for m in missing)
    assert any("crewai.no_such_module.Agent.execute_task" in m for m in missing)
    with crew_server(steps=1) as server:
        make_crew(server).kickoff()
    assert len(by_op(tel, names.OP_INVOKE_AGENT)) == 3 and len(by_op(tel, names.OP_EXECUTE_TOOL)) == 1


def test_uninstrument_restores_every_method_and_leaves_model_calls_priced(tel):
    from crewai.agent.core import Agent
    from crewai.agents.agent_executor import AgentExecutor
    from crewai.crew import Crew
    from crewai.flow.runtime import Flow
    from crewai.tools.tool_usage import ToolUsage

    owners = {"Crew": Crew, "Agent": Agent, "AgentExecutor": AgentExecutor, "ToolUsage": ToolUsage, "Flow": Flow}
    targets = [(owners[q.split(".")[0]], q.split(".")[1]) for _m, q, _w in crewai_instrumentation.TARGETS]
    assert all(is_ours(vars(owner)[attr]) for owner, attr in targets)
    CrewAIInstrumentor().uninstrument()
    assert not any(is_ours(vars(owner)[attr]) for owner, attr in targets)
    with crew_server(steps=1) as server:
        make_crew(server).kickoff()
    assert by_op(tel, names.OP_INVOKE_AGENT) == [] and by_op(tel, names.OP_EXECUTE_TOOL) == []
    assert len(tel.llm_spans()) == 3
    assert tel.metric_total(names.METRIC_COST) == pytest.approx(2 * MINI_USD + GPT41_USD)


def test_exact_under_an_always_off_sampler(telemetry):
    """Nothing is exported, yet the cost, the run totals and the guard see every call (llmmeter.sampling)."""
    with always_off_telemetry(telemetry) as tel:
        with framework_instrumented(tel, CrewAIInstrumentor()):
            with crew_server(steps=1) as server:
                make_crew(server).kickoff()
                assert len(server.requests) == 3
            set_agent_guard("researcher", max_llm_calls=2, mode="hard")
            with crew_server(steps=10**6, vary=True) as server:
                with pytest.raises(AgentLoopDetected):
                    make_crew(server).kickoff()
                assert len(server.requests) == 2
        assert tel.spans() == []
        assert tel.metric_total(names.METRIC_COST) == pytest.approx(2 * MINI_USD + GPT41_USD + 2 * MINI_USD)
        assert tel.metric_total(names.METRIC_AGENT_RUN_COST, **{names.AGENT_NAME: "weather crew",
                                                                names.AGENT_FRAMEWORK: "crewai"}) \
            == pytest.approx(2 * MINI_USD + GPT41_USD + 2 * MINI_USD)  # both crew runs, the stopped one too


LAZY = """
import sys
from llmmeter.instrumentors._wrap import is_ours
from llmmeter.pipeline import instrument_all
print("instrumented:", "llmmeter_crewai" in instrument_all())  # what llmmeter.configure() and the distro run
print("imported:", "crewai" in sys.modules)
from crewai import Crew
from crewai.agent.core import Agent
print("wrapped:", is_ours(vars(Crew)["kickoff"]), is_ours(vars(Agent)["execute_task"]))
"""


def test_the_entry_point_instruments_crewai_without_importing_it_and_wraps_it_when_the_app_does():
    import os
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", LAZY], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **CREWAI_QUIET})
    assert done.returncode == 0, done.stderr
    assert "instrumented: True" in done.stdout
    assert "imported: False" in done.stdout and "wrapped: True True" in done.stdout
