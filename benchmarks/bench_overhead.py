"""What llmmeter adds to an OpenAI call, next to the bare SDK and the official openai-v2 instrumentor.

Three arms run in the same invocation, on the same in-process fake transport (``httpx2.MockTransport``,
so no socket or server timing leaks in), through the real ``openai`` SDK:

* ``bare``: the SDK alone (an OTel SDK pipeline is installed, nothing instrumented);
* ``openai_v2``: ``opentelemetry-instrumentation-openai-v2`` with its own span and metrics;
* ``llmmeter``: llmmeter's OpenAI instrumentor + span processor (cost, metrics from spans).

Each arm is the whole pipeline a user would run: a TracerProvider with a BatchSpanProcessor feeding an
exporter that discards (so export cost is the SDK's, not a network's), a MeterProvider with a reader,
and for llmmeter its span processor attached the documented way (``llmmeter.configure``).

Instrumentors patch the SDK globally, so every arm lives in its own long-lived worker subprocess; the
parent sends them the same batches in a rotating order, one worker at a time (no CPU contention), so
slow drift of the machine spreads evenly over the arms. Each call is timed on its own; the report gives
median and p95 microseconds per call, what each instrumentor adds over ``bare``, and the ratio
``llmmeter added / openai-v2 added`` (the project floor is <= 1, the goal <= 0.5).

It also measures the span processor alone: finished spans per second counted by
``LLMMeterSpanProcessor`` (``on_end`` and the counting it defers), and ``on_end`` by itself.

Run: ``python benchmarks/bench_overhead.py`` (about a minute); ``--quick`` for a smoke run;
``--profile`` adds a cProfile of each instrumented arm's hot spots. Results: a rich table on stdout
and ``benchmarks/results/latest.json``.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "results", "latest.json")
SCHEMA_VERSION = 1

ARMS: tuple[str, ...] = ("bare", "openai_v2", "llmmeter")  # always measured; ratios compare the last two
INSTRUMENTED: tuple[str, ...] = ("openai_v2", "llmmeter")
# Pipelines a worker can build. ``llmmeter_no_processor`` (``--diagnose``) is llmmeter's instrumentor and
# exporter without the span processor: the difference to ``llmmeter`` is what the processor costs per call.
# ``llmmeter_ledger`` (``bench_instructions.py --ledger``) is ``llmmeter`` with the cost ledger on (a temp directory).
KINDS: tuple[str, ...] = (*ARMS, "llmmeter_no_processor", "llmmeter_ledger")
MODES: tuple[str, ...] = ("chat", "stream")
# wall: perf_counter, what a user waits. cpu: the calling thread's CPU time, unaffected by other processes.
CLOCKS: tuple[str, ...] = ("wall", "cpu")
MODEL = "gpt-4o-mini"
STREAM_CONTENT_CHUNKS = 10
USAGE = {"prompt_tokens": 14, "completion_tokens": 10, "total_tokens": 24}
MESSAGES = [{"role": "user", "content": "Say hello in ten words, please."}]
WORDS = ["Hello", " there", ",", " friend", "!", " Nice", " to", " meet", " you", "."]


# --------------------------------------------------------------------------------------------
# The fake provider: OpenAI wire-format bodies served by an in-process transport.
# --------------------------------------------------------------------------------------------
def chat_body() -> bytes:
    return json.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": MODEL + "-2024-07-18",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(WORDS), "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                **USAGE,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
            },
            "system_fingerprint": "fp_bench",
        }
    ).encode()


def stream_body() -> bytes:
    """10 content chunks, one finish chunk, then the ``include_usage`` chunk (empty choices) and [DONE]."""

    def chunk(choices: list[Any], usage: Any = None) -> str:
        payload = {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": MODEL + "-2024-07-18",
            "system_fingerprint": "fp_bench",
            "choices": choices,
            "usage": usage,
        }
        return "data: " + json.dumps(payload) + "\n\n"

    events = [chunk([{"index": 0, "delta": {"role": "assistant", "content": w}, "finish_reason": None}]) for w in WORDS]
    assert len(events) == STREAM_CONTENT_CHUNKS
    events.append(chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}]))
    events.append(chunk([], USAGE))
    events.append("data: [DONE]\n\n")
    return "".join(events).encode()


def make_client() -> Any:
    """A real ``openai.OpenAI`` client whose HTTP goes to an in-process MockTransport."""
    import httpx2
    import openai

    chat, stream = chat_body(), stream_body()
    json_headers = {"content-type": "application/json"}
    sse_headers = {"content-type": "text/event-stream"}

    def handler(request: httpx2.Request) -> httpx2.Response:
        if json.loads(request.content).get("stream"):
            return httpx2.Response(200, headers=sse_headers, content=stream)
        return httpx2.Response(200, headers=json_headers, content=chat)

    http_client = openai.DefaultHttpxClient(transport=httpx2.MockTransport(handler))
    return openai.OpenAI(api_key="sk-bench", base_url="http://bench.invalid/v1", max_retries=0, http_client=http_client)


def call_once(client: Any, mode: str) -> None:
    if mode == "chat":
        client.chat.completions.create(model=MODEL, messages=MESSAGES)
        return
    stream = client.chat.completions.create(
        model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    for _ in stream:
        pass


# --------------------------------------------------------------------------------------------
# Worker side: one arm's pipeline, driven over stdin/stdout JSON lines.
# --------------------------------------------------------------------------------------------
def _discarding_exporter() -> Any:
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    class DiscardingSpanExporter(SpanExporter):
        """Drops spans after counting them: export cost is the SDK's batching, not a network."""

        def __init__(self) -> None:
            self.exported = 0

        def export(self, spans: Any) -> SpanExportResult:
            self.exported += len(spans)
            return SpanExportResult.SUCCESS

        def shutdown(self) -> None:
            pass

    return DiscardingSpanExporter()


class Pipeline:
    """The OTel SDK pipeline of one arm, plus its instrumentor."""

    def __init__(self, arm: str) -> None:
        # Every arm imports httpx when it is installed: openai-v2 needs it, and its presence changes
        # which isinstance checks the openai SDK makes; the only difference between arms is the instrumentor.
        try:
            import httpx  # noqa: F401
        except ImportError:
            pass
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        self.arm = arm
        self.reader = InMemoryMetricReader()
        self.exporter = _discarding_exporter()
        self.tracer_provider = TracerProvider()
        views: list[Any] = []
        if arm.startswith("llmmeter"):
            from llmmeter.views import llmmeter_views

            views = llmmeter_views()
        self.meter_provider = MeterProvider(metric_readers=[self.reader], views=views)
        trace.set_tracer_provider(self.tracer_provider)
        metrics.set_meter_provider(self.meter_provider)
        self.versions = _versions()

        if arm in ("llmmeter", "llmmeter_no_processor", "llmmeter_ledger"):
            from llmmeter.instrumentors.openai import OpenAIInstrumentor
            from llmmeter.pipeline import configure

            if arm == "llmmeter":
                # The documented programmatic path: processor first, so attribution is on spans before export.
                configure(tracer_provider=self.tracer_provider, meter_provider=self.meter_provider, instrument=False)
            elif arm == "llmmeter_ledger":
                import tempfile

                configure(tracer_provider=self.tracer_provider, meter_provider=self.meter_provider, instrument=False,
                          ledger=tempfile.mkdtemp(prefix="llmmeter-bench-ledger-"))
            self.tracer_provider.add_span_processor(BatchSpanProcessor(self.exporter))
            OpenAIInstrumentor().instrument(tracer_provider=self.tracer_provider, meter_provider=self.meter_provider)
        elif arm == "openai_v2":
            from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor as OfficialInstrumentor

            self.tracer_provider.add_span_processor(BatchSpanProcessor(self.exporter))
            OfficialInstrumentor().instrument(tracer_provider=self.tracer_provider, meter_provider=self.meter_provider)
        elif arm == "bare":
            self.tracer_provider.add_span_processor(BatchSpanProcessor(self.exporter))
        else:
            raise ValueError(f"unknown arm {arm!r}")
        self.client = make_client()
        self.calls = 0

    def run(self, mode: str, n: int) -> dict[str, list[int]]:
        """Time ``n`` calls one by one, in ns of wall time and of this thread's CPU time.

        CPU time is immune to other processes taking the CPU (a loaded CI box or laptop), so its
        figures stay comparable where wall-clock medians drift; the app's thread does all of a
        call's work here (the transport is in-process), so it is the per-call cost. A full GC first
        so no batch inherits another's garbage.
        """
        client = self.client
        wall, cpu = time.perf_counter_ns, time.thread_time_ns
        walls = [0] * n
        cpus = [0] * n
        gc.collect()
        for i in range(n):
            start_cpu = cpu()
            start = wall()
            call_once(client, mode)
            walls[i] = wall() - start
            cpus[i] = cpu() - start_cpu
        self.calls += n
        return {"wall": walls, "cpu": cpus}

    def check(self) -> dict[str, Any]:
        """Proof the arm measured what it claims: spans exported and metric points per call so far."""
        self.tracer_provider.force_flush()
        metric_names: dict[str, float] = {}
        data = self.reader.get_metrics_data()
        for rm in data.resource_metrics if data is not None else ():
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    total = 0.0
                    for point in metric.data.data_points:
                        total += point.value if hasattr(point, "value") else point.count
                    metric_names[metric.name] = metric_names.get(metric.name, 0.0) + total
        return {
            "calls": self.calls,
            "spans_exported": self.exporter.exported,
            "spans_per_call": self.exporter.exported / self.calls if self.calls else 0.0,
            "metrics": metric_names,
        }

    def profile(self, mode: str, n: int, top: int) -> list[dict[str, Any]]:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(n):
            call_once(self.client, mode)
        profiler.disable()
        return _hot_spots(pstats.Stats(profiler), n, top)

    def close(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


def _hot_spots(stats: Any, calls: int, top: int) -> list[dict[str, Any]]:
    """The instrumentation's own functions (not the SDK's) by self time, in µs per call."""
    keep = ("llmmeter", "opentelemetry", "wrapt")
    rows = []
    for (filename, line, func), (_cc, ncalls, tottime, cumtime, _callers) in stats.stats.items():
        if not any(k in filename for k in keep):
            continue
        short = filename.split("site-packages/")[-1].split("instrumentation/llmmeter/")[-1]
        rows.append(
            {
                "function": f"{short}:{line}({func})",
                "calls_per_call": ncalls / calls,
                "self_us_per_call": tottime / calls * 1e6,
                "cumulative_us_per_call": cumtime / calls * 1e6,
            }
        )
    rows.sort(key=lambda r: r["self_us_per_call"], reverse=True)
    return rows[:top]


def _versions() -> dict[str, str | None]:
    from importlib import metadata

    out: dict[str, str | None] = {}
    try:
        import llmmeter

        out["llmmeter_source"] = os.path.dirname(llmmeter.__file__ or "")
    except ImportError:
        out["llmmeter_source"] = None
    for dist in (
        "openai",
        "httpx2",
        "httpx",
        "opentelemetry-sdk",
        "opentelemetry-instrumentation-openai-v2",
        "opentelemetry-util-genai",
        "llmmeter",
        "wrapt",
    ):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def worker_main(arm: str) -> int:
    """Serve one arm: JSON commands on stdin, one JSON reply per line on the real stdout."""
    os.environ.setdefault("LLMMETER_SUMMARY", "off")
    protocol = sys.stdout
    sys.stdout = sys.stderr  # anything a library prints must not corrupt the protocol

    def reply(payload: dict[str, Any]) -> None:
        protocol.write(json.dumps(payload) + "\n")
        protocol.flush()

    try:
        pipeline = Pipeline(arm)
    except Exception as exc:  # e.g. openai-v2 not installed: the arm is reported unavailable
        reply({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
        return 0
    reply({"ok": True, "versions": pipeline.versions})
    for line in sys.stdin:
        command = json.loads(line)
        op = command["op"]
        try:
            if op == "run":
                reply({"ok": True, "samples_ns": pipeline.run(command["mode"], command["n"])})
            elif op == "check":
                reply({"ok": True, "check": pipeline.check()})
            elif op == "throughput":
                reply({"ok": True, "throughput": processor_throughput(command["spans"], command["repeats"])})
            elif op == "profile":
                reply({"ok": True, "hot_spots": pipeline.profile(command["mode"], command["n"], command["top"])})
            elif op == "quit":
                pipeline.close()
                reply({"ok": True})
                return 0
            else:
                reply({"ok": False, "error": f"unknown op {op!r}"})
        except Exception as exc:
            reply({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
    return 0


# --------------------------------------------------------------------------------------------
# Parent side: orchestration, statistics, report.
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Arm:
    """A measured arm: which pipeline (``kind``) and, for a candidate change, where its llmmeter lives."""

    name: str
    kind: str
    pythonpath: str | None = None  # prepended to PYTHONPATH: a scratch copy of llmmeter shadows the installed one


def parse_variant(text: str) -> Arm:
    """``NAME=DIR``: an extra llmmeter arm importing llmmeter from DIR (a scratch copy with a candidate change)."""
    name, sep, directory = text.partition("=")
    if not sep or not name or not directory:
        raise argparse.ArgumentTypeError(f"--variant expects NAME=DIR, got {text!r}")
    if not os.path.isdir(os.path.join(directory, "llmmeter")):
        raise argparse.ArgumentTypeError(f"--variant {name}: {directory!r} has no llmmeter/ package")
    return Arm(f"llmmeter@{name}", "llmmeter", os.path.abspath(directory))


class Worker:
    """One arm's subprocess."""

    def __init__(self, arm: Arm) -> None:
        self.arm = arm
        env = dict(os.environ, LLMMETER_SUMMARY="off", PYTHONHASHSEED="0")
        if arm.pythonpath:
            env["PYTHONPATH"] = os.pathsep.join(p for p in (arm.pythonpath, env.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--worker", arm.kind],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        hello = self._read()
        self.available = bool(hello.get("ok"))
        self.error = hello.get("error")
        self.versions = hello.get("versions", {})

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            return {"ok": False, "error": f"worker {self.arm.name} exited with {self.proc.wait()}"}
        return json.loads(line)

    def ask(self, **command: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        answer = self._read()
        if not answer.get("ok"):
            raise RuntimeError(f"arm {self.arm.name}: {command['op']} failed: {answer.get('error')}")
        return answer

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                if self.available:
                    self.ask(op="quit")
                else:
                    self.proc.stdin.close()  # type: ignore[union-attr]
            except Exception:
                pass
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        raise ValueError("no samples")
    rank = max(0, min(len(sorted_values) - 1, math.ceil(q / 100 * len(sorted_values)) - 1))
    return sorted_values[rank]


def describe(samples_ns: list[int]) -> dict[str, Any]:
    values = sorted(s / 1000 for s in samples_ns)
    return {
        "samples": len(values),
        "median_us": statistics.median(values),
        "p95_us": percentile(values, 95),
        "mean_us": statistics.fmean(values),
        "min_us": values[0],
    }


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


def verdict(r: float | None) -> str:
    if r is None:
        return "n/a"
    if r <= 0.5:
        return "goal met (<= 0.5x openai-v2)"
    if r <= 1.0:
        return "floor met (<= 1x openai-v2)"
    return "SLOWER than openai-v2"


def measure(
    arms_to_run: list[Arm],
    rounds: int,
    calls: int,
    warmup: int,
    profile_calls: int,
    throughput_spans: int,
    throughput_repeats: int,
    log: Callable[[str], None],
) -> dict[str, Any]:
    workers = {arm.name: Worker(arm) for arm in arms_to_run}
    try:
        live = [name for name, worker in workers.items() if worker.available]
        for name, worker in workers.items():
            if not worker.available:
                log(f"arm {name} unavailable: {worker.error}")
        for name in live:  # warm-up: imports, price table, first-use caches; not recorded
            for mode in MODES:
                workers[name].ask(op="run", mode=mode, n=warmup)
        # samples[arm][mode][clock] and per_round[arm][mode][clock]: every call, and each batch's median.
        samples: dict[str, dict[str, dict[str, list[int]]]] = {
            name: {mode: {clock: [] for clock in CLOCKS} for mode in MODES} for name in live
        }
        per_round: dict[str, dict[str, dict[str, list[float]]]] = {
            name: {mode: {clock: [] for clock in CLOCKS} for mode in MODES} for name in live
        }
        for r in range(rounds):
            order = live[r % len(live) :] + live[: r % len(live)]  # rotate who goes first
            for mode in MODES if r % 2 == 0 else tuple(reversed(MODES)):
                for name in order:
                    batch = workers[name].ask(op="run", mode=mode, n=calls)["samples_ns"]
                    for clock in CLOCKS:
                        samples[name][mode][clock].extend(batch[clock])
                        per_round[name][mode][clock].append(statistics.median(batch[clock]) / 1000)
            log(f"round {r + 1}/{rounds} done")
        checks = {name: workers[name].ask(op="check")["check"] for name in live}
        # The span processor alone, measured in each llmmeter worker so a variant runs its own processor.
        throughput = {
            name: workers[name].ask(op="throughput", spans=throughput_spans, repeats=throughput_repeats)["throughput"]
            for name in live
            if workers[name].arm.kind == "llmmeter"
        }
        profiles: dict[str, dict[str, Any]] = {}
        if profile_calls:
            for name in live:
                if name != "bare":
                    profiles[name] = {
                        mode: workers[name].ask(op="profile", mode=mode, n=profile_calls, top=25)["hot_spots"]
                        for mode in MODES
                    }
        versions = {name: worker.versions for name, worker in workers.items() if worker.available}
    finally:
        for worker in workers.values():
            worker.close()

    arms: dict[str, Any] = {}
    for name, worker in workers.items():
        if name not in samples:
            arms[name] = {"available": False, "error": worker.error}
            continue
        arms[name] = {
            "available": True,
            "kind": worker.arm.kind,
            "pythonpath": worker.arm.pythonpath,
            "verified": checks[name],
            "modes": {
                mode: {clock: describe(samples[name][mode][clock]) for clock in CLOCKS} for mode in MODES
            },
        }
    added: dict[str, Any] = {}
    if "bare" in samples:
        for name in samples:
            if name == "bare":
                continue
            added[name] = {mode: {} for mode in MODES}
            for mode in MODES:
                for clock in CLOCKS:
                    mine, base = arms[name]["modes"][mode][clock], arms["bare"]["modes"][mode][clock]
                    rounds_mine, rounds_bare = per_round[name][mode][clock], per_round["bare"][mode][clock]
                    paired = [a - b for a, b in zip(rounds_mine, rounds_bare, strict=True)]
                    added[name][mode][clock] = {
                        "median_us": mine["median_us"] - base["median_us"],
                        "p95_us": mine["p95_us"] - base["p95_us"],
                        # Per-round paired differences of medians: their spread shows how stable the figure is.
                        "median_us_by_round": paired,
                        "median_us_paired": statistics.median(paired),
                    }
    ratios: dict[str, Any] = {}
    if "openai_v2" in added:
        for name in added:
            if name == "openai_v2" or not name.startswith("llmmeter"):
                continue
            key = "llmmeter_vs_openai_v2" if name == "llmmeter" else f"{name}_vs_openai_v2"
            ratios[key] = {mode: {} for mode in MODES}
            for mode in MODES:
                for clock in CLOCKS:
                    mine, theirs = added[name][mode][clock], added["openai_v2"][mode][clock]
                    median_ratio = ratio(mine["median_us"], theirs["median_us"])
                    ratios[key][mode][clock] = {
                        "median": median_ratio,
                        "p95": ratio(mine["p95_us"], theirs["p95_us"]),
                        "median_paired": ratio(mine["median_us_paired"], theirs["median_us_paired"]),
                        "verdict": verdict(median_ratio),
                    }
    return {
        "arms": arms,
        "added": added,
        "ratios": ratios,
        "processor_throughput": throughput.pop("llmmeter", {}),
        "processor_throughput_variants": throughput,
        "profiles": profiles,
        "versions": versions,
    }


# --------------------------------------------------------------------------------------------
# The span processor alone.
# --------------------------------------------------------------------------------------------
def processor_throughput(spans: int, repeats: int) -> dict[str, Any]:
    """Finished spans per second counted by ``LLMMeterSpanProcessor`` (on_end, then the deferred counting it
    queues), per kind of span, and the µs of on_end alone (the app's thread)."""
    from llmmeter import names
    from llmmeter.processor import LLMMeterSpanProcessor
    from llmmeter.views import llmmeter_views
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
    from opentelemetry.trace import SpanContext, SpanKind, TraceFlags

    llmmeter_scope = InstrumentationScope("llmmeter.instrumentors.openai")
    official_scope = InstrumentationScope("opentelemetry.instrumentation.openai_v2")
    http_scope = InstrumentationScope("opentelemetry.instrumentation.requests")
    base = {
        names.OPERATION: names.OP_CHAT,
        names.REQUEST_MODEL: MODEL,
        names.RESPONSE_MODEL: MODEL + "-2024-07-18",
        names.USAGE_INPUT_TOKENS: USAGE["prompt_tokens"],
        names.USAGE_OUTPUT_TOKENS: USAGE["completion_tokens"],
        names.FINISH_REASONS: ("stop",),
    }
    ours = {
        **base,
        names.PROVIDER: names.PROVIDER_OPENAI,
        names.LLMMETER_PRICED: True,
        names.COST_USD: 8.1e-6,
        names.LLMMETER_ESTIMATED: False,
    }
    tenants = [f"tenant-{i}" for i in range(10)]
    features = ["search", "chat", "summarize"]

    def attributed(i: int) -> dict[str, Any]:
        return {
            **ours,
            names.ATTRIBUTION_SPAN_PREFIX + "tenant": tenants[i % len(tenants)],
            names.ATTRIBUTION_SPAN_PREFIX + "feature": features[i % len(features)],
        }

    kinds: dict[str, tuple[InstrumentationScope, Callable[[int], dict[str, Any]], str]] = {
        "llmmeter_span": (llmmeter_scope, lambda i: ours, "llmmeter's own span (cost already on it)"),
        "llmmeter_span_attributed": (llmmeter_scope, attributed, "llmmeter span with tenant + feature labels"),
        "openai_v2_span": (
            official_scope,
            lambda i: {**base, names.LEGACY_SYSTEM: "openai"},
            "openai-v2 span (priced by the processor)",
        ),
        "non_genai_span": (http_scope, lambda i: {"http.request.method": "POST"}, "HTTP span (ignored)"),
    }
    pool = 1000
    now = time.time_ns()
    results: dict[str, Any] = {}
    for kind, (scope, attrs_of, what) in kinds.items():
        made = [
            ReadableSpan(
                name="chat " + MODEL,
                context=SpanContext(trace_id=i + 1, span_id=i + 1, is_remote=False, trace_flags=TraceFlags(1)),
                attributes=attrs_of(i),
                kind=SpanKind.CLIENT,
                start_time=now,
                end_time=now + 900_000,
                instrumentation_scope=scope,
            )
            for i in range(pool)
        ]
        reader = InMemoryMetricReader()
        meter_provider = MeterProvider(metric_readers=[reader], views=llmmeter_views())
        processor = LLMMeterSpanProcessor(meter_provider=meter_provider)
        for span in made:  # warm-up: label caches, price table
            processor.on_end(span)
        processor.force_flush()
        # Queue the whole batch (no background thread, no inline fallback), then count it here: the two
        # parts are timed apart on this thread. getattr: a --variant copy may predate the deferred queue.
        deferred = getattr(processor, "_deferred", None)
        if hasattr(deferred, "wake_at"):
            deferred.wake_at = deferred.max_queued = spans + 1
        rates, wall_rates, on_end_rates = [], [], []
        for _ in range(repeats):
            batch = [made[i % pool] for i in range(spans)]
            gc.collect()
            start_cpu = time.thread_time_ns()
            start = time.perf_counter_ns()
            for span in batch:
                processor.on_end(span)
            on_end_cpu = time.thread_time_ns() - start_cpu
            processor.force_flush()  # counts what on_end queued: sums, histogram records, tally
            elapsed = time.perf_counter_ns() - start
            elapsed_cpu = time.thread_time_ns() - start_cpu
            wall_rates.append(spans / (max(elapsed, 1) / 1e9))
            rates.append(spans / (max(elapsed_cpu, 1) / 1e9))
            on_end_rates.append(spans / (max(on_end_cpu, 1) / 1e9))
        requests = 0.0
        data = reader.get_metrics_data()
        for rm in data.resource_metrics if data is not None else ():
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name == names.METRIC_REQUESTS:
                        requests += sum(p.value for p in metric.data.data_points)
        meter_provider.shutdown()
        rate = statistics.median(rates)
        results[kind] = {
            "description": what,
            # Counted end to end (on_end + the deferred counting), by this thread's CPU time (other
            # processes on the box do not count).
            "spans_per_s": rate,
            "us_per_span": 1e6 / rate,
            # on_end alone: what the app's thread pays when a span ends.
            "on_end_us_per_span": 1e6 / statistics.median(on_end_rates),
            "spans_per_s_wall": statistics.median(wall_rates),
            "spans": spans,
            "repeats": repeats,
            "requests_counted": requests,  # proof the spans were counted (0 for non-GenAI spans)
        }
    return results


# --------------------------------------------------------------------------------------------
# Report.
# --------------------------------------------------------------------------------------------
def render(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(Console().width, 150))
    config = result["config"]
    table = Table(
        title=f"µs per OpenAI call (MockTransport, {config['rounds']} rounds x {config['calls_per_batch']} calls)"
    )
    table.add_column("mode")
    table.add_column("arm")
    for clock in CLOCKS:
        table.add_column(f"{clock} median", justify="right")
        table.add_column(f"{clock} p95", justify="right")
        table.add_column(f"{clock} added (median)", justify="right")
    for mode in MODES:
        for arm, info in result["arms"].items():
            if not info["available"]:
                table.add_row(mode, arm, "unavailable")
                continue
            cells = [mode, arm]
            for clock in CLOCKS:
                stats = info["modes"][mode][clock]
                add = result["added"].get(arm, {}).get(mode, {}).get(clock)
                cells += [
                    f"{stats['median_us']:.1f}",
                    f"{stats['p95_us']:.1f}",
                    f"{add['median_us']:.1f}" if add else "-",
                ]
            table.add_row(*cells)
        table.add_section()
    console.print(table)

    if result["ratios"]:
        ratios = Table(title="added / openai-v2 added (floor <= 1, goal <= 0.5)")
        for column in ("arm", "mode", "clock", "median", "p95", "paired rounds", "verdict (median)"):
            ratios.add_column(column)
        for key, modes in result["ratios"].items():
            for mode, clocks in modes.items():
                for clock, r in clocks.items():
                    ratios.add_row(
                        key.removesuffix("_vs_openai_v2"),
                        mode,
                        clock,
                        _fmt(r["median"]),
                        _fmt(r["p95"]),
                        _fmt(r["median_paired"]),
                        r["verdict"],
                    )
        console.print(ratios)

    throughputs = {"llmmeter": result.get("processor_throughput") or {}}
    throughputs.update(result.get("processor_throughput_variants") or {})
    for arm, figures in throughputs.items():
        if not figures:
            continue
        proc = Table(title=f"LLMMeterSpanProcessor: spans counted, and on_end alone ({arm})")
        for column in ("span", "spans/s counted", "µs/span counted", "µs/span on_end"):
            proc.add_column(column, justify="right" if column != "span" else "left")
        for info in figures.values():
            on_end = info.get("on_end_us_per_span")
            proc.add_row(
                info["description"],
                f"{info['spans_per_s']:,.0f}",
                f"{info['us_per_span']:.2f}",
                f"{on_end:.2f}" if on_end is not None else "-",
            )
        console.print(proc)

    for arm, modes in result.get("profiles", {}).items():
        for mode, rows in modes.items():
            hot = Table(title=f"cProfile hot spots: {arm} / {mode} (instrumentation code, self µs per call)")
            hot.add_column("function")
            hot.add_column("calls/call", justify="right")
            hot.add_column("self µs", justify="right")
            hot.add_column("cum µs", justify="right")
            for row in rows[:15]:
                hot.add_row(
                    row["function"],
                    f"{row['calls_per_call']:.1f}",
                    f"{row['self_us_per_call']:.1f}",
                    f"{row['cumulative_us_per_call']:.1f}",
                )
            console.print(hot)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20, help="interleaved rounds (each arm runs every batch)")
    parser.add_argument("--calls", type=int, default=200, help="calls per batch (per arm, mode and round)")
    parser.add_argument("--warmup", type=int, default=200, help="untimed calls per arm and mode before measuring")
    parser.add_argument("--spans", type=int, default=50_000, help="spans per processor throughput repeat")
    parser.add_argument("--span-repeats", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="also cProfile the instrumented arms")
    parser.add_argument("--profile-calls", type=int, default=2000)
    parser.add_argument("--quick", action="store_true", help="smoke run: few calls, no meaningful figures")
    parser.add_argument("--out", default=DEFAULT_OUT, help="JSON result file")
    parser.add_argument("--no-table", action="store_true", help="write the JSON only")
    parser.add_argument(
        "--diagnose", action="store_true", help="add an arm without llmmeter's span processor (splits its cost)"
    )
    parser.add_argument(
        "--variant",
        action="append",
        type=parse_variant,
        default=[],
        metavar="NAME=DIR",
        help="add an llmmeter arm importing llmmeter from DIR/llmmeter (a scratch copy with a candidate change)",
    )
    parser.add_argument("--worker", choices=KINDS, help=argparse.SUPPRESS)
    args = parser.parse_args(list(argv) if argv is not None else None)

    if args.worker:
        return worker_main(args.worker)
    if args.quick:
        args.rounds, args.calls, args.warmup, args.spans, args.span_repeats = 2, 5, 3, 2000, 1
        args.profile_calls = 5

    load_start = _loadavg()
    arms = [Arm(name, name) for name in ARMS]
    if args.diagnose:
        arms.append(Arm("llmmeter_no_processor", "llmmeter_no_processor"))
    arms.extend(args.variant)
    started = time.perf_counter()
    measured = measure(
        arms,
        args.rounds,
        args.calls,
        args.warmup,
        args.profile_calls if args.profile else 0,
        args.spans,
        args.span_repeats,
        _log,
    )
    versions = measured.pop("versions")
    result = {
        **result_header(SCHEMA_VERSION),
        "environment": {
            **machine(),
            "cpus": os.cpu_count(),
            # Load average at start and end: a busy machine inflates wall-clock figures (not cpu ones).
            "loadavg_start": load_start,
            "loadavg_end": _loadavg(),
            "versions": versions.get("llmmeter") or next(iter(versions.values()), {}),
            "llmmeter_source": {name: v.get("llmmeter_source") for name, v in versions.items()},
        },
        "config": {
            "rounds": args.rounds,
            "calls_per_batch": args.calls,
            "warmup": args.warmup,
            "model": MODEL,
            "stream_content_chunks": STREAM_CONTENT_CHUNKS,
            "stream_usage_chunk": True,
            "quick": args.quick,
            "transport": "httpx2.MockTransport",
        },
        **measured,
        "elapsed_s": time.perf_counter() - started,
    }
    write_result(result, args.out)
    if not args.no_table:
        render(result)
        print(f"results: {args.out}")
    return 0


def result_header(schema: int) -> dict[str, Any]:
    """The first keys of a benchmark's JSON result: its schema version and when it was made."""
    return {"schema": schema, "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def machine() -> dict[str, str]:
    """What a result's figures were measured on."""
    return {"python": platform.python_version(), "platform": platform.platform()}


def write_result(result: dict[str, Any], path: str) -> None:
    """The JSON result, replaced atomically (a reader never sees half a file)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=2)
        fh.write("\n")
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
