"""CrewAI Flows through the real ``crewai`` 1.15 and ``openai`` 2.x SDKs against the Chat Completions server on
127.0.0.1 (tests/crewai/crew_support.py): a flow is one run, its steps are spans, the crews and ``LLM.call`` s its
steps make nest under them, and a guard limit by flow name stops a flow that loops over crews.

Expected costs by hand from OpenAI's published rates (https://openai.com/api/pricing): every reply reports 200 input
and 20 output tokens, so one gpt-4o-mini call ($0.15 / $0.60 per 1M) is $0.000042 and one gpt-4.1 call
($2.00 / $8.00 per 1M) $0.00056. The crew of crew_support.make_crew with ``steps=1`` makes three calls: the
researcher's tool call and answer (gpt-4o-mini) and the writer's answer (gpt-4.1).
"""

from __future__ import annotations

import asyncio

import pytest
from crew_support import always_off_telemetry, by_op, crew_server, make_crew
from guard_support import framework_instrumented
from llmmeter import AgentLoopDetected, names
from llmmeter.frameworks import set_agent_guard
from llmmeter.frameworks.crewai import CrewAIInstrumentor

MINI_USD = 200 * 0.15e-6 + 20 * 0.60e-6
GPT41_USD = 200 * 2e-6 + 20 * 8e-6
CREW_USD = 2 * MINI_USD + GPT41_USD


def weather_flow(server, **flow_kwargs):
    """Two steps: ``draft`` calls gpt-4.1 directly (``LLM.call``), then ``research`` kicks off the weather crew."""
    from crewai import LLM
    from crewai.flow.flow import Flow, listen, start

    class WeatherFlow(Flow):
        @start()
        def draft(self):
            llm = LLM(model="gpt-4.1", base_url=server.base_url + "/v1", api_key="test-key", max_retries=0)
            return llm.call("Say something about the weather.")

        @listen(draft)
        def research(self, draft):
            return make_crew(server).kickoff().raw

    return WeatherFlow(**flow_kwargs)


def assert_weather_flow_tree(tel, flow_name):
    runs = {s.name: s for s in by_op(tel, names.OP_INVOKE_AGENT)}
    assert sorted(runs) == sorted([f"invoke_agent {flow_name}", "invoke_agent weather crew",
                                   "invoke_agent researcher", "invoke_agent writer"])
    flow, crew = runs[f"invoke_agent {flow_name}"], runs["invoke_agent weather crew"]
    assert flow.parent is None and flow.attributes[names.AGENT_FRAMEWORK] == "crewai"
    steps = {s.attributes[names.AGENT_STEP]: s for s in tel.spans() if s.name.startswith("step ")}
    assert sorted(steps) == ["draft", "research"]
    assert {s.parent.span_id for s in steps.values()} == {flow.context.span_id}
    assert crew.parent.span_id == steps["research"].context.span_id
    [direct] = [s for s in tel.llm_spans() if s.parent.span_id == steps["draft"].context.span_id]
    assert direct.attributes[names.REQUEST_MODEL] == "gpt-4.1"
    assert direct.attributes[names.AGENT_NAME] == flow_name  # the run that call belongs to: the flow's
    # totals: the direct call plus the crew's three, each priced once
    assert flow.attributes[names.RUN_LLM_CALLS] == 4 and flow.attributes[names.RUN_TOOL_CALLS] == 1
    assert flow.attributes[names.RUN_INPUT_TOKENS] == 4 * 200
    assert flow.attributes[names.RUN_OUTPUT_TOKENS] == 4 * 20
    assert flow.attributes[names.RUN_COST_USD] == pytest.approx(GPT41_USD + CREW_USD)
    assert crew.attributes[names.RUN_LLM_CALLS] == 3
    assert crew.attributes[names.RUN_COST_USD] == pytest.approx(CREW_USD)
    assert tel.metric_total(names.METRIC_COST) == pytest.approx(GPT41_USD + CREW_USD)
    assert tel.metric_total(names.METRIC_AGENT_RUN_COST, **{names.AGENT_NAME: flow_name}) == pytest.approx(
        GPT41_USD + CREW_USD)
    assert tel.metric_total(names.METRIC_AGENT_RUNS, **{names.AGENT_FRAMEWORK: "crewai"}) == 4


def test_flow_is_one_run_with_its_steps_crew_and_direct_call_nested_and_totals_on_its_root(tel):
    with crew_server(steps=1) as server:
        result = weather_flow(server).kickoff()
        # draft: gpt-4.1; the crew: researcher's tool call and answer, writer's answer
        assert [r.json["model"] for r in server.requests] == ["gpt-4.1", "gpt-4o-mini", "gpt-4o-mini", "gpt-4.1"]
    assert result == "sunny"
    assert_weather_flow_tree(tel, "WeatherFlow")  # no name given: the class name


@pytest.mark.parametrize("entry", ["kickoff_async", "akickoff"])
def test_async_flow_kickoffs_are_the_same_one_run_named_by_the_flows_name(tel, entry):
    with crew_server(steps=1) as server:
        flow = weather_flow(server, name="weather flow")
        assert asyncio.run(getattr(flow, entry)()) == "sunny"
        assert len(server.requests) == 4
    assert_weather_flow_tree(tel, "weather flow")


def test_flow_kickoff_inside_a_running_event_loop_is_one_run(tel):
    """Flow.kickoff inside a running loop runs the flow in a worker thread with a copy of the context."""

    async def app():
        return weather_flow(server).kickoff()

    with crew_server(steps=1) as server:
        assert asyncio.run(app()) == "sunny"
        assert len(server.requests) == 4
    assert_weather_flow_tree(tel, "WeatherFlow")


def looping_flow(server):
    """A flow that kicks off the weather crew, then routes back to do it again (CrewAI's own ``max_method_calls``
    would end it after 100 rounds, 300 calls; the test expects the guard long before)."""
    from crewai.flow.flow import Flow, router, start

    class LoopingFlow(Flow):
        @start("again")
        def research(self):
            return make_crew(server).kickoff().raw

        @router(research)
        def decide(self):
            return "again"

    return LoopingFlow()


def test_guard_by_flow_name_stops_a_flow_looping_over_crews(tel):
    """Limit 7 calls for the whole flow: two crews (3 calls each) and the first call of the third are sent; the
    third crew's next call (and the first call of each of CrewAI's task retries) is refused before it is sent."""
    set_agent_guard("LoopingFlow", max_llm_calls=7, mode="hard")
    with crew_server(steps=1) as server:
        with pytest.raises(AgentLoopDetected) as caught:
            looping_flow(server).kickoff()
        assert len(server.requests) == 7
    assert caught.value.reason == "max_llm_calls" and caught.value.agent == "LoopingFlow"
    runs = by_op(tel, names.OP_INVOKE_AGENT)
    [flow] = [s for s in runs if s.name == "invoke_agent LoopingFlow"]
    assert flow.attributes[names.RUN_STOPPED_BY] == "max_llm_calls"
    assert flow.attributes[names.RUN_LLM_CALLS] == 7
    assert flow.attributes[names.RUN_COST_USD] == pytest.approx(2 * CREW_USD + MINI_USD)
    assert len([s for s in runs if s.name == "invoke_agent weather crew"]) == 3
    steps = [s.attributes[names.AGENT_STEP] for s in tel.spans() if s.name.startswith("step ")]
    assert sorted(steps) == ["decide", "decide", "research", "research", "research"]
    assert tel.metric_total(names.METRIC_COST) == pytest.approx(2 * CREW_USD + MINI_USD)
    assert tel.metric_total(names.METRIC_LOOP_GUARD_TRIPS, **{names.AGENT_NAME: "LoopingFlow"}) == 1


def test_crewais_internal_flows_are_not_runs_or_steps(tel):
    """Every agent's work runs in CrewAI's AgentExecutor, itself a Flow (``is_crewai_internal``): a plain crew
    stays three runs, with no flow run and no step spans from that machinery."""
    from crewai.agents.agent_executor import AgentExecutor
    from crewai.flow.runtime import Flow

    assert issubclass(AgentExecutor, Flow) and AgentExecutor.is_crewai_internal is True
    with crew_server(steps=1) as server:
        make_crew(server).kickoff()
    assert sorted(s.name for s in by_op(tel, names.OP_INVOKE_AGENT)) == [
        "invoke_agent researcher", "invoke_agent weather crew", "invoke_agent writer"]
    assert [s.name for s in tel.spans() if s.name.startswith("step ")] == []


def test_streaming_flow_is_one_run_with_the_same_tree(tel):
    """``Flow(stream=True).kickoff()`` returns CrewAI's StreamSession, which runs the non-streaming kickoff: that
    one is the run."""
    with crew_server(steps=1) as server:
        session = weather_flow(server, stream=True).kickoff()
        frames = list(session)
        assert len(server.requests) == 4
    assert frames and session.result == "sunny"
    assert_weather_flow_tree(tel, "WeatherFlow")


def test_a_standalone_agent_kickoff_in_a_step_is_a_run_nested_in_that_step(tel):
    from crewai.flow.flow import Flow, start

    with crew_server(steps=1) as server:
        researcher = make_crew(server).agents[0]

        class AgentFlow(Flow):
            @start()
            def ask(self):
                return researcher.kickoff("Find the weather in Paris.").raw

        assert AgentFlow().kickoff() == "sunny"
        assert len(server.requests) == 2  # the researcher's tool call and its answer
    runs = {s.name: s for s in by_op(tel, names.OP_INVOKE_AGENT)}
    assert sorted(runs) == ["invoke_agent AgentFlow", "invoke_agent researcher"]
    [step] = [s for s in tel.spans() if s.name == "step ask"]
    assert step.parent.span_id == runs["invoke_agent AgentFlow"].context.span_id
    assert runs["invoke_agent researcher"].parent.span_id == step.context.span_id
    assert runs["invoke_agent AgentFlow"].attributes[names.RUN_LLM_CALLS] == 2
    assert runs["invoke_agent AgentFlow"].attributes[names.RUN_COST_USD] == pytest.approx(2 * MINI_USD)


def test_a_failing_step_keeps_its_exception_and_marks_its_step_and_the_flow(tel):
    from crewai.flow.flow import Flow, listen, start

    class Failing(Flow):
        @start()
        def fine(self):
            return 1

        @listen(fine)
        def broken(self, value):
            raise KeyError("no such key")

    with pytest.raises(KeyError, match="no such key"):
        Failing().kickoff()
    steps = {s.attributes[names.AGENT_STEP]: s for s in tel.spans() if s.name.startswith("step ")}
    assert sorted(steps) == ["broken", "fine"]
    assert steps["fine"].status.is_unset and names.ERROR_TYPE not in steps["fine"].attributes
    assert not steps["broken"].status.is_ok and steps["broken"].attributes[names.ERROR_TYPE] == "KeyError"
    [flow] = by_op(tel, names.OP_INVOKE_AGENT)
    assert flow.name == "invoke_agent Failing" and flow.attributes[names.ERROR_TYPE] == "KeyError"
    assert flow.attributes[names.RUN_LLM_CALLS] == 0


def test_a_flow_kicked_off_in_a_step_of_another_is_a_nested_run_and_rolls_up(tel):
    from crewai.flow.flow import Flow, start

    with crew_server(steps=1) as server:
        inner = weather_flow(server, name="inner flow")

        class Outer(Flow):
            @start()
            def delegate(self):
                return inner.kickoff()

        assert Outer().kickoff() == "sunny"
        assert len(server.requests) == 4
    runs = {s.name: s for s in by_op(tel, names.OP_INVOKE_AGENT)}
    outer, inner_run = runs["invoke_agent Outer"], runs["invoke_agent inner flow"]
    [step] = [s for s in tel.spans() if s.name == "step delegate"]
    assert outer.parent is None and step.parent.span_id == outer.context.span_id
    assert inner_run.parent.span_id == step.context.span_id
    for run in (outer, inner_run):
        assert run.attributes[names.RUN_LLM_CALLS] == 4
        assert run.attributes[names.RUN_COST_USD] == pytest.approx(GPT41_USD + CREW_USD)
    assert tel.metric_total(names.METRIC_COST) == pytest.approx(GPT41_USD + CREW_USD)


def test_a_flow_paused_for_human_feedback_and_resumed_is_two_runs_with_the_same_flow_id(tel, tmp_path):
    """``@human_feedback`` with a provider that raises HumanFeedbackPending pauses the flow (kickoff returns the
    pending signal; CrewAI does not count it as a failure), its state saved in a SQLite file under tmp_path; a
    later ``from_pending(...).resume(...)`` (often in another process) is a run of its own, linked to the first
    by ``gen_ai.agent.id``, the flow's state id."""
    from crewai import LLM
    from crewai.flow.async_feedback.types import HumanFeedbackPending
    from crewai.flow.flow import Flow, listen, start
    from crewai.flow.human_feedback import human_feedback
    from crewai.flow.persistence.sqlite import SQLiteFlowPersistence

    class Later:
        def request_feedback(self, context, flow):
            raise HumanFeedbackPending(context=context)

    with crew_server() as server:
        def llm():
            return LLM(model="gpt-4.1", base_url=server.base_url + "/v1", api_key="test-key", max_retries=0)

        class Review(Flow):
            @start()
            @human_feedback(message="Publish this?", provider=Later())
            def draft(self):
                return llm().call("Draft it.")

            @listen(draft)
            def publish(self, reviewed):
                return llm().call("Publish it.")

        persistence = SQLiteFlowPersistence(str(tmp_path / "flows.db"))
        paused = Review(persistence=persistence).kickoff()
        assert isinstance(paused, HumanFeedbackPending) and len(server.requests) == 1
        flow_id = paused.context.flow_id
        assert Review.from_pending(flow_id, persistence).resume("looks good") == "sunny"
        assert len(server.requests) == 2
    runs = sorted(by_op(tel, names.OP_INVOKE_AGENT), key=lambda s: s.start_time)
    assert [r.name for r in runs] == ["invoke_agent Review"] * 2
    assert [r.attributes[names.AGENT_ID] for r in runs] == [flow_id, flow_id]
    steps = {s.attributes[names.AGENT_STEP]: s for s in tel.spans() if s.name.startswith("step ")}
    assert sorted(steps) == ["draft", "publish"]
    assert steps["draft"].parent.span_id == runs[0].context.span_id
    assert steps["publish"].parent.span_id == runs[1].context.span_id
    assert steps["draft"].status.is_unset and names.ERROR_TYPE not in runs[0].attributes  # paused, not failed
    for run in runs:
        assert run.attributes[names.RUN_LLM_CALLS] == 1
        assert run.attributes[names.RUN_COST_USD] == pytest.approx(GPT41_USD)
    assert tel.metric_total(names.METRIC_COST) == pytest.approx(2 * GPT41_USD)


def test_flow_totals_and_guard_are_exact_under_an_always_off_sampler(telemetry):
    """Nothing is exported, yet the cost, the flow's run cost and its guard see every call (llmmeter.sampling)."""
    with always_off_telemetry(telemetry) as tel:
        with framework_instrumented(tel, CrewAIInstrumentor()):
            with crew_server(steps=1) as server:
                assert weather_flow(server).kickoff() == "sunny"
                assert len(server.requests) == 4
            set_agent_guard("LoopingFlow", max_llm_calls=7, mode="hard")
            with crew_server(steps=1) as server:
                with pytest.raises(AgentLoopDetected):
                    looping_flow(server).kickoff()
                assert len(server.requests) == 7
        assert tel.spans() == []
        assert tel.metric_total(names.METRIC_COST) == pytest.approx(GPT41_USD + CREW_USD + 2 * CREW_USD + MINI_USD)
        assert tel.metric_total(names.METRIC_AGENT_RUN_COST, **{names.AGENT_NAME: "WeatherFlow"}) == pytest.approx(
            GPT41_USD + CREW_USD)
        assert tel.metric_total(names.METRIC_AGENT_RUN_COST, **{names.AGENT_NAME: "LoopingFlow"}) == pytest.approx(
            2 * CREW_USD + MINI_USD)
