"""What the agent-framework overhead benchmarks share (bench_frameworks.py, bench_crewai.py).

Each script knows its framework: the run it times, and how each arm instruments it. This module holds the rest,
written once so the scripts measure and report the same way: the OTel pipeline every arm gets, the clock, the
parent that runs the arms in rotating order (each in its own subprocess, since instrumentors patch globally) and
the summary (median run, what each arm adds per step, ratios to ``bare`` and to the other libraries).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

ARMS = ("bare", "llmmeter", "openinference", "openllmetry")
WARM_UP = 3  # untimed runs first: imports, tokenizer, first-call caches


def pipeline(arm: str) -> tuple[Any, Any]:
    """The (TracerProvider, MeterProvider) of every arm, set as the globals: spans batched to an exporter that
    discards them, metrics to an in-memory reader; the ``llmmeter`` arm adds ``llmmeter.configure`` (instrumentors
    are the script's to add)."""
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class Discard(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    tracer_provider = TracerProvider()
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(meter_provider)
    if arm == "llmmeter":
        from llmmeter.pipeline import configure

        configure(tracer_provider=tracer_provider, meter_provider=meter_provider, instrument=False)
    tracer_provider.add_span_processor(BatchSpanProcessor(Discard()))
    return tracer_provider, meter_provider


class Times(list):  # type: ignore[type-arg]
    """(wall us, cpu us) per timed run: wall is what a user waits (noisy on a shared machine), cpu the process's
    CPU time (export threads included)."""

    @contextmanager
    def run(self) -> Iterator[None]:
        wall, cpu = time.perf_counter_ns(), time.process_time_ns()
        yield
        self.append(((time.perf_counter_ns() - wall) / 1e3, (time.process_time_ns() - cpu) / 1e3))


def summary(samples: dict[str, list[list[float]]], steps: int) -> dict[str, Any]:
    """Per clock: the median run of each arm, what each arm adds per step over ``bare``, ``arm / bare`` and
    ``llmmeter added / other added``."""
    result: dict[str, Any] = {}
    for index, clock in enumerate(("wall", "cpu")):
        median = {arm: statistics.median(s[index] for s in v) for arm, v in samples.items()}
        added = {arm: median[arm] - median["bare"] for arm in ARMS}
        result[clock] = {
            "median_run_us": {a: round(v, 1) for a, v in median.items()},
            "added_per_step_us": {a: round(added[a] / steps, 1) for a in ARMS if a != "bare"},
            "ratio_to_bare": {a: round(median[a] / median["bare"], 3) for a in ARMS if a != "bare"},
            "llmmeter_added_over_other_added": {
                a: (round(added["llmmeter"] / added[a], 3) if added[a] > 0 else None)
                for a in ("openinference", "openllmetry")
            },
        }
    return result


def main(script: str, doc: str, worker: Callable[[str, int], list[Any]], what: str, *, steps: int, runs: int,
         quick_runs: int, out: str, details: Callable[[], dict[str, Any]] = dict) -> int:
    """The command line of a framework benchmark ``script``: ``--worker ARM`` times one arm (``worker(arm, runs)``)
    and prints its times; otherwise runs every arm ``--rounds`` times in rotating order, then prints and writes
    ``what`` ran, the runs per arm, the Python, ``details()`` (e.g. versions) and the :func:`summary`."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--runs", type=int, default=runs, help="timed runs per arm per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=out)
    parser.add_argument("--worker", choices=ARMS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.runs, args.rounds = quick_runs, 1
    if args.worker:
        print(json.dumps(worker(args.worker, args.runs)))
        return 0
    samples: dict[str, list[list[float]]] = {arm: [] for arm in ARMS}
    for r in range(args.rounds):
        order = ARMS[r % len(ARMS):] + ARMS[: r % len(ARMS)]
        for arm in order:
            done = subprocess.run([sys.executable, script, "--worker", arm, "--runs", str(args.runs)],
                                  check=True, capture_output=True, text=True)
            samples[arm].extend(json.loads(done.stdout.strip().splitlines()[-1]))
    result = {"what": what, "runs_per_arm": len(samples["bare"]), "python": sys.version.split()[0], **details(),
              **summary(samples, steps)}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(result, fh, indent=2)
    print(json.dumps(result, indent=2))
    return 0
