"""A Chat Completions server on 127.0.0.1 that plays the models of a CrewAI crew, and the crews the tests run.

Each reply is decided from the request alone (no hidden counter), so a test knows exactly what the server sent:
an agent with tools (the request carries ``tools``) gets ``tool_calls`` replies, each asking for one call of
``lookup(city="Paris")`` per entry of ``calls_per_step``, until it has had ``steps`` tool rounds (counted from the
``tool`` results already in the conversation); then a text answer. Every reply reports ``PROMPT`` / ``COMPLETION``
tokens and echoes the requested model, so each call's price is known from the published rates.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from llmmeter import names
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from pipeline_support import sampled_pipeline
from replay_server import Reply, scripted

# Set by tests/crewai/conftest.py before CrewAI is imported (why each: that file's docstring).
CREWAI_QUIET = {
    "CREWAI_DISABLE_TELEMETRY": "true",
    "CREWAI_DISABLE_TRACKING": "true",
    "CREWAI_TRACING_ENABLED": "false",
    "CREWAI_TESTING": "true",
    "CREWAI_DISABLE_VERSION_CHECK": "true",
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # LiteLLM (CrewAI's fallback route) reads its bundled prices, no fetch
}
PROMPT, COMPLETION = 200, 20
# OpenAI's published per-token rates (https://openai.com/api/pricing), the same as llmmeter's price table.
RATES = {"gpt-4o-mini": (0.15 / 1e6, 0.60 / 1e6), "gpt-4.1": (2.00 / 1e6, 8.00 / 1e6)}


def call_usd(model: str) -> float:
    rate_in, rate_out = RATES[model]
    return PROMPT * rate_in + COMPLETION * rate_out


def tool_rounds(body: dict[str, Any]) -> int:
    """Tool rounds already answered in this conversation (assistant messages that asked for tools)."""
    return sum(1 for m in body.get("messages") or [] if m.get("role") == "assistant" and m.get("tool_calls"))


@contextmanager
def crew_server(steps: int = 1, calls_per_step: int = 1, answer: str = "sunny", vary: bool = False) -> Iterator[Any]:
    """``steps``: tool rounds per agent task (``10**6``: an agent that never stops calling its tool); ``vary``: a
    different city in every call (CrewAI itself stops an agent on the 5th identical call with the same result)."""

    def reply(request: Any) -> Reply:
        body = request.json or {}
        model = body.get("model") or "gpt-4o-mini"
        message: dict[str, Any] = {"role": "assistant", "content": answer}
        finish = "stop"
        done = tool_rounds(body)
        if body.get("tools") and done < steps:
            message = {"role": "assistant", "content": None, "tool_calls": [
                {"id": f"call_{done}_{i}", "type": "function",
                 "function": {"name": "lookup",
                              "arguments": json.dumps({"city": f"city-{done}-{i}" if vary else "Paris"})}}
                for i in range(calls_per_step)]}
            finish = "tool_calls"
        usage = {"prompt_tokens": PROMPT, "completion_tokens": COMPLETION, "total_tokens": PROMPT + COMPLETION}
        head = {"id": f"chatcmpl-{done}", "created": 1700000000, "model": model}
        if body.get("stream"):  # a streaming crew: the same reply as chunks, usage last when asked for
            delta = dict(message)
            if delta.get("tool_calls"):
                delta["tool_calls"] = [{**c, "index": i} for i, c in enumerate(delta["tool_calls"])]
            chunk = {**head, "object": "chat.completion.chunk"}
            events = [{**chunk, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]},
                      {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}]
            if (body.get("stream_options") or {}).get("include_usage"):
                events.append({**chunk, "choices": [], "usage": usage})
            return Reply.sse(events)
        return Reply.json({**head, "object": "chat.completion",
                           "choices": [{"index": 0, "message": message, "finish_reason": finish}], "usage": usage})

    with scripted(reply) as server:
        yield server


def make_crew(server: Any, name: str = "weather crew", writer_model: str = "gpt-4.1", litellm: bool = False,
              **crew_kwargs: Any) -> Any:
    """Two agents in sequence: a researcher (gpt-4o-mini) with the ``lookup`` tool, then a writer without tools.
    ``litellm``: both models through CrewAI's LiteLLM route (``LLM(..., is_litellm=True)``) instead of its native
    OpenAI provider."""
    from crewai import LLM, Agent, Crew, Task
    from crewai.tools import tool

    @tool("lookup")
    def lookup(city: str) -> str:
        """Look up the weather of a city."""
        return f"{city}: sunny"

    def llm(model: str) -> Any:
        if litellm:
            return LLM(model=model, is_litellm=True, base_url=server.base_url + "/v1", api_key="test-key")
        return LLM(model=model, base_url=server.base_url + "/v1", api_key="test-key", max_retries=0)

    researcher = Agent(role="researcher", goal="Find the weather", backstory="A meteorologist.",
                       llm=llm("gpt-4o-mini"), tools=[lookup], max_retry_limit=crew_kwargs.pop("max_retry_limit", 2))
    writer = Agent(role="writer", goal="Write it up", backstory="A journalist.", llm=llm(writer_model))
    research = Task(description="Find the weather in Paris.", expected_output="The weather.", agent=researcher)
    write = Task(description="Write one sentence about it.", expected_output="A sentence.", agent=writer)
    return Crew(agents=[researcher, writer], tasks=[research, write], name=name, **crew_kwargs)


# --- hierarchical crews --------------------------------------------------------------------------------------------

# The function names CrewAI 1.15 gives its delegation tools (crewai/tools/agent_tools: "Delegate work to coworker",
# "Ask question to coworker", sanitised for function calling), and their arguments (DelegateWorkToolSchema,
# AskQuestionToolSchema).
DELEGATE, ASK = "delegate_work_to_coworker", "ask_question_to_coworker"
DELEGATION_ARGUMENTS = {
    DELEGATE: {"task": "Find the weather in Paris.", "context": "The user asked for it.", "coworker": "researcher"},
    ASK: {"question": "What is the weather in Paris?", "context": "The user asked for it.", "coworker": "researcher"},
}


@contextmanager
def manager_server(delegations: int = 1, tool: str = DELEGATE, steps: int = 1, vary: bool = False) -> Iterator[Any]:
    """The crew_server's replies, plus the manager's: a request offering the delegation tools gets one call of
    ``tool`` (to the researcher) per round until it has had ``delegations`` rounds, then a text answer."""

    def reply(request: Any) -> Reply:
        body = request.json or {}
        offered = {(t.get("function") or {}).get("name") for t in body.get("tools") or []}
        done = tool_rounds(body)
        if DELEGATE in offered and done < delegations:
            call = {"id": f"call_m{done}", "type": "function",
                    "function": {"name": tool, "arguments": json.dumps(DELEGATION_ARGUMENTS[tool])}}
            message = {"role": "assistant", "content": None, "tool_calls": [call]}
            finish = "tool_calls"
        elif "lookup" in offered and done < steps:
            city = f"city-{done}" if vary else "Paris"
            call = {"id": f"call_r{done}", "type": "function",
                    "function": {"name": "lookup", "arguments": json.dumps({"city": city})}}
            message = {"role": "assistant", "content": None, "tool_calls": [call]}
            finish = "tool_calls"
        else:
            message, finish = {"role": "assistant", "content": "sunny"}, "stop"
        usage = {"prompt_tokens": PROMPT, "completion_tokens": COMPLETION, "total_tokens": PROMPT + COMPLETION}
        return Reply.json({"id": f"chatcmpl-{done}", "object": "chat.completion", "created": 1700000000,
                           "model": body.get("model") or "gpt-4o-mini",
                           "choices": [{"index": 0, "message": message, "finish_reason": finish}], "usage": usage})

    with scripted(reply) as server:
        yield server


def make_hierarchical_crew(server: Any, name: str = "managed crew", **crew_kwargs: Any) -> Any:
    """``Process.hierarchical``: CrewAI builds a manager agent ("Crew Manager", gpt-4.1 here) with its delegation
    tools; the one task has no agent, the manager delegates it. Workers: the researcher (gpt-4o-mini, ``lookup``)
    and the writer (gpt-4.1)."""
    from crewai import LLM, Agent, Crew, Process, Task
    from crewai.tools import tool

    @tool("lookup")
    def lookup(city: str) -> str:
        """Look up the weather of a city."""
        return f"{city}: sunny"

    def llm(model: str) -> Any:
        return LLM(model=model, base_url=server.base_url + "/v1", api_key="test-key", max_retries=0)

    researcher = Agent(role="researcher", goal="Find the weather", backstory="A meteorologist.",
                       llm=llm("gpt-4o-mini"), tools=[lookup], max_retry_limit=crew_kwargs.pop("max_retry_limit", 2))
    writer = Agent(role="writer", goal="Write it up", backstory="A journalist.", llm=llm("gpt-4.1"))
    task = Task(description="Find the weather in Paris.", expected_output="The weather.")
    return Crew(agents=[researcher, writer], tasks=[task], process=Process.hierarchical, manager_llm=llm("gpt-4.1"),
                name=name, **crew_kwargs)


def by_op(tel: Any, op: str) -> list[Any]:
    """The exported spans of one ``gen_ai.operation.name``."""
    return [s for s in tel.spans() if s.attributes.get(names.OPERATION) == op]


@contextmanager
def always_off_telemetry(telemetry: Any) -> Iterator[Any]:
    """The ``telemetry`` fixture's shape (tests/conftest.py) on a pipeline whose sampler exports nothing
    (tests/pipeline_support.py), shut down afterwards."""
    tel = dataclasses.replace(telemetry, **sampled_pipeline(ALWAYS_OFF))
    try:
        yield tel
    finally:
        tel.tracer_provider.shutdown()
        tel.meter_provider.shutdown()
