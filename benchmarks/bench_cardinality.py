"""Bounded cardinality, measured: N LLM calls from N distinct users through the real span processor.

Every call is a real SDK span (``chat gpt-4o-mini``, kind CLIENT, semconv usage attributes, priced,
``llmmeter.attr.user`` = a new user each time) ended on a real TracerProvider whose only processor is
llmmeter's ``LLMMeterSpanProcessor`` with ``user`` enabled as a metric label; metrics go to a real SDK
MeterProvider with an in-memory reader. No network. The processor keeps at most ``cap`` values per
label and folds the rest into ``__overflow__``, so series and memory must stop growing once the cap is
reached, however many users come.

    python benchmarks/bench_cardinality.py               # 1,000,000 calls, cap 1000
    python benchmarks/bench_cardinality.py -n 200000 --cap 500 --tracemalloc

Reports, at checkpoints: current RSS, tracemalloc (optional: ~3x slower), live GC objects; at the end
peak RSS, series per metric and the overflow count. ``run()`` is what tests/test_attribution_cardinality.py
calls with a small N.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import sys
import time
import tracemalloc
from dataclasses import asdict, dataclass, field

from llmmeter import names
from llmmeter.config import Settings
from llmmeter.processor import LLMMeterSpanProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind

USER_ATTR = names.ATTRIBUTION_SPAN_PREFIX + "user"
TENANT_ATTR = names.ATTRIBUTION_SPAN_PREFIX + "tenant"


@dataclass
class Checkpoint:
    calls: int
    rss_mb: float
    gc_objects: int
    traced_mb: float | None


@dataclass
class Result:
    calls: int
    cap: int
    seconds: float
    peak_rss_mb: float
    user_values: int  # distinct user label values across llmmeter.requests points
    series: dict[str, int]  # metric name -> number of points (series)
    overflow_folds: float
    seen_values: int  # values the processor remembers for the user label
    checkpoints: list[Checkpoint] = field(default_factory=list)


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as handle:
            pages = int(handle.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def _collect(reader: InMemoryMetricReader) -> tuple[dict[str, int], set[str], float]:
    series: dict[str, int] = {}
    users: set[str] = set()
    overflow = 0.0
    data = reader.get_metrics_data()
    for rm in data.resource_metrics if data else ():
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                points = list(metric.data.data_points)
                series[metric.name] = len(points)
                for point in points:
                    attrs = point.attributes or {}
                    if metric.name == names.METRIC_REQUESTS and "user" in attrs:
                        users.add(attrs["user"])
                    if metric.name == names.METRIC_ATTRIBUTION_OVERFLOW:
                        overflow += point.value
    return series, users, overflow


def run(n: int, cap: int = 1000, checkpoints: int = 10, trace_memory: bool = False) -> Result:
    """Send ``n`` calls from ``n`` distinct users (cycling over 3 tenants) through the processor."""
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    settings = Settings(label_keys=("tenant", "feature", "user"), max_values_per_label=cap)
    processor = LLMMeterSpanProcessor(meter_provider=meter_provider, settings=settings)
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(processor)
    tracer = tracer_provider.get_tracer("bench")

    base = {
        names.OPERATION: names.OP_CHAT,
        names.PROVIDER: names.PROVIDER_OPENAI,
        names.REQUEST_MODEL: "gpt-4o-mini",
        names.RESPONSE_MODEL: "gpt-4o-mini",
        names.USAGE_INPUT_TOKENS: 120,
        names.USAGE_OUTPUT_TOKENS: 40,
        names.LLMMETER_PRICED: True,
        names.COST_USD: 0.000042,
        names.LLMMETER_ESTIMATED: False,
        names.ATTRIBUTION_SPAN_PREFIX + "feature": "chat",
    }
    tenants = ("acme", "globex", "initech")
    every = max(1, n // max(1, checkpoints))
    result = Result(n, cap, 0.0, 0.0, 0, {}, 0.0, 0)
    if trace_memory:
        tracemalloc.start()
    gc.collect()
    started = time.perf_counter()
    for i in range(n):
        attrs = dict(base)
        attrs[USER_ATTR] = f"user-{i}"
        attrs[TENANT_ATTR] = tenants[i % 3]
        tracer.start_span("chat gpt-4o-mini", kind=SpanKind.CLIENT, attributes=attrs).end()
        if (i + 1) % every == 0:
            # Spans still queued for counting (llmmeter.deferred: at most MAX_QUEUED, transient) are counted
            # first, so checkpoints compare what the processor retains, not how full its queue happened to be.
            processor.force_flush()
            gc.collect()
            traced = tracemalloc.get_traced_memory()[0] / 2**20 if trace_memory else None
            result.checkpoints.append(Checkpoint(i + 1, round(_rss_mb(), 1), len(gc.get_objects()), traced))
    processor.force_flush()  # the rate includes counting every span, not just queueing it
    result.seconds = round(time.perf_counter() - started, 2)
    if trace_memory:
        tracemalloc.stop()
    series, users, overflow = _collect(reader)
    result.series = series
    result.user_values = len(users)
    result.overflow_folds = overflow
    result.seen_values = len(processor._seen.get("user", ()))
    result.peak_rss_mb = round(_peak_rss_mb(), 1)
    tracer_provider.shutdown()
    meter_provider.shutdown()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=1_000_000, help="calls (each from a new user)")
    parser.add_argument("--cap", type=int, default=1000, help="max values per label (LLMMETER_MAX_VALUES_PER_LABEL)")
    parser.add_argument("--tracemalloc", action="store_true", help="also trace Python allocations (slower)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    result = run(args.n, args.cap, trace_memory=args.tracemalloc)
    if args.json:
        print(json.dumps(asdict(result), indent=2))
        return 0
    print(f"{result.calls:,} calls, {result.calls:,} distinct users, cap {result.cap} values/label, "
          f"{result.seconds}s ({result.calls / max(result.seconds, 1e-9):,.0f} calls/s)")
    print(f"{'calls':>12} {'RSS MB':>8} {'GC objects':>11} {'traced MB':>10}")
    for cp in result.checkpoints:
        traced = f"{cp.traced_mb:10.1f}" if cp.traced_mb is not None else f"{'-':>10}"
        print(f"{cp.calls:>12,} {cp.rss_mb:>8.1f} {cp.gc_objects:>11,} {traced}")
    print(f"peak RSS {result.peak_rss_mb} MB; user label values in metrics: {result.user_values} "
          f"(cap + __overflow__); processor remembers {result.seen_values}; "
          f"folds counted: {result.overflow_folds:,.0f}")
    print("series per metric: " + ", ".join(f"{k}={v}" for k, v in sorted(result.series.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
