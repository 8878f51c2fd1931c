"""OpenAI Agents SDK runs through the real ``openai-agents`` and ``openai`` SDKs, replaying recorded Responses
API traffic (tests/cassettes/openai-agents, from OpenLLMetry's test suite) from a server on 127.0.0.1.

Expected token counts and costs come from the recordings' ``usage`` blocks and gpt-4.1's documented price
($2.00 / 1M input, $8.00 / 1M output tokens, https://openai.com/api/pricing), never from llmmeter.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from contextlib import contextmanager

import openai
import pytest
from agents import Agent, RunConfig, Runner, function_tool, set_trace_processors
from agents.models.openai_responses import OpenAIResponsesModel
from guard_support import guarded
from llmmeter import AgentLoopDetected, names
from llmmeter.frameworks import _runs, clear_agent_guards, guards, set_agent_guard
from llmmeter.frameworks.openai_agents import OpenAIAgentsInstrumentor
from opentelemetry.trace import StatusCode
from replay_server import Reply, load_cassette, replay, scripted

CASSETTES = "openai-agents/tests/cassettes/test_openai_agents/"
GPT41_IN, GPT41_OUT = 2.00 / 1e6, 8.00 / 1e6

# Once, before llmmeter registers its processor: the SDK's default processor would export to OpenAI's trace
# backend. (The SDK has no API to remove one processor; this replaces the list.)
set_trace_processors([])


def usd(input_tokens: int, output_tokens: int) -> float:
    return input_tokens * GPT41_IN + output_tokens * GPT41_OUT


@pytest.fixture
def tel(telemetry):
    clear_agent_guards()
    with guarded(telemetry):
        instrumentor = OpenAIAgentsInstrumentor()
        instrumentor.instrument()
        try:
            yield telemetry
        finally:
            instrumentor.uninstrument()
            clear_agent_guards()


def model(server, name: str = "gpt-4.1") -> OpenAIResponsesModel:
    client = openai.AsyncOpenAI(base_url=server.base_url + "/v1", api_key="test-key", max_retries=0)
    return OpenAIResponsesModel(model=name, openai_client=client)


@function_tool
def get_weather(city: str) -> str:
    """Gets the current weather for a specified city."""
    return "It's cloudy with 15°C"


def weather_agent(server) -> Agent:
    return Agent(
        name="WeatherAgent",
        instructions="You get the weather for a city using the get_weather tool.",
        model=model(server),
        tools=[get_weather],
    )


def by_op(tel, op):
    return [s for s in tel.spans() if s.attributes.get(names.OPERATION) == op]


def test_run_is_an_agent_span_with_tool_span_and_priced_model_calls_under_it(tel):
    with replay(CASSETTES + "test_agent_with_function_tool_spans.yaml") as server:
        result = asyncio.run(Runner.run(weather_agent(server), "What is the weather in London?"))
    assert "cloudy" in result.final_output

    [root] = by_op(tel, names.OP_INVOKE_AGENT)
    [tool] = by_op(tel, names.OP_EXECUTE_TOOL)
    llm = tel.llm_spans()
    assert len(llm) == 2  # one span per model call: priced once, by the openai instrumentor
    assert root.name == "invoke_agent WeatherAgent"
    assert root.attributes[names.AGENT_NAME] == "WeatherAgent"
    assert root.attributes[names.AGENT_FRAMEWORK] == "openai-agents"
    assert tool.name == "execute_tool get_weather" and tool.attributes[names.TOOL_NAME] == "get_weather"
    for child in [tool, *llm]:
        assert child.parent.span_id == root.context.span_id
    # recording: 72 + 101 input tokens, 15 + 17 output tokens
    assert root.attributes[names.RUN_LLM_CALLS] == 2
    assert root.attributes[names.RUN_TOOL_CALLS] == 1
    assert root.attributes[names.RUN_INPUT_TOKENS] == 173
    assert root.attributes[names.RUN_OUTPUT_TOKENS] == 32
    assert root.attributes[names.RUN_COST_USD] == pytest.approx(usd(173, 32))
    assert tel.metric_total(names.METRIC_COST) == pytest.approx(usd(173, 32))
    assert tel.metric_total(names.METRIC_AGENT_RUNS, **{names.AGENT_FRAMEWORK: "openai-agents"}) == 1


def test_run_sync_is_one_run(tel):
    with replay(CASSETTES + "test_agent_with_function_tool_spans.yaml") as server:
        Runner.run_sync(weather_agent(server), "What is the weather in London?")
    [root] = by_op(tel, names.OP_INVOKE_AGENT)  # run_sync calls run(): still one run, not two
    assert root.attributes[names.RUN_LLM_CALLS] == 2
    assert root.attributes[names.RUN_COST_USD] == pytest.approx(usd(173, 32))


def test_handoff_is_visible_and_the_new_agent_is_a_nested_run(tel):
    agent_a = Agent(name="AgentA", instructions="Agent A does something.", model=None)
    agent_b = Agent(name="AgentB", instructions="Agent B does something.", model=None)
    with replay(CASSETTES + "test_agent_with_handoff_spans.yaml") as server:
        agent_a.model = agent_b.model = model(server)
        triage = Agent(
            name="TriageAgent", instructions="You decide which agent to handoff to.",
            handoffs=[agent_a, agent_b], model=model(server),
        )
        asyncio.run(Runner.run(triage, "Please handoff to agent A"))

    spans = {s.name: s for s in tel.spans()}
    root, nested = spans["invoke_agent TriageAgent"], spans["invoke_agent AgentA"]
    handoff = spans["handoff AgentA"]
    assert handoff.attributes[names.HANDOFF_FROM] == "TriageAgent"
    assert handoff.attributes[names.HANDOFF_TO] == "AgentA"
    assert handoff.parent.span_id == root.context.span_id
    assert nested.parent.span_id == root.context.span_id
    first, second = sorted(tel.llm_spans(), key=lambda s: s.start_time)
    assert first.parent.span_id == root.context.span_id
    assert second.parent.span_id == nested.context.span_id
    # recording: triage 159 in / 13 out, AgentA 57 in / 36 out; the root's totals include the nested run
    assert nested.attributes[names.RUN_LLM_CALLS] == 1
    assert nested.attributes[names.RUN_COST_USD] == pytest.approx(usd(57, 36))
    assert root.attributes[names.RUN_LLM_CALLS] == 2
    assert root.attributes[names.RUN_INPUT_TOKENS] == 159 + 57
    assert root.attributes[names.RUN_COST_USD] == pytest.approx(usd(216, 49))
    assert tel.metric_total(names.METRIC_COST) == pytest.approx(usd(216, 49))  # not counted twice


@function_tool
def compose_music(style: str, key: str) -> str:
    """Composes a piece."""
    return f"A {style} in {key}"


def test_streamed_run_ends_its_span_with_the_stream_and_carries_totals(tel):
    async def main(server):
        composer = Agent(
            name="Symphony Composer",
            instructions="You compose and arrange symphonic music pieces using your composition tools.",
            tools=[compose_music], model=model(server, "gpt-4o"),
        )
        conductor = Agent(
            name="Conductor",
            instructions="You coordinate musical performances. When users ask for composition, hand off to the "
            "Symphony Composer.",
            handoffs=[composer], model=model(server, "gpt-4o"),
        )
        result = Runner.run_streamed(conductor, "Can you create a new symphony in D major?")
        kinds = [event.type async for event in result.stream_events()]
        return kinds

    with replay(CASSETTES + "test_music_composer_handoff_hierarchy.yaml") as server:
        kinds = asyncio.run(main(server))
    assert "raw_response_event" in kinds
    spans = {s.name: s for s in tel.spans()}
    root = spans["invoke_agent Conductor"]
    assert spans["execute_tool compose_music"].parent.span_id == spans["invoke_agent Symphony Composer"].context.span_id
    # recording: 75+119+157 input, 16+38+30 output
    assert root.attributes[names.RUN_LLM_CALLS] == 3
    assert root.attributes[names.RUN_TOOL_CALLS] == 1
    # The SDK streams through `responses.with_streaming_response`: measured from the stream's usage, exactly.
    llm = tel.llm_spans()
    assert len(llm) == 3
    assert not any(s.attributes.get(names.LLMMETER_ESTIMATED) for s in llm)
    # recording (response.completed usage): 75+119+157 input, 16+38+30 output tokens
    assert root.attributes[names.RUN_INPUT_TOKENS] == 351
    assert root.attributes[names.RUN_OUTPUT_TOKENS] == 84
    # this recording was answered by gpt-4o-2024-08-06 (the response's model is what is priced): $2.50 / $10.00 per 1M
    gpt4o = 351 * 2.50 / 1e6 + 84 * 10.00 / 1e6
    assert {s.attributes[names.RESPONSE_MODEL] for s in llm} == {"gpt-4o-2024-08-06"}
    assert root.attributes[names.RUN_COST_USD] == pytest.approx(gpt4o)
    assert tel.metric_total(names.METRIC_COST) == pytest.approx(gpt4o)
    assert root.status.status_code is not StatusCode.ERROR


@contextmanager
def loop_server():
    """The recorded first reply (get_weather(London)) again and again, each with a new call id: the SDK runs
    every call (it skips a call id it has already executed), so the agent loops on one identical tool call."""
    recorded = load_cassette(CASSETTES + "test_agent_with_function_tool_spans.yaml")[0].response_json
    counter = itertools.count()

    def reply(request):
        body = json.loads(json.dumps(recorded))
        n = next(counter)
        body["id"] = f"resp_loop_{n}"
        body["output"][0]["id"], body["output"][0]["call_id"] = f"fc_loop_{n}", f"call_loop_{n}"
        if (request.json or {}).get("stream"):  # the same reply as the Responses API streams it
            started = {**body, "status": "in_progress", "output": [], "usage": None}
            return Reply.sse([{"type": "response.created", "sequence_number": 0, "response": started},
                              {"type": "response.completed", "sequence_number": 1, "response": body}], done=False)
        return Reply.json(body)

    with scripted(reply) as server:
        server.requests_seen = counter
        yield server


def looping(server, name="Looper") -> Agent:
    return Agent(name=name, instructions="loop", model=model(server), tools=[get_weather])


def test_hard_guard_stops_a_looping_run_with_agent_loop_detected(tel):
    set_agent_guard("Looper", max_repeated_tool_calls=3, mode="hard")
    # index 0 forever: the model asks for get_weather(London) again and again
    with loop_server() as server:
        with pytest.raises(AgentLoopDetected) as caught:
            asyncio.run(Runner.run(looping(server), "weather?", max_turns=50))
        assert len(server.requests) == 3  # the 4th model call was refused before it was sent
    assert caught.value.reason == "repeated_tool_call"
    [root] = by_op(tel, names.OP_INVOKE_AGENT)
    assert root.attributes[names.RUN_STOPPED_BY] == "repeated_tool_call"
    assert root.attributes[names.RUN_TOOL_CALLS] == 3
    assert root.attributes[names.RUN_LLM_CALLS] == 3
    assert [e.name for e in root.events] == [names.EVENT_LOOP_GUARD]
    assert tel.metric_total(names.METRIC_AGENT_RUNS, **{names.LABEL_STATUS: "blocked"}) == 1


def test_hard_guard_ends_a_streamed_run_through_stream_events(tel):
    set_agent_guard("*", max_llm_calls=2, mode="hard")

    async def main(server):
        result = Runner.run_streamed(looping(server), "weather?", max_turns=50)
        seen = 0
        with pytest.raises(AgentLoopDetected) as caught:
            async for _ in result.stream_events():
                seen += 1
        return seen, caught.value

    with loop_server() as server:
        seen, error = asyncio.run(main(server))
        assert len(server.requests) == 2
    assert seen > 0 and error.reason == "max_llm_calls"
    [root] = by_op(tel, names.OP_INVOKE_AGENT)
    assert root.attributes[names.RUN_STOPPED_BY] == "max_llm_calls"
    assert root.attributes[names.RUN_LLM_CALLS] == 2
    assert root.end_time is not None


def test_soft_guard_reports_and_lets_the_run_finish(tel):
    set_agent_guard("Looper", max_repeated_tool_calls=2, mode="soft")
    with loop_server() as server:
        from agents.exceptions import MaxTurnsExceeded

        with pytest.raises(MaxTurnsExceeded):  # the framework's own limit ends it, not llmmeter
            asyncio.run(Runner.run(looping(server), "weather?", max_turns=4))
        assert len(server.requests) == 4
    [root] = by_op(tel, names.OP_INVOKE_AGENT)
    assert names.RUN_STOPPED_BY not in root.attributes
    assert [e.attributes[names.LABEL_GUARD] for e in root.events] == ["repeated_tool_call"]
    assert tel.metric_total(names.METRIC_LOOP_GUARD_TRIPS, **{names.AGENT_NAME: "Looper"}) == 1


def test_guard_file_is_read_by_agent_name(tel, tmp_path, monkeypatch):
    path = tmp_path / "guards.yaml"
    path.write_text("'*': {max_llm_calls: 100}\nLooper: {max_llm_calls: 1, mode: hard}\n")
    monkeypatch.setenv(guards.ENV_AGENT_GUARDS, str(path))
    clear_agent_guards()
    with loop_server() as server:
        with pytest.raises(AgentLoopDetected):
            asyncio.run(Runner.run(looping(server), "weather?", max_turns=50))
        assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Looper: {max_calls: 3}\n", "agent 'Looper': unknown field(s) max_calls"),
        ("Looper: {max_llm_calls: -1}\n", "agent 'Looper': field max_llm_calls: expected a positive number, got -1"),
        ("Looper: {mode: loud}\n", "agent 'Looper': field mode: expected 'soft' or 'hard', got 'loud'"),
        ("- a\n", "expected a mapping of agent name -> limits"),
    ],
)
def test_bad_guard_file_fails_at_instrument_time_naming_file_agent_and_field(telemetry, tmp_path, monkeypatch,
                                                                             text, message):
    path = tmp_path / "guards.yaml"
    path.write_text(text)
    monkeypatch.setenv(guards.ENV_AGENT_GUARDS, str(path))
    clear_agent_guards()
    try:
        with pytest.raises(ValueError) as caught:
            OpenAIAgentsInstrumentor().instrument()
        assert str(path) in str(caught.value) and message in str(caught.value)
    finally:
        OpenAIAgentsInstrumentor().uninstrument()
        monkeypatch.delenv(guards.ENV_AGENT_GUARDS)
        clear_agent_guards()


def test_unknown_sdk_version_instruments_what_is_there_and_logs_once(tel, caplog):
    targets = (
        ("agents.run", "AgentRunner.run_renamed_in_some_release", lambda *a: None),
        ("agents.no_such_module", "Runner.run", lambda *a: None),
    )
    with caplog.at_level(logging.INFO, logger="llmmeter.frameworks"):
        assert _runs.wrap_targets("openai-agents", targets) == []
        assert _runs.wrap_targets("openai-agents", targets) == []
    missing = [r.getMessage() for r in caplog.records if "not found" in r.getMessage()]
    assert len(missing) == 2  # once each, not once per attempt
    assert any("AgentRunner.run_renamed_in_some_release" in m for m in missing)
    # the methods that do exist are still instrumented: a run still works and is still measured
    with replay(CASSETTES + "test_agent_with_function_tool_spans.yaml") as server:
        asyncio.run(Runner.run(weather_agent(server), "What is the weather in London?"))
    assert len(by_op(tel, names.OP_INVOKE_AGENT)) == 1


def test_uninstrument_removes_the_run_spans_but_not_the_model_call_spans(tel):
    OpenAIAgentsInstrumentor().uninstrument()
    with replay(CASSETTES + "test_agent_with_function_tool_spans.yaml") as server:
        asyncio.run(Runner.run(weather_agent(server), "What is the weather in London?"))
    assert by_op(tel, names.OP_INVOKE_AGENT) == [] and by_op(tel, names.OP_EXECUTE_TOOL) == []
    assert len(tel.llm_spans()) == 2


def test_trace_config_does_not_matter_to_the_run_totals(tel):
    with replay(CASSETTES + "test_agent_with_function_tool_spans.yaml") as server:
        asyncio.run(Runner.run(weather_agent(server), "What is the weather in London?",
                               run_config=RunConfig(trace_include_sensitive_data=False)))
    [root] = by_op(tel, names.OP_INVOKE_AGENT)
    assert root.attributes[names.RUN_TOOL_CALLS] == 1
    assert root.attributes[names.RUN_COST_USD] == pytest.approx(usd(173, 32))


def test_beside_openinferences_agents_instrumentor_each_call_is_counted_once(tel):
    """OpenInference's Agents SDK instrumentor makes its own `response` spans with `llm.token_count.*` for the
    same model calls (from the SDK's tracing, not around the openai call): the cost is still counted once."""
    from openinference.instrumentation.openai_agents import OpenAIAgentsInstrumentor as OpenInferenceAgents

    other = OpenInferenceAgents()
    # exclusive_processor=False: by default it replaces every Agents SDK trace processor (llmmeter's too) with its own
    other.instrument(tracer_provider=tel.tracer_provider, exclusive_processor=False)
    try:
        with replay(CASSETTES + "test_agent_with_function_tool_spans.yaml") as server:
            asyncio.run(Runner.run(weather_agent(server), "What is the weather in London?"))
    finally:
        other.uninstrument()
    scopes = {s.instrumentation_scope.name for s in tel.spans()}
    assert "openinference.instrumentation.openai_agents" in scopes  # the other instrumentor really ran
    assert tel.metric_total(names.METRIC_COST) == pytest.approx(usd(173, 32))
    [root] = by_op(tel, names.OP_INVOKE_AGENT)
    assert root.attributes[names.RUN_LLM_CALLS] == 2
    assert root.attributes[names.RUN_TOOL_CALLS] == 1  # llmmeter's processor still sees the tool


def test_check_config_names_a_bad_agent_guards_file(tmp_path):
    """`llmmeter check-config` (the start-up check) fails on a bad LLMMETER_AGENT_GUARDS file, naming it."""
    import os
    import subprocess
    import sys

    path = tmp_path / "guards.yaml"
    path.write_text("triage: {max_llm_calls: 0}\n")
    env = {**os.environ, guards.ENV_AGENT_GUARDS: str(path), "COLUMNS": "1000"}  # rich wraps at the width
    done = subprocess.run([sys.executable, "-m", "llmmeter.cli", "check-config"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert str(path) in done.stderr and "max_llm_calls" in done.stderr
