"""Collector CPU and memory per 1,000 spans/s: otelcol-llmmeter running the shipped single-node config
(otel-collector.yaml, endpoints on 127.0.0.1 as the tests render them) in front of Jaeger v2 (in memory).

A sender posts OTLP/HTTP protobuf trace requests (``--batch`` spans of ~``--attr-bytes`` attribute bytes
each, the size of an llmmeter chat span) at ``--rate`` spans/s for ``--seconds``; the collector's CPU time
(utime+stime from /proc) and RSS are read before and after. Reported: CPU cores used, CPU per 1,000
spans/s, max RSS. Figures, not assertions: collector/README.md quotes them.

Run: ``python benchmarks/bench_collector_load.py --rate 1000 --rate 5000`` (each rate ~``--seconds`` s).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import collector_support as cs  # noqa: E402
from test_pipeline_faults import post, trace_request  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def rss_mib(pid: int) -> float:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=int, action="append", help="spans per second (repeatable)")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--batch", type=int, default=100, help="spans per request")
    parser.add_argument("--attr-bytes", type=int, default=600)
    args = parser.parse_args()
    rates = args.rate or [1000, 5000]
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="llmmeter-load-"))
    jaeger_ports, ports = cs.JaegerPorts(), cs.CollectorPorts()
    procs = [cs.jaeger(cs.render_jaeger(tmp, jaeger_ports), jaeger_ports, tmp),
             cs.collector("collector", cs.render(cs.SINGLE, tmp, ports, jaeger_grpc=jaeger_ports.grpc), ports, tmp)]
    results = []
    with cs.stopping(*procs):
        for proc in procs:
            proc.start()
        pid = procs[1].proc.pid  # type: ignore[union-attr]
        url = f"http://127.0.0.1:{ports.http}/v1/traces"
        time.sleep(2)
        for rate in rates:
            body = trace_request(args.batch, args.attr_bytes, seed=rate)
            interval = args.batch / rate
            statuses: dict[int, int] = {}
            max_rss = [rss_mib(pid)]
            stop = threading.Event()

            def sample(stop: threading.Event = stop, max_rss: list[float] = max_rss) -> None:
                while not stop.wait(0.5):
                    max_rss[0] = max(max_rss[0], rss_mib(pid))

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            cpu0, t0 = cpu_seconds(pid), time.monotonic()
            next_at = t0
            while time.monotonic() - t0 < args.seconds:
                status = post(url, body)
                statuses[status] = statuses.get(status, 0) + 1
                next_at += interval
                time.sleep(max(0.0, next_at - time.monotonic()))
            elapsed = time.monotonic() - t0
            cpu = cpu_seconds(pid) - cpu0
            stop.set()
            sent = statuses.get(200, 0) * args.batch
            achieved = sent / elapsed
            results.append({
                "target_spans_per_s": rate, "achieved_spans_per_s": round(achieved), "statuses": statuses,
                "collector_cpu_cores": round(cpu / elapsed, 3),
                "cpu_cores_per_1000_spans_s": round(cpu / elapsed / (achieved / 1000), 3),
                "max_rss_mib": round(max_rss[0], 1),
            })
            print(json.dumps(results[-1]))
    out = ROOT / "benchmarks" / "results" / "collector-load.json"
    report = {"batch": args.batch, "attr_bytes": args.attr_bytes, "results": results}
    out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
