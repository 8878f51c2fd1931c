"""The app while its collector is away: an agent-collector outage of 30 s in the middle of a steady load.

Pipeline (real parts, 127.0.0.1): the app (this process: the real ``openai`` SDK against llmmeter's demo
server, instrumented by llmmeter, OTLP/HTTP exporters with the SDK's BatchSpanProcessor) -> agent collector
(collector/agent.yaml) -> gateway (collector/gateway.yaml) -> Jaeger v2 (collector/jaeger.yaml); binaries
from ``scripts/build-collector.sh``, configs rendered as the tests do (tests/collector_support.py).

Timeline: ``--before`` seconds with the agent up, the agent SIGKILLed for ``--outage`` seconds (default 30),
started again, ``--after`` seconds more; the app makes ``--rate`` chat calls a second throughout. Reported:
per-call latency (median/p95/p99 ms) in each window, the app's RSS (max per window), the spans the app
made, the spans Jaeger holds at the end, the SDK's own count of spans it dropped (BatchSpanProcessor's
``otel.sdk.processor.span.processed`` with ``error.type``; OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED), and
that llmmeter's exit summary still prints. Figures, not assertions: collector/README.md quotes them.

Run: ``python benchmarks/bench_collector_outage.py`` (about 75 s plus start-up); results also in
``benchmarks/results/collector-outage.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import sys
import tempfile
import threading
import time
from typing import Any

os.environ["OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED"] = "true"  # before the SDK reads it
ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import collector_support as cs  # noqa: E402
import openai  # noqa: E402
from llmmeter import estimate, summary  # noqa: E402
from llmmeter.demo.server import DemoServer  # noqa: E402
from llmmeter.pipeline import configure, uninstrument_all  # noqa: E402
from llmmeter.views import llmmeter_views  # noqa: E402
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter  # noqa: E402
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: E402
from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, PeriodicExportingMetricReader  # noqa: E402
from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: E402
from rich.console import Console  # noqa: E402

SERVICE = "llmmeter-outage-bench"


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def sdk_drops(reader: InMemoryMetricReader) -> dict[str, int]:
    """BatchSpanProcessor's own count of processed spans, by error.type ("ok" = exported or handed on)."""
    out: dict[str, int] = {}
    data = reader.get_metrics_data()
    for rm in data.resource_metrics if data else []:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name == "otel.sdk.processor.span.processed":
                    for point in metric.data.data_points:
                        key = str(point.attributes.get("error.type", "ok"))
                        out[key] = out.get(key, 0) + int(point.value)
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", type=float, default=20)
    parser.add_argument("--outage", type=float, default=30)
    parser.add_argument("--after", type=float, default=20)
    parser.add_argument("--rate", type=float, default=20, help="chat calls per second")
    args = parser.parse_args()
    console = Console()
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="llmmeter-outage-"))
    jaeger_ports, gateway, agent = cs.JaegerPorts(), cs.CollectorPorts(), cs.CollectorPorts()
    procs = {
        "jaeger": cs.jaeger(cs.render_jaeger(tmp, jaeger_ports), jaeger_ports, tmp),
        "gateway": cs.collector("gateway", cs.render(cs.GATEWAY, tmp, gateway, jaeger_grpc=jaeger_ports.grpc),
                                gateway, tmp),
        "agent": cs.collector("agent", cs.render(cs.AGENT, tmp, agent, gateways=[f"127.0.0.1:{gateway.grpc}"]),
                              agent, tmp),
    }
    with cs.stopping(*procs.values()):
        for proc in procs.values():
            proc.start()
        endpoint = f"http://127.0.0.1:{agent.http}"
        sdk_reader = InMemoryMetricReader()
        sdk_meters = MeterProvider(metric_readers=[sdk_reader])
        resource = Resource.create({"service.name": SERVICE})
        tracer_provider = TracerProvider(resource=resource)
        meter_provider = MeterProvider(resource=resource, views=llmmeter_views(), metric_readers=[
            PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=f"{endpoint}/v1/metrics"),
                                          export_interval_millis=5000)])
        processor = configure(tracer_provider=tracer_provider, meter_provider=meter_provider)
        tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces"),
                                                              meter_provider=sdk_meters))
        estimate.warm_up(wait=True, timeout=30)
        windows: dict[str, dict[str, list[float]]] = {w: {"latency_ms": [], "rss_mib": []}
                                                       for w in ("before", "outage", "after")}
        window = "before"
        stop = threading.Event()

        def sample_rss() -> None:
            while not stop.wait(0.5):
                windows[window]["rss_mib"].append(rss_mib())

        sampler = threading.Thread(target=sample_rss, daemon=True)
        sampler.start()
        calls = 0
        with DemoServer() as demo:
            client = openai.OpenAI(base_url=demo.base_url, api_key="demo-not-a-secret", max_retries=0)
            plan = [("before", args.before), ("outage", args.outage), ("after", args.after)]
            for name, seconds in plan:
                window = name
                if name == "outage":
                    procs["agent"].kill()
                    console.print(f"agent collector SIGKILLed for {seconds:.0f} s")
                if name == "after":
                    restart = time.monotonic()
                    procs["agent"].start()
                    console.print(f"agent collector back after {time.monotonic() - restart:.1f} s start-up")
                end = time.monotonic() + seconds
                next_call = time.monotonic()
                while time.monotonic() < end:
                    start = time.perf_counter()
                    client.chat.completions.create(model="gpt-4o-mini",
                                                   messages=[{"role": "user", "content": "Where is my order?"}])
                    windows[name]["latency_ms"].append((time.perf_counter() - start) * 1000)
                    calls += 1
                    next_call += 1 / args.rate
                    time.sleep(max(0.0, next_call - time.monotonic()))
        stop.set()
        tracer_provider.force_flush(60_000)
        meter_provider.force_flush()
        uninstrument_all()
        jaeger_api = cs.JaegerAPI(jaeger_ports)
        made = calls  # one chat span per call
        last, stable_since = -1, time.monotonic()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            n = len(jaeger_api.spans(SERVICE))
            if n != last:
                last, stable_since = n, time.monotonic()
            elif n == made or time.monotonic() - stable_since > 15:
                break
            time.sleep(1)
        drops = sdk_drops(sdk_reader)
        console.print("llmmeter's exit summary (what `summary=on` prints at exit):")
        summary.render_summary(processor.tally, console)
        tracer_provider.shutdown()
        meter_provider.shutdown()

    result: dict[str, Any] = {
        "rate_per_s": args.rate, "outage_s": args.outage, "spans_made": made, "spans_in_jaeger": last,
        "spans_lost": made - last, "sdk_processed_by_error_type": drops, "windows": {},
    }
    for name, data in windows.items():
        lat = data["latency_ms"]
        result["windows"][name] = {
            "calls": len(lat), "median_ms": round(statistics.median(lat), 2),
            "p95_ms": round(percentile(lat, 0.95), 2), "p99_ms": round(percentile(lat, 0.99), 2),
            "rss_max_mib": round(max(data["rss_mib"] or [float("nan")]), 1),
        }
    console.print_json(json.dumps(result))
    out = ROOT / "benchmarks" / "results" / "collector-outage.json"
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
