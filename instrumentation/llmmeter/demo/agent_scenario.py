"""The demo's agent scenario: a support agent stuck in a tool-calling loop, stopped by the loop guard.

The demo server answers every chat request that offers tools with the same tool call
(``search_orders({"query": "order 1234"})``), the way a confused model keeps asking for the same
lookup. Without a guard this loop would run (and bill) forever; with ``max_repeated_tool_calls=3`` the
third identical tool call trips the guard and the agent's next LLM call raises
:class:`llmmeter.AgentLoopDetected` before it is sent. In Jaeger the trace shows one
``invoke_agent support-agent`` span with the LLM and tool spans under it, the loop-guard event, and the
run's totals (calls, tokens, cost) on the root.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import openai

from llmmeter import agents, attribution, outcomes
from llmmeter.errors import AgentLoopDetected

AGENT_NAME = "support-agent"
TOOL_NAME = "search_orders"
MODEL = "gpt-4o-mini"
MAX_REPEATED_TOOL_CALLS = 3
MAX_LLM_CALLS = 10  # a second line of defence; the repeated-call guard trips first

_TOOLS: list[dict[str, Any]] = [{
    "type": "function",
    "function": {
        "name": TOOL_NAME,
        "description": "Look up a customer's orders.",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
    },
}]


@dataclass
class AgentScenarioResult:
    llm_calls: int
    tool_calls: int
    stopped_by: str | None
    cost_usd: float


def search_orders(query: str) -> str:
    """The tool: a canned answer that never satisfies the (fake) model."""
    return json.dumps({"query": query, "orders": [{"id": "1234", "status": "in transit"}]})


def run_agent_scenario(client: openai.OpenAI) -> AgentScenarioResult:
    """Run the looping support agent once against ``client``; returns what the run did and why it stopped."""
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are a support agent. Use tools to answer."},
        {"role": "user", "content": "Where is my order 1234?"},
    ]
    with attribution.attributes(tenant="acme", feature="support-agent", route="/api/agent", user="u-1001"):
        with agents.agent(
            AGENT_NAME, max_repeated_tool_calls=MAX_REPEATED_TOOL_CALLS, max_llm_calls=MAX_LLM_CALLS
        ) as run:
            resolved = False
            try:
                while True:
                    response = client.chat.completions.create(model=MODEL, messages=messages, tools=_TOOLS)
                    message = response.choices[0].message
                    if not message.tool_calls:
                        resolved = True
                        break
                    messages.append(message.model_dump(exclude_none=True))
                    for call in message.tool_calls:
                        arguments = json.loads(call.function.arguments or "{}")
                        with agents.tool(call.function.name, arguments=arguments, call_id=call.id,
                                         tool_type="function"):
                            result = search_orders(**arguments)
                        messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
            except AgentLoopDetected:
                resolved = False  # the guard stopped the loop: the ticket goes to a human
            outcomes.record_outcome("ticket_resolved", success=resolved)
    return AgentScenarioResult(run.llm_calls, run.tool_calls, run.stopped_by, run.cost_usd)
