"""Per-step overhead of an instrumented CrewAI run: one agent, 5 steps, 2 tool calls per step, then an answer.

One run = ``Crew.kickoff`` of a one-agent, one-task crew on CrewAI 1.15 whose model (gpt-4.1 through CrewAI's
native OpenAI provider on the real ``openai`` 2.x SDK) answers 5 times with two native tool calls (``lookup``
and ``compute``, arguments different every step, so neither CrewAI's tool cache nor its repeated-call stop
applies), then with the final answer: 6 model calls and 10 tool executions, against an HTTP/1.1 keep-alive
server on 127.0.0.1 in the same process (CrewAI builds the SDK's sync and async clients from one
``client_params``, so an in-process ``httpx.MockTransport`` cannot be handed to both). Arms, each in its own
subprocess (instrumentors patch globally), same OTel SDK pipeline (TracerProvider + BatchSpanProcessor to a
discarding exporter, MeterProvider with an in-memory reader), CrewAI's own telemetry and trace upload off in
every arm:

* ``bare``: CrewAI alone;
* ``llmmeter``: ``llmmeter.configure`` + llmmeter's openai and crewai instrumentors (crew and agent runs with
  totals and the loop guard, tool spans, priced model-call spans);
* ``openinference``: ``openinference-instrumentation-crewai`` + ``openinference-instrumentation-openai`` (Arize;
  the pair Arize's CrewAI 1.x tracing docs prescribe);
* ``openllmetry``: ``opentelemetry-instrumentation-crewai`` + ``opentelemetry-instrumentation-openai``
  (Traceloop; the pair LangSmith's CrewAI tracing guide uses).

The parent runs the arms in rotating order for ``--rounds`` rounds of ``--runs`` runs each, one arm at a time,
and reports the median run time, what each instrumentation adds per step (``(run - bare) / 5``) and the ratios
``arm / bare`` and ``llmmeter added / other added``. Run in the CrewAI venv: ``make bench-crewai`` (installs the
``bench-crewai`` extra into ``.venv-crewai``), ``--quick`` for a smoke run.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import _framework_bench

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "results", "crewai.json")
STEPS, TOOLS_PER_STEP = 5, 2
# What CrewAI's own telemetry and tracing read (crewai_core/telemetry.py, crewai/events/listeners/tracing/utils.py).
CREWAI_QUIET = {"CREWAI_DISABLE_TELEMETRY": "true", "CREWAI_DISABLE_TRACKING": "true",
                "CREWAI_TRACING_ENABLED": "false", "CREWAI_TESTING": "true", "CREWAI_DISABLE_VERSION_CHECK": "true"}
USAGE = {"prompt_tokens": 300, "completion_tokens": 30, "total_tokens": 330}


def reply_body(request_body: dict[str, Any]) -> bytes:
    """Tool calls until the conversation has had STEPS tool rounds, then the answer (decided from the request)."""
    step = sum(1 for m in request_body.get("messages") or [] if m.get("role") == "assistant" and m.get("tool_calls"))
    message: dict[str, Any] = {"role": "assistant", "content": "done"}
    finish = "stop"
    if step < STEPS:
        message = {"role": "assistant", "content": None, "tool_calls": [
            {"id": f"call_{step}_{name}", "type": "function",
             "function": {"name": name, "arguments": json.dumps({"step": step})}}
            for name in ("lookup", "compute")]}
        finish = "tool_calls"
    return json.dumps({"id": f"chatcmpl-{step}", "object": "chat.completion", "created": 1700000000,
                       "model": "gpt-4.1-2025-04-14",
                       "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                       "usage": USAGE}).encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the SDK's connection pool reuses one connection

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = reply_body(json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}"))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def serve() -> str:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/v1"


def make_crew(base_url: str) -> Any:
    from crewai import LLM, Agent, Crew, Task
    from crewai.tools import tool

    @tool("lookup")
    def lookup(step: int) -> str:
        """Look something up."""
        return f"fact {step}"

    @tool("compute")
    def compute(step: int) -> str:
        """Compute something."""
        return str(step * 2)

    llm = LLM(model="gpt-4.1", api_key="sk-bench", base_url=base_url, max_retries=0)
    agent = Agent(role="bench", goal="use the tools", backstory="a benchmark", llm=llm, tools=[lookup, compute],
                  max_iter=STEPS + 3)
    task = Task(description="Use the tools, then answer.", expected_output="an answer", agent=agent)
    return Crew(agents=[agent], tasks=[task], name="bench crew")


def worker(arm: str, runs: int) -> list[tuple[float, float]]:
    os.environ.update(CREWAI_QUIET)
    tracer_provider, meter_provider = _framework_bench.pipeline(arm)
    if arm == "llmmeter":
        from llmmeter.frameworks.crewai import CrewAIInstrumentor
        from llmmeter.instrumentors.openai import OpenAIInstrumentor

        OpenAIInstrumentor().instrument(tracer_provider=tracer_provider)
        CrewAIInstrumentor().instrument()
    elif arm == "openinference":
        from openinference.instrumentation.crewai import CrewAIInstrumentor as OICrew
        from openinference.instrumentation.openai import OpenAIInstrumentor as OIOpenAI

        OICrew().instrument(tracer_provider=tracer_provider)
        OIOpenAI().instrument(tracer_provider=tracer_provider)
    elif arm == "openllmetry":
        from opentelemetry.instrumentation.crewai import CrewAIInstrumentor as OLCrew
        from opentelemetry.instrumentation.openai import OpenAIInstrumentor as OLOpenAI

        OLCrew().instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
        OLOpenAI().instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    elif arm != "bare":
        raise ValueError(arm)
    crew = make_crew(serve())

    def one() -> None:
        result = crew.kickoff()
        assert result.raw == "done", result.raw

    for _ in range(_framework_bench.WARM_UP):
        one()
    times = _framework_bench.Times()
    for _ in range(runs):
        with times.run():
            one()
    tracer_provider.shutdown()
    return times


def versions() -> dict[str, Any]:
    from importlib.metadata import version

    return {"versions": {p: version(p) for p in ("crewai", "openai", "openinference-instrumentation-crewai",
                                                 "openinference-instrumentation-openai",
                                                 "opentelemetry-instrumentation-crewai",
                                                 "opentelemetry-instrumentation-openai")}}


if __name__ == "__main__":
    sys.exit(_framework_bench.main(
        __file__, __doc__, worker,
        f"CrewAI run: 1 agent, {STEPS} steps x {TOOLS_PER_STEP} native tool calls + final answer, "
        "local keep-alive HTTP server",
        steps=STEPS, runs=20, quick_runs=3, out=DEFAULT_OUT, details=versions))
