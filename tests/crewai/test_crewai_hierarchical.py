"""Hierarchical CrewAI crews (``Process.hierarchical``) through the real ``crewai`` 1.15 and ``openai`` 2.x SDKs
against the Chat Completions server on 127.0.0.1 (tests/crewai/crew_support.py): CrewAI's manager agent delegates
the task through its delegation tools; the manager's calls and the coworker's are each priced once, the delegation
is an ``execute_tool`` span with the coworker's run inside it, and the totals add up.

Expected costs by hand from OpenAI's published rates (https://openai.com/api/pricing): every reply reports 200 input
and 20 output tokens, so one gpt-4o-mini call ($0.15 / $0.60 per 1M) is $0.000042 and one gpt-4.1 call
($2.00 / $8.00 per 1M) $0.00056.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from crew_support import ASK, DELEGATE, DELEGATION_ARGUMENTS, by_op, make_hierarchical_crew, manager_server
from llmmeter import AgentLoopDetected, names
from llmmeter.frameworks import set_agent_guard
from replay_server import Reply, scripted

MINI_USD = 200 * 0.15e-6 + 20 * 0.60e-6
GPT41_USD = 200 * 2e-6 + 20 * 8e-6
MANAGER = "Crew Manager"  # the role CrewAI 1.15 gives the manager it builds (crewai/translations/en.json)


@pytest.mark.parametrize("delegation", [DELEGATE, ASK])
def test_manager_delegation_is_a_tool_span_with_the_coworkers_run_inside_and_every_call_priced_once(tel, delegation):
    with manager_server(delegations=1, tool=delegation, steps=1) as server:
        result = make_hierarchical_crew(server).kickoff()
        # manager: delegates; researcher: looks up, answers; manager: answers
        assert [r.json["model"] for r in server.requests] == ["gpt-4.1", "gpt-4o-mini", "gpt-4o-mini", "gpt-4.1"]
    assert result.raw == "sunny"
    runs = {s.name: s for s in by_op(tel, names.OP_INVOKE_AGENT)}
    assert sorted(runs) == sorted(["invoke_agent managed crew", f"invoke_agent {MANAGER}", "invoke_agent researcher"])
    crew, manager, researcher = (runs["invoke_agent managed crew"], runs[f"invoke_agent {MANAGER}"],
                                 runs["invoke_agent researcher"])
    assert crew.parent is None and manager.parent.span_id == crew.context.span_id
    tools = {s.attributes[names.TOOL_NAME]: s for s in by_op(tel, names.OP_EXECUTE_TOOL)}
    assert sorted(tools) == sorted([delegation, "lookup"])
    delegated = tools[delegation]
    assert delegated.name == f"execute_tool {delegation}" and delegated.attributes[names.TOOL_CALL_ID] == "call_m0"
    assert delegated.parent.span_id == manager.context.span_id
    assert researcher.parent.span_id == delegated.context.span_id  # the coworker's run inside the delegation
    assert tools["lookup"].parent.span_id == researcher.context.span_id
    chats = tel.llm_spans()
    assert len(chats) == len(server.requests) == 4
    assert sorted((s.parent.span_id, s.attributes[names.REQUEST_MODEL]) for s in chats) == sorted(
        [(manager.context.span_id, "gpt-4.1")] * 2 + [(researcher.context.span_id, "gpt-4o-mini")] * 2)
    assert researcher.attributes[names.RUN_LLM_CALLS] == 2 and researcher.attributes[names.RUN_TOOL_CALLS] == 1
    assert researcher.attributes[names.RUN_COST_USD] == pytest.approx(2 * MINI_USD)
    # the manager's run holds its own two calls and, nested, the researcher's
    assert manager.attributes[names.RUN_LLM_CALLS] == 4 and manager.attributes[names.RUN_TOOL_CALLS] == 2
    assert crew.attributes[names.RUN_LLM_CALLS] == 4 and crew.attributes[names.RUN_TOOL_CALLS] == 2
    assert crew.attributes[names.RUN_INPUT_TOKENS] == 4 * 200 and crew.attributes[names.RUN_OUTPUT_TOKENS] == 4 * 20
    assert crew.attributes[names.RUN_COST_USD] == pytest.approx(2 * GPT41_USD + 2 * MINI_USD)
    assert tel.metric_total(names.METRIC_COST) == pytest.approx(2 * GPT41_USD + 2 * MINI_USD)
    assert tel.metric_total(names.METRIC_AGENT_RUN_COST, **{names.AGENT_NAME: MANAGER}) == pytest.approx(
        2 * GPT41_USD + 2 * MINI_USD)


def test_two_delegations_are_two_coworker_runs_and_the_totals_add_up(tel):
    with manager_server(delegations=2, steps=1) as server:
        make_hierarchical_crew(server).kickoff()
        # manager, researcher x2, manager, researcher x2, manager
        assert [r.json["model"] for r in server.requests] == [
            "gpt-4.1", "gpt-4o-mini", "gpt-4o-mini", "gpt-4.1", "gpt-4o-mini", "gpt-4o-mini", "gpt-4.1"]
    runs = by_op(tel, names.OP_INVOKE_AGENT)
    researchers = [s for s in runs if s.name == "invoke_agent researcher"]
    assert len(researchers) == 2
    delegations = [s for s in by_op(tel, names.OP_EXECUTE_TOOL) if s.attributes[names.TOOL_NAME] == DELEGATE]
    assert sorted(s.attributes[names.TOOL_CALL_ID] for s in delegations) == ["call_m0", "call_m1"]
    assert {r.parent.span_id for r in researchers} == {d.context.span_id for d in delegations}
    [crew] = [s for s in runs if s.name == "invoke_agent managed crew"]
    assert crew.attributes[names.RUN_LLM_CALLS] == 7 and crew.attributes[names.RUN_TOOL_CALLS] == 4
    assert crew.attributes[names.RUN_COST_USD] == pytest.approx(3 * GPT41_USD + 4 * MINI_USD)
    assert tel.metric_total(names.METRIC_COST) == pytest.approx(3 * GPT41_USD + 4 * MINI_USD)


def kickoff(crew, entry):
    return crew.kickoff() if entry == "kickoff" else asyncio.run(getattr(crew, entry)())


@pytest.mark.parametrize("entry", ["kickoff", "akickoff"])
def test_hard_guard_on_a_delegated_coworker_stops_the_crew(tel, entry):
    """CrewAI turns the coworker's AgentLoopDetected into text for the manager (its delegation tool catches every
    error), so without more the manager delegates again to a fresh researcher run, five times, until CrewAI's own
    repeated-call check ends the crew with 15 requests sent. llmmeter keeps the refusal on the manager's run: its
    next call, and the first of each of CrewAI's retries, is refused, and kickoff raises the guard's error.
    Sent: the manager's delegation (gpt-4.1) and the researcher's 2 calls (gpt-4o-mini)."""
    set_agent_guard("researcher", max_llm_calls=2, mode="hard")
    with manager_server(delegations=10**6, steps=10**6, vary=True) as server:
        with pytest.raises(AgentLoopDetected) as caught:
            kickoff(make_hierarchical_crew(server), entry)
        assert [r.json["model"] for r in server.requests] == ["gpt-4.1", "gpt-4o-mini", "gpt-4o-mini"]
    assert type(caught.value) is AgentLoopDetected
    assert (caught.value.agent, caught.value.reason, caught.value.limit) == ("researcher", "max_llm_calls", 2)
    runs = {s.name: s for s in by_op(tel, names.OP_INVOKE_AGENT)}
    assert sorted(runs) == sorted(["invoke_agent managed crew", f"invoke_agent {MANAGER}", "invoke_agent researcher"])
    assert runs["invoke_agent researcher"].attributes[names.RUN_STOPPED_BY] == "max_llm_calls"
    assert runs[f"invoke_agent {MANAGER}"].attributes[names.RUN_STOPPED_BY] == "max_llm_calls"
    [delegated] = [s for s in by_op(tel, names.OP_EXECUTE_TOOL) if s.attributes[names.TOOL_NAME] == DELEGATE]
    assert delegated.attributes[names.ERROR_TYPE] == "AgentLoopDetected"
    assert not delegated.status.is_ok
    crew = runs["invoke_agent managed crew"]
    assert crew.attributes[names.RUN_LLM_CALLS] == 3
    assert crew.attributes[names.RUN_COST_USD] == pytest.approx(GPT41_USD + 2 * MINI_USD)
    assert tel.metric_total(names.METRIC_COST) == pytest.approx(GPT41_USD + 2 * MINI_USD)
    # refused, never sent: the researcher's next call and the manager's next call, then the first call of each of
    # CrewAI's two retries of each (max_retry_limit 2)
    blocked = [s for s in tel.llm_spans() if s.attributes.get(names.LLMMETER_BLOCKED) is True]
    assert sorted(s.attributes[names.REQUEST_MODEL] for s in blocked) == ["gpt-4.1"] * 3 + ["gpt-4o-mini"] * 3
    assert tel.metric_total(names.METRIC_LOOP_GUARD_TRIPS, **{names.AGENT_NAME: "researcher"}) == 1


def test_guard_by_crew_name_covers_the_manager_and_its_coworkers(tel):
    """Limit 5 calls for the whole crew: the manager's delegation and the researcher's first 4 calls are sent."""
    set_agent_guard("managed crew", max_llm_calls=5, mode="hard")
    with manager_server(delegations=10**6, steps=10**6, vary=True) as server:
        with pytest.raises(AgentLoopDetected) as caught:
            make_hierarchical_crew(server).kickoff()
        assert [r.json["model"] for r in server.requests] == ["gpt-4.1"] + ["gpt-4o-mini"] * 4
    assert (caught.value.agent, caught.value.reason) == ("managed crew", "max_llm_calls")
    [crew] = [s for s in by_op(tel, names.OP_INVOKE_AGENT) if s.name == "invoke_agent managed crew"]
    assert crew.attributes[names.RUN_STOPPED_BY] == "max_llm_calls" and crew.attributes[names.RUN_LLM_CALLS] == 5
    assert tel.metric_total(names.METRIC_COST) == pytest.approx(GPT41_USD + 4 * MINI_USD)


# o1-mini has no native function calling in CrewAI: manager and coworker use CrewAI's ReAct text protocol.
# $1.10 / $4.40 per 1M input / output tokens (https://openai.com/api/pricing).
O1_MINI_USD = 200 * 1.10e-6 + 20 * 4.40e-6


def react_reply(request):
    """The manager (its prompt lists the delegation tool) delegates once, then answers; the researcher looks the
    weather up until it has seen the result, then answers. Decided from the conversation alone."""
    body = request.json or {}
    messages = body.get("messages") or []
    text = json.dumps(messages)
    if "Tool Name: delegate_work_to_coworker" in text:
        if any(m.get("role") == "assistant" for m in messages):
            content = "Thought: I now know the final answer\nFinal Answer: sunny"
        else:
            content = ("Thought: the researcher can do it\nAction: delegate_work_to_coworker\nAction Input: "
                       + json.dumps(DELEGATION_ARGUMENTS[DELEGATE]))
    elif "Paris: sunny" not in text:
        content = 'Thought: I need the weather\nAction: lookup\nAction Input: {"city": "Paris"}'
    else:
        content = "Thought: I now know the final answer\nFinal Answer: sunny"
    return Reply.json({"id": "c", "object": "chat.completion", "created": 1, "model": body.get("model"),
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                    "finish_reason": "stop"}],
                       "usage": {"prompt_tokens": 200, "completion_tokens": 20, "total_tokens": 220}})


def react_crew(server):
    from crewai import LLM, Agent, Crew, Process, Task
    from crewai.tools import tool

    @tool("lookup")
    def lookup(city: str) -> str:
        """Look up the weather of a city."""
        return f"{city}: sunny"

    def llm():
        return LLM(model="o1-mini", base_url=server.base_url + "/v1", api_key="test-key", max_retries=0)

    researcher = Agent(role="researcher", goal="Find the weather", backstory="A meteorologist.", llm=llm(),
                       tools=[lookup])
    task = Task(description="Find the weather in Paris.", expected_output="The weather.")
    return Crew(agents=[researcher], tasks=[task], process=Process.hierarchical, manager_llm=llm(),
                name="react crew")


def test_react_text_delegation_is_a_tool_span_with_the_coworkers_run_inside(tel):
    with scripted(react_reply) as server:
        assert react_crew(server).kickoff().raw == "sunny"
        assert len(server.requests) == 4  # manager, researcher x2, manager
        assert all("tools" not in r.json for r in server.requests)  # really the text protocol
    runs = {s.name: s for s in by_op(tel, names.OP_INVOKE_AGENT)}
    assert sorted(runs) == sorted(["invoke_agent react crew", f"invoke_agent {MANAGER}", "invoke_agent researcher"])
    tools = {s.attributes[names.TOOL_NAME]: s for s in by_op(tel, names.OP_EXECUTE_TOOL)}
    assert sorted(tools) == sorted([DELEGATE, "lookup"])
    assert tools[DELEGATE].parent.span_id == runs[f"invoke_agent {MANAGER}"].context.span_id
    assert runs["invoke_agent researcher"].parent.span_id == tools[DELEGATE].context.span_id
    assert runs["invoke_agent react crew"].attributes[names.RUN_COST_USD] == pytest.approx(4 * O1_MINI_USD)
    assert tel.metric_total(names.METRIC_COST) == pytest.approx(4 * O1_MINI_USD)


def test_react_text_delegation_stopped_by_the_coworkers_hard_guard_stops_the_crew(tel):
    """The researcher may send 1 call: its lookup request goes out, its next call is refused, and so is the
    manager's next call (sent: the manager's delegation and the researcher's one call)."""
    set_agent_guard("researcher", max_llm_calls=1, mode="hard")
    with scripted(react_reply) as server:
        with pytest.raises(AgentLoopDetected) as caught:
            react_crew(server).kickoff()
        assert len(server.requests) == 2
    assert (caught.value.agent, caught.value.reason) == ("researcher", "max_llm_calls")
    [delegated] = [s for s in by_op(tel, names.OP_EXECUTE_TOOL) if s.attributes[names.TOOL_NAME] == DELEGATE]
    assert delegated.attributes[names.ERROR_TYPE] == "AgentLoopDetected"
    [manager] = [s for s in by_op(tel, names.OP_INVOKE_AGENT) if s.name == f"invoke_agent {MANAGER}"]
    assert manager.attributes[names.RUN_STOPPED_BY] == "max_llm_calls"
    assert tel.metric_total(names.METRIC_COST) == pytest.approx(2 * O1_MINI_USD)
