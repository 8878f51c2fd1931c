"""Agent runs: semconv invoke_agent / execute_tool spans, run totals on the agent span (rolled up through
nested runs), and per-agent metrics, with LLM calls made through the real openai SDK."""

from __future__ import annotations

import asyncio
import threading

import llmmeter.agents as agents
import openai
import pytest
from guard_support import CountingServer, chat, guarded
from llmmeter import names
from llmmeter.pricing import price_usage
from llmmeter.usage import Usage
from opentelemetry.trace import SpanKind, StatusCode

PROMPT, COMPLETION = 10, 5


@pytest.fixture
def tel(telemetry):
    with guarded(telemetry), CountingServer(PROMPT, COMPLETION) as server:
        telemetry.server = server
        yield telemetry


def cost() -> float:
    return price_usage("openai", "gpt-4o-mini", Usage(input=PROMPT, output=COMPLETION)).usd


def by_name(tel, name):
    return [s for s in tel.spans() if s.name == name]


def test_agent_and_tool_spans_follow_semconv_and_carry_totals(tel):
    client = tel.server.client()
    with agents.agent("support", agent_id="a-1") as run:
        chat(client)
        with agents.tool("search", arguments={"q": "x"}, call_id="call_1", tool_type="function"):
            pass
        chat(client)
    assert run.llm_calls == 2

    [agent_span] = by_name(tel, "invoke_agent support")
    [tool_span] = by_name(tel, "execute_tool search")
    assert agent_span.kind is SpanKind.INTERNAL and tool_span.kind is SpanKind.INTERNAL
    assert agent_span.attributes[names.OPERATION] == names.OP_INVOKE_AGENT
    assert agent_span.attributes[names.AGENT_NAME] == "support"
    assert agent_span.attributes[names.AGENT_ID] == "a-1"
    assert tool_span.attributes[names.OPERATION] == names.OP_EXECUTE_TOOL
    assert tool_span.attributes[names.TOOL_NAME] == "search"
    assert tool_span.attributes[names.TOOL_CALL_ID] == "call_1"
    for child in [tool_span, *tel.llm_spans()]:
        assert child.parent.span_id == agent_span.context.span_id
        assert child.context.trace_id == agent_span.context.trace_id

    attrs = agent_span.attributes
    assert attrs[names.RUN_LLM_CALLS] == 2
    assert attrs[names.RUN_TOOL_CALLS] == 1
    assert attrs[names.RUN_INPUT_TOKENS] == 2 * PROMPT
    assert attrs[names.RUN_OUTPUT_TOKENS] == 2 * COMPLETION
    assert attrs[names.RUN_COST_USD] == pytest.approx(2 * cost())
    assert attrs[names.RUN_UNPRICED_CALLS] == 0
    assert agent_span.status.status_code is not StatusCode.ERROR


def test_nested_runs_roll_up_to_the_parent(tel):
    client = tel.server.client()
    with agents.agent("planner") as outer:
        chat(client)
        with agents.agent("researcher") as inner:
            chat(client)
            chat(client)
            with agents.tool("fetch"):
                pass
    assert (inner.llm_calls, inner.tool_calls) == (2, 1)
    assert (outer.llm_calls, outer.tool_calls) == (3, 1)
    [outer_span] = by_name(tel, "invoke_agent planner")
    [inner_span] = by_name(tel, "invoke_agent researcher")
    assert inner_span.parent.span_id == outer_span.context.span_id
    assert outer_span.attributes[names.RUN_LLM_CALLS] == 3
    assert outer_span.attributes[names.RUN_INPUT_TOKENS] == 3 * PROMPT
    assert inner_span.attributes[names.RUN_LLM_CALLS] == 2
    assert outer_span.attributes[names.RUN_COST_USD] == pytest.approx(3 * cost())


def test_decorators_sync_and_async(tel):
    @agents.tool("lookup")
    def lookup(order_id: str) -> str:
        return f"order {order_id}"

    @agents.agent("sync-agent")
    def sync_agent(client) -> str:
        chat(client)
        return lookup("1")

    @agents.tool("alookup")
    async def alookup(order_id: str) -> str:
        await asyncio.sleep(0)
        return order_id

    @agents.agent("async-agent")
    async def async_agent(client) -> str:
        await chat(client)
        return await alookup("2")

    assert sync_agent(tel.server.client()) == "order 1"
    assert asyncio.run(async_agent(tel.server.client(openai.AsyncOpenAI))) == "2"
    for agent_name, tool_name in (("sync-agent", "lookup"), ("async-agent", "alookup")):
        [agent_span] = by_name(tel, f"invoke_agent {agent_name}")
        [tool_span] = by_name(tel, f"execute_tool {tool_name}")
        assert tool_span.parent.span_id == agent_span.context.span_id
        assert agent_span.attributes[names.RUN_LLM_CALLS] == 1
        assert agent_span.attributes[names.RUN_TOOL_CALLS] == 1


def test_decorated_failures_propagate_unchanged_and_end_their_spans_as_errors(tel):
    """A decorated agent/tool that raises: the caller gets the very exception object, and the span says error."""
    boom, aboom = LookupError("no such order"), KeyError("order")

    @agents.tool("failing-lookup")
    def lookup(order_id: str) -> str:
        raise boom

    @agents.agent("failing-async-agent")
    async def async_agent() -> str:
        raise aboom

    with pytest.raises(LookupError) as raised:
        lookup("1")
    assert raised.value is boom
    with pytest.raises(KeyError) as araised:
        asyncio.run(async_agent())
    assert araised.value is aboom
    [tool_span] = by_name(tel, "execute_tool failing-lookup")
    [agent_span] = by_name(tel, "invoke_agent failing-async-agent")
    assert tool_span.attributes[names.ERROR_TYPE] == "LookupError"
    assert agent_span.attributes[names.ERROR_TYPE] == "KeyError"
    assert tool_span.status.status_code is StatusCode.ERROR
    assert agent_span.status.status_code is StatusCode.ERROR


def test_concurrent_async_runs_keep_their_own_totals(tel):
    client = tel.server.client(openai.AsyncOpenAI)

    async def one(name, calls):
        async with agents.agent(name) as run:
            for _ in range(calls):
                await chat(client)
        return run.llm_calls

    async def main():
        return await asyncio.gather(one("a", 1), one("b", 2), one("c", 3))

    assert asyncio.run(main()) == [1, 2, 3]


def test_errors_mark_the_span_and_metrics_count_runs(tel):
    client = tel.server.client()
    with pytest.raises(RuntimeError):
        with agents.agent("flaky"):
            chat(client)
            raise RuntimeError("boom")
    with agents.agent("flaky"):
        chat(client)
        chat(client)
    spans = by_name(tel, "invoke_agent flaky")
    assert spans[0].status.status_code is StatusCode.ERROR
    assert spans[0].attributes[names.ERROR_TYPE] == "RuntimeError"
    assert tel.metric_total(names.METRIC_AGENT_RUNS, **{names.AGENT_NAME: "flaky", names.LABEL_STATUS: "error"}) == 1
    assert tel.metric_total(names.METRIC_AGENT_RUNS, **{names.AGENT_NAME: "flaky", names.LABEL_STATUS: "ok"}) == 1
    [calls] = tel.metric_points(names.METRIC_AGENT_RUN_LLM_CALLS)
    assert calls.count == 2 and calls.sum == 3
    assert list(calls.explicit_bounds) == list(names.CALLS_BUCKETS)
    [run_cost] = tel.metric_points(names.METRIC_AGENT_RUN_COST)
    assert run_cost.sum == pytest.approx(3 * cost())
    assert list(run_cost.explicit_bounds) == list(names.COST_BUCKETS)


def test_unpriced_calls_are_counted_and_keep_cost_out_of_the_histogram(tel):
    client = tel.server.client()
    with agents.agent("labs"):
        client.chat.completions.create(model="acme-internal-llm-2", messages=[{"role": "user", "content": "hi"}])
    [span] = by_name(tel, "invoke_agent labs")
    assert span.attributes[names.RUN_UNPRICED_CALLS] == 1
    assert span.attributes[names.RUN_LLM_CALLS] == 1
    assert tel.metric_points(names.METRIC_AGENT_RUN_COST) == []  # unknown cost is not recorded as 0


def test_one_agent_object_entered_on_two_threads_keeps_two_runs(tel):
    """Thread A enters, thread B enters the same object, A calls and exits, then B calls and exits: each
    exit ends its own run's span (the state of an entry lives in its thread's context, not the object)."""
    shared = agents.agent("shared")
    client = tel.server.client()
    a_entered, b_entered, a_exited = threading.Event(), threading.Event(), threading.Event()
    runs = {}

    def thread_a():
        with shared as run:
            runs["a"] = run
            a_entered.set()
            b_entered.wait(10)
            chat(client)
        a_exited.set()

    def thread_b():
        a_entered.wait(10)
        with shared as run:
            runs["b"] = run
            b_entered.set()
            a_exited.wait(10)
            chat(client)
            chat(client)

    threads = [threading.Thread(target=thread_a), threading.Thread(target=thread_b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert runs["a"] is not runs["b"] and (runs["a"].llm_calls, runs["b"].llm_calls) == (1, 2)
    spans = by_name(tel, "invoke_agent shared")
    assert sorted(s.attributes[names.RUN_LLM_CALLS] for s in spans) == [1, 2]
    for run in runs.values():
        [span] = [s for s in spans if s.context.span_id == run.span.get_span_context().span_id]
        children = [s for s in tel.llm_spans() if s.parent.span_id == span.context.span_id]
        assert len(children) == run.llm_calls  # its calls nest under its own span, which ended after them
        assert all(c.end_time <= span.end_time for c in children)


def test_one_agent_and_tool_object_shared_by_asyncio_tasks(tel):
    shared = agents.agent("worker")
    lookup = agents.tool("lookup", arguments={"q": "x"})
    client = tel.server.client(openai.AsyncOpenAI)

    async def one(calls):
        async with shared as run:
            for _ in range(calls):
                await chat(client)
                with lookup:
                    await asyncio.sleep(0)
        return run.llm_calls, run.tool_calls

    async def main():
        return await asyncio.gather(*(one(n) for n in (1, 2, 3, 4)))

    assert asyncio.run(main()) == [(1, 1), (2, 2), (3, 3), (4, 4)]
    spans = by_name(tel, "invoke_agent worker")
    assert sorted(s.attributes[names.RUN_LLM_CALLS] for s in spans) == [1, 2, 3, 4]
    tools = by_name(tel, "execute_tool lookup")
    assert len(tools) == 10
    agent_ids = {s.context.span_id: s.attributes[names.RUN_TOOL_CALLS] for s in spans}
    per_parent = {}
    for t in tools:
        per_parent[t.parent.span_id] = per_parent.get(t.parent.span_id, 0) + 1
    assert per_parent == agent_ids  # every tool span under the run that counted it
