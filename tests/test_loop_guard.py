"""Loop guard: per-run limits on LLM calls, tokens, cost and identical tool calls; soft mode reports,
hard mode refuses the run's next LLM call before it is sent (the server's request count proves it)."""

from __future__ import annotations

import contextvars
import logging
import threading
import time

import llmmeter.agents as agents
import pytest
from guard_support import CountingServer, chat, guarded, wave
from llmmeter import hooks, names
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


def test_max_llm_calls_hard_refuses_the_next_call_before_sending(tel, caplog):
    client = tel.server.client()
    caplog.set_level(logging.WARNING, logger="llmmeter.agents")
    with agents.agent("bot", max_llm_calls=3) as run:
        for _ in range(3):
            chat(client)
        with pytest.raises(AgentLoopDetected) as info:
            chat(client)
        with pytest.raises(GuardError):
            chat(client)
    assert tel.server.requests == 3
    # value: what was sent (3), not the refused attempt (4); the message says which is which.
    assert (info.value.agent, info.value.reason, info.value.limit, info.value.value) == ("bot", "max_llm_calls", 3, 3)
    assert "3 LLM calls sent (limit 3); this call was refused" in str(info.value)
    assert [r.getMessage() for r in caplog.records] == [
        "llmmeter loop guard: agent 'bot' reached max_llm_calls: 3 LLM calls sent (limit 3); the next one was refused"]
    assert run.stopped_by == "max_llm_calls"
    span, [event] = guard_events(tel, "bot")
    assert event.attributes[names.LABEL_GUARD] == "max_llm_calls"
    assert event.attributes[names.LOOP_GUARD_VALUE] == 3
    assert span.attributes[names.RUN_STOPPED_BY] == "max_llm_calls"
    assert span.attributes[names.RUN_LLM_CALLS] == 3  # refused calls are not calls
    assert tel.metric_total(names.METRIC_LOOP_GUARD_TRIPS, **{names.LABEL_GUARD: "max_llm_calls"}) == 1
    assert tel.metric_total(names.METRIC_AGENT_RUNS, **{names.LABEL_STATUS: "blocked"}) == 1


def test_max_llm_calls_2_says_2_sent_and_the_third_refused(tel):
    client = tel.server.client()
    with agents.agent("bot", max_llm_calls=2):
        chat(client)
        chat(client)
        with pytest.raises(AgentLoopDetected) as info:
            chat(client)
    assert tel.server.requests == 2
    assert str(info.value) == ("llmmeter loop guard stopped agent 'bot': 2 LLM calls sent (limit 2); "
                               "this call was refused")


class _YieldingLock:
    """The run's lock, yielding the CPU after every release: any gap between two acquisitions (a check in
    one, the increment in the next) is then a gap other threads do run in, every time, not by luck."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def __enter__(self) -> _YieldingLock:
        self._lock.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self._lock.release()
        time.sleep(0.002)  # not a timing assertion: only widens the window a two-step check would leave


def test_max_llm_calls_check_and_increment_are_atomic_under_threads(tel):
    """50 threads share one run (its context copied into each) with max_llm_calls=5; the server holds
    every admitted call open, so all 50 decide while 0..5 are in flight: exactly 5 are sent."""
    client = tel.server.client()
    with agents.agent("crowd", max_llm_calls=5, mode="hard") as run:
        run._lock = _YieldingLock()
        ctx = contextvars.copy_context()
        sent, refused = wave(tel.server, client, 50, lambda c: ctx.copy().run(chat, c), AgentLoopDetected)
    assert (sent, refused) == (5, 45)
    assert run.llm_calls == 5 and tel.server.requests == 5


@pytest.mark.parametrize("budget_first", [False, True], ids=["agent_hooks_first", "budget_hooks_first"])
def test_a_call_refused_by_a_budget_does_not_count_toward_max_llm_calls(telemetry, budget_first):
    """Whatever the sampler: with ALWAYS_OFF the spans record nothing, and the refusal must still be known.
    Hooks run in registration order: whichever guard runs first, the budget's refusal is not a run call."""
    import llmmeter.attribution as attribution
    from llmmeter import budgets
    from llmmeter.errors import BudgetExceeded
    from llmmeter.instrumentors.openai import OpenAIInstrumentor
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    with guarded(telemetry), CountingServer(10, 5) as server:
        OpenAIInstrumentor().uninstrument()
        OpenAIInstrumentor().instrument(tracer_provider=TracerProvider(sampler=ALWAYS_OFF))
        client = server.client()
        if budget_first:
            hooks.BEFORE_CALL[:] = [h for h in hooks.BEFORE_CALL if getattr(h, "__module__", "") != agents.__name__]
            budgets.add("tenant=acme: 1 calls/day hard")
            agents._install()
        else:  # an earlier test may have registered the budget hook already: put it after the agent's
            hooks.BEFORE_CALL[:] = [h for h in hooks.BEFORE_CALL
                                    if getattr(h, "__module__", "") != "llmmeter.budgets.enforcement"]
            agents._install()
        with attribution.attributes(tenant="acme"), agents.agent("bot", max_llm_calls=2) as run:
            budgets.add("tenant=acme: 1 calls/day hard")
            names_in_order = [getattr(h, "__module__", "") for h in hooks.BEFORE_CALL]
            agent_at, budget_at = names_in_order.index(agents.__name__), names_in_order.index(
                "llmmeter.budgets.enforcement")
            assert (budget_at < agent_at) == budget_first
            chat(client)
            with pytest.raises(BudgetExceeded):
                chat(client)  # refused by the budget: not sent, not an LLM call of the run
            budgets.clear()
            chat(client)  # the run's second call
            with pytest.raises(AgentLoopDetected) as info:
                chat(client)
        assert server.requests == 2
    assert run.llm_calls == 2 and info.value.value == 2


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
    """The limit counts calls with the same arguments: five calls over three argument sets do not trip a
    limit of 3 (a check that ignored arguments would trip at the third call); a third identical one does."""
    client = tel.server.client()

    @agents.tool("search")
    def search(query: str) -> str:
        return "nothing"

    with agents.agent("looper", max_repeated_tool_calls=3) as run:
        chat(client)
        search("a")
        search(query="b")  # different arguments: a different call
        search("c")
        search(query="a")  # same arguments as search("a"), however passed: 2
        with agents.tool("search", arguments={"query": "b"}):  # the context-manager form: "b" twice
            pass
        chat(client)  # 5 tool calls, none repeated 3 times: not tripped
        assert run.trips == {}
        run.record_tool_call("search", {"query": "a"})  # the helper counts like the decorator: "a" 3 times
        with pytest.raises(AgentLoopDetected) as info:
            chat(client)
    assert tel.server.requests == 2
    assert info.value.reason == "repeated_tool_call" and info.value.detail == "search"
    assert run.tool_calls == 6
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
