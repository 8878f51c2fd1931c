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

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "results", "frameworks.json")
ARMS = ("bare", "llmmeter", "openinference", "openllmetry")
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
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class Discard(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    set_trace_processors([])  # no export to OpenAI's trace backend, in every arm
    tracer_provider = TracerProvider()
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(meter_provider)
    if arm == "llmmeter":
        from llmmeter.frameworks.openai_agents import OpenAIAgentsInstrumentor
        from llmmeter.instrumentors.openai import OpenAIInstrumentor
        from llmmeter.pipeline import configure

        configure(tracer_provider=tracer_provider, meter_provider=meter_provider, instrument=False)
        tracer_provider.add_span_processor(BatchSpanProcessor(Discard()))
        OpenAIInstrumentor().instrument(tracer_provider=tracer_provider)
        OpenAIAgentsInstrumentor().instrument()
    else:
        tracer_provider.add_span_processor(BatchSpanProcessor(Discard()))
        if arm == "openinference":
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

    async def main() -> list[float]:
        for _ in range(3):  # warm-up: imports, tokenizer, first-call caches
            await one()
        times = []
        for _ in range(runs):
            wall, cpu = time.perf_counter_ns(), time.process_time_ns()
            await one()
            times.append(((time.perf_counter_ns() - wall) / 1e3, (time.process_time_ns() - cpu) / 1e3))
        return times

    out = asyncio.run(main())
    tracer_provider.shutdown()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40, help="timed runs per arm per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=DEFAULT_OUT)
    parser.add_argument("--worker", choices=ARMS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.runs, args.rounds = 5, 1
    if args.worker:
        print(json.dumps(worker(args.worker, args.runs)))
        return 0
    samples: dict[str, list[list[float]]] = {arm: [] for arm in ARMS}
    for r in range(args.rounds):
        order = ARMS[r % len(ARMS):] + ARMS[: r % len(ARMS)]
        for arm in order:
            out = subprocess.run([sys.executable, __file__, "--worker", arm, "--runs", str(args.runs)],
                                 check=True, capture_output=True, text=True)
            samples[arm].extend(json.loads(out.stdout.strip().splitlines()[-1]))
    result: dict[str, Any] = {
        "what": f"OpenAI Agents SDK run: {STEPS} steps x {TOOLS_PER_STEP} tools + final answer, in-process transport",
        "runs_per_arm": len(samples["bare"]),
        "python": sys.version.split()[0],
    }
    # wall: what a user waits (noisy on a shared machine); cpu: the process's CPU time (incl. export threads)
    for index, clock in enumerate(("wall", "cpu")):
        median = {arm: statistics.median(s[index] for s in v) for arm, v in samples.items()}
        added = {arm: median[arm] - median["bare"] for arm in ARMS}
        result[clock] = {
            "median_run_us": {a: round(v, 1) for a, v in median.items()},
            "added_per_step_us": {a: round(added[a] / STEPS, 1) for a in ARMS if a != "bare"},
            "ratio_to_bare": {a: round(median[a] / median["bare"], 3) for a in ARMS if a != "bare"},
            "llmmeter_added_over_other_added": {
                a: (round(added["llmmeter"] / added[a], 3) if added[a] > 0 else None)
                for a in ("openinference", "openllmetry")
            },
        }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(result, fh, indent=2)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
