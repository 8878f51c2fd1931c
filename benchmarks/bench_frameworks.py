"""Per-step overhead of an instrumented agent-framework run: OpenAI Agents SDK, a 5-step agent, 2 tools per step.

One run = 6 model calls through the real ``openai`` SDK (5 turns that each ask for two function tools, then a
final answer) and 10 tool executions, on an in-process ``httpx2.MockTransport`` (no socket timing leaks in).
Arms, each in its own subprocess (instrumentors patch globally), same OTel SDK pipeline (TracerProvider +
BatchSpanProcessor to a discarding exporter, MeterProvider with an in-memory reader):

* ``bare``: the Agents SDK alone (its default trace export to OpenAI removed in every arm);
* ``llmmeter``: ``llmmeter.configure`` + llmmeter's openai and openai-agents instrumentors (run span, totals,
  guard, tool spans, priced model-call spans);
* ``openinference``: ``openinference-instrumentation-openai-agents`` (Arize; most-used for this SDK);
* ``openllmetry``: ``opentelemetry-instrumentation-openai-agents`` (Traceloop).

The parent runs the arms in rotating order for ``--rounds`` rounds of ``--runs`` runs each, one arm at a time,
and reports the median run time, what each instrumentation adds per step (``(run - bare) / 5``) and the ratios
``arm / bare`` and ``llmmeter added / other added``. Run: ``python benchmarks/bench_frameworks.py``
(``--quick`` for a smoke run). Needs the ``bench-frameworks`` extra (``make bench-frameworks``).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

import _framework_bench

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "results", "frameworks.json")
STEPS, TOOLS_PER_STEP = 5, 2
USAGE = {"input_tokens": 120, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 20,
         "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 140}


def response_body(turn: int, run_id: int) -> bytes:
    """A Responses API reply: two function calls for turns < STEPS, else a text message."""
    if turn < STEPS:
        output: list[dict[str, Any]] = [
            {"type": "function_call", "id": f"fc_{run_id}_{turn}_{k}", "call_id": f"call_{run_id}_{turn}_{k}",
             "name": name, "arguments": json.dumps({"step": turn}), "status": "completed"}
            for k, name in enumerate(("lookup", "compute"))
        ]
    else:
        output = [{"type": "message", "id": f"msg_{run_id}", "role": "assistant", "status": "completed",
                   "content": [{"type": "output_text", "text": "done", "annotations": []}]}]
    return json.dumps({
        "id": f"resp_{run_id}_{turn}", "object": "response", "created_at": 1755280573, "status": "completed",
        "model": "gpt-4.1-2025-04-14", "output": output, "parallel_tool_calls": True, "tool_choice": "auto",
        "tools": [], "usage": USAGE, "error": None, "incomplete_details": None, "instructions": None,
        "metadata": {}, "temperature": 1.0, "top_p": 1.0, "text": {"format": {"type": "text"}},
    }).encode()


def make_agent() -> Any:
    import httpx2
    import openai
    from agents import Agent, function_tool
    from agents.models.openai_responses import OpenAIResponsesModel

    state = {"run": 0, "turn": 0}

    def handler(request: httpx2.Request) -> httpx2.Response:
        body = response_body(state["turn"], state["run"])
        state["turn"] += 1
        return httpx2.Response(200, headers={"content-type": "application/json"}, content=body)

    client = openai.AsyncOpenAI(api_key="sk-bench", base_url="http://bench.invalid/v1", max_retries=0,
                                http_client=openai.DefaultAsyncHttpxClient(transport=httpx2.MockTransport(handler)))

    @function_tool
    def lookup(step: int) -> str:
        """Look something up."""
        return f"fact {step}"

    @function_tool
    def compute(step: int) -> str:
        """Compute something."""
        return str(step * 2)

    agent = Agent(name="bench", instructions="use the tools", tools=[lookup, compute],
                  model=OpenAIResponsesModel(model="gpt-4.1", openai_client=client))
    return agent, state


def worker(arm: str, runs: int) -> list[tuple[float, float]]:
    from agents import Runner, set_trace_processors

    set_trace_processors([])  # no export to OpenAI's trace backend, in every arm
    tracer_provider, meter_provider = _framework_bench.pipeline(arm)
    if arm == "llmmeter":
        from llmmeter.frameworks.openai_agents import OpenAIAgentsInstrumentor
        from llmmeter.instrumentors.openai import OpenAIInstrumentor

        OpenAIInstrumentor().instrument(tracer_provider=tracer_provider)
        OpenAIAgentsInstrumentor().instrument()
    elif arm == "openinference":
        from openinference.instrumentation.openai_agents import OpenAIAgentsInstrumentor as OI

        OI().instrument(tracer_provider=tracer_provider)
    elif arm == "openllmetry":
        from opentelemetry.instrumentation.openai_agents import OpenAIAgentsInstrumentor as OL

        OL().instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    elif arm != "bare":
        raise ValueError(arm)
    agent, state = make_agent()

    async def one() -> None:
        state["turn"] = 0
        state["run"] += 1
        result = await Runner.run(agent, "go", max_turns=STEPS + 2)
        assert result.final_output == "done", result.final_output

    async def main() -> list[tuple[float, float]]:
        for _ in range(_framework_bench.WARM_UP):
            await one()
        times = _framework_bench.Times()
        for _ in range(runs):
            with times.run():
                await one()
        return times

    out = asyncio.run(main())
    tracer_provider.shutdown()
    return out


if __name__ == "__main__":
    sys.exit(_framework_bench.main(
        __file__, __doc__, worker,
        f"OpenAI Agents SDK run: {STEPS} steps x {TOOLS_PER_STEP} tools + final answer, in-process transport",
        steps=STEPS, runs=40, quick_runs=5, out=DEFAULT_OUT))
