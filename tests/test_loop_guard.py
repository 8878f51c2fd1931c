"""Loop guard: per-run limits on LLM calls, tokens, cost and identical tool calls; soft mode reports,
hard mode refuses the run's next LLM call before it is sent (the server's request count proves it)."""

from __future__ import annotations

import llmmeter.agents as agents
import pytest
from guard_support import CountingServer, chat, guarded
from llmmeter import names
from llmmeter.errors import AgentLoopDetected
from llmmeter.hooks import GuardError


@pytest.fixture
def tel(telemetry):
    with guarded(telemetry), CountingServer(10, 5) as server:
        telemetry.server = server
        yield telemetry


def guard_events(tel, agent_name):
    [span] = [s for s in tel.spans() if s.name == f"invoke_agent {agent_name}"]
    return span, [e for e in span.events if e.name == names.EVENT_LOOP_GUARD]


def test_max_llm_calls_hard_refuses_the_next_call_before_sending(tel):
    client = tel.server.client()
    with agents.agent("bot", max_llm_calls=3) as run:
        for _ in range(3):
            chat(client)
        with pytest.raises(AgentLoopDetected) as info:
            chat(client)
        with pytest.raises(GuardError):
            chat(client)
    assert tel.server.requests == 3
    assert (info.value.agent, info.value.reason, info.value.limit, info.value.value) == ("bot", "max_llm_calls", 3, 4)
    assert run.stopped_by == "max_llm_calls"
    span, [event] = guard_events(tel, "bot")
    assert event.attributes[names.LABEL_GUARD] == "max_llm_calls"
    assert span.attributes[names.RUN_STOPPED_BY] == "max_llm_calls"
    assert span.attributes[names.RUN_LLM_CALLS] == 3  # refused calls are not calls
    assert tel.metric_total(names.METRIC_LOOP_GUARD_TRIPS, **{names.LABEL_GUARD: "max_llm_calls"}) == 1
    assert tel.metric_total(names.METRIC_AGENT_RUNS, **{names.LABEL_STATUS: "blocked"}) == 1


def test_soft_mode_reports_once_and_lets_calls_through(tel):
    client = tel.server.client()
    with agents.agent("bot", max_llm_calls=2, mode="soft"):
        for _ in range(5):
            chat(client)
    assert tel.server.requests == 5
    span, events = guard_events(tel, "bot")
    assert len(events) == 1 and events[0].attributes[names.LOOP_GUARD_MODE] == "soft"
    assert names.RUN_STOPPED_BY not in span.attributes
    assert tel.metric_total(names.METRIC_LOOP_GUARD_TRIPS) == 1


def test_max_tokens_and_max_cost(tel):
    client = tel.server.client()
    with agents.agent("tokens", max_tokens=40):
        chat(client)
        chat(client)  # 30 tokens: under
        chat(client)  # 45 tokens: crossed
        with pytest.raises(AgentLoopDetected, match="max_tokens"):
            chat(client)
    assert tel.server.requests == 3
    with agents.agent("cost", max_cost_usd=1e-9):
        chat(client)
        with pytest.raises(AgentLoopDetected, match="max_cost_usd"):
            chat(client)
    assert tel.server.requests == 4


def test_repeated_identical_tool_calls(tel):
    client = tel.server.client()

    @agents.tool("search")
    def search(query: str) -> str:
        return "nothing"

    with agents.agent("looper", max_repeated_tool_calls=3) as run:
        chat(client)
        search("a")
        search(query="b")  # different arguments: a different call
        search("a")
        run.record_tool_call("search", {"query": "a"})  # the helper counts like the decorator
        with pytest.raises(AgentLoopDetected) as info:
            chat(client)
    assert info.value.reason == "repeated_tool_call" and info.value.detail == "search"
    assert run.tool_calls == 4
    _, [event] = guard_events(tel, "looper")
    assert event.attributes[names.LOOP_GUARD_DETAIL] == "search"
    assert event.attributes[names.LOOP_GUARD_VALUE] == 3


def test_parent_limits_cover_nested_runs(tel):
    client = tel.server.client()
    with agents.agent("parent", max_llm_calls=2):
        with agents.agent("child") as child:
            chat(client)
            chat(client)
            with pytest.raises(AgentLoopDetected) as info:
                chat(client)
    assert info.value.agent == "parent" and child.stopped_by == "max_llm_calls"
    assert tel.server.requests == 2


def test_calls_outside_a_run_are_not_guarded(tel):
    client = tel.server.client()
    with agents.agent("bot", max_llm_calls=1):
        chat(client)
    for _ in range(3):
        chat(client)
    assert tel.server.requests == 4


def test_bad_limits_are_refused():
    with pytest.raises(ValueError, match="max_llm_calls"):
        agents.agent("x", max_llm_calls=0)
    with pytest.raises(ValueError, match="mode"):
        agents.agent("x", mode="strict")
