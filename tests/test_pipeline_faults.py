"""Faults in the real collector pipeline (otelcol-llmmeter + Jaeger v2 + Prometheus, see test_pipeline_e2e):
nothing the app sent is lost when a gateway crashes, and a burst against memory_limiter is refused, not
fatal. Figures (recovery, throughput) are printed for collector/README.md, never asserted as timings.
The 30 s agent outage (the app's latency and memory while its collector is away) is a benchmark with figures:
benchmarks/bench_collector_outage.py.
"""

from __future__ import annotations

import math
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
import test_prometheus_proof as proof
from collector_support import (
    SINGLE,
    CollectorPorts,
    JaegerPorts,
    Proc,
    collector,
    jaeger,
    own_metrics,
    render,
    render_jaeger,
    stopping,
    tags,
)
from llmmeter import names
from llmmeter.demo import scenarios
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from promtools import wait_until
from test_pipeline_e2e import SERVICE, SERVICE_LABEL, Stack, running_stack

M = names.metric_prometheus_name


@pytest.fixture
def stack(tmp_path) -> Iterator[Stack]:
    with running_stack(tmp_path, with_budgets=False) as running:
        yield running


def test_gateway_killed_mid_run_and_restarted_loses_nothing(stack: Stack) -> None:
    """SIGKILL one of the two gateways right after the app flushed a batch (so data is in flight inside it),
    keep the app sending while it is down, start it again: Jaeger holds every span the app exported and
    Prometheus's totals equal the spans' (the agent's persistent queue held the dead gateway's share; the
    gateway's own persistent queue holds what it had accepted)."""
    gateway = stack.procs["gateway-1"]
    for _ in range(3):
        scenarios.run_all(stack.client)
    stack.workload.flush()
    # Kill it the moment it has accepted spans from the agent: they are inside it, not yet in Jaeger.
    wait_until(lambda: own_metrics(stack.gateways[0]).get("otelcol_receiver_accepted_spans", 0) > 0, 30,
               "gateway-1 to accept spans", interval=0.05)
    gateway.kill()
    killed_at = time.monotonic()
    for _ in range(3):
        scenarios.run_all(stack.client)  # the app goes on; its exporter is never blocked by the outage
    stack.workload.flush()
    time.sleep(2)  # the agent has tried the dead gateway and queued its share
    gateway.start()
    spans = stack.workload.spans()
    llm = proof.llm_spans(spans)
    wait_until(lambda: len(stack.jaeger.spans(SERVICE)) >= len(spans), 120,
               f"Jaeger to hold all {len(spans)} spans after the gateway restart")
    recovered_after = time.monotonic() - killed_at
    in_jaeger = stack.jaeger.spans(SERVICE)
    assert len(in_jaeger) == len(spans)
    assert sorted(s["spanID"] for s in in_jaeger) == sorted(format(s.context.span_id, "016x") for s in spans)
    where = f'{{{SERVICE_LABEL}="{SERVICE}"}}'
    wait_until(lambda: stack.api.vector(f"sum({M(names.METRIC_REQUESTS)}{where})") == [({}, float(len(llm)))],
               60, "prometheus to show every request again")
    assert stack.api.scalar(f"sum({M(names.METRIC_COST)}{where})") == pytest.approx(proof.span_cost(spans), rel=1e-9)
    assert math.fsum(tags(s).get(names.COST_USD, 0.0) for s in in_jaeger) == pytest.approx(
        proof.span_cost(spans), rel=1e-12)
    print(f"\n[figure] gateway SIGKILLed and restarted: {len(spans)} spans, all in Jaeger "
          f"{recovered_after:.1f} s after the kill")


def span_ids(spans: list) -> set[str]:
    return {format(s.context.span_id, "016x") for s in spans}


def test_agent_down_the_app_goes_on_and_the_pipeline_resumes(stack: Stack) -> None:
    """The agent collector SIGKILLed for a few seconds (the 30 s version with latency and memory figures is
    benchmarks/bench_collector_outage.py): every call the app makes meanwhile returns normally and is still
    metered (its span made, its cost counted), and once the agent is back the spans made after it reach
    Jaeger and Prometheus's totals include every call, the outage's too (the counters are cumulative)."""
    agent = stack.procs["agent"]
    scenarios.run_all(stack.client)
    before = len(stack.workload.spans())
    agent.kill()
    outage_start = time.monotonic()
    for _ in range(2):
        scenarios.run_all(stack.client)  # raises nothing: the exporters fail in their own thread
    during = stack.workload.spans()[before:]
    assert len(proof.llm_spans(during)) == 2 * len(proof.llm_spans(stack.workload.spans()[:before]))
    time.sleep(max(0.0, 5 - (time.monotonic() - outage_start)))
    outage_s = time.monotonic() - outage_start
    agent.start()
    scenarios.run_all(stack.client)
    stack.workload.flush()
    spans = stack.workload.spans()
    after = spans[before + len(during):]
    wait_until(lambda: span_ids(after) <= {s["spanID"] for s in stack.jaeger.spans(SERVICE)}, 60,
               "the spans made after the agent came back to reach Jaeger")
    llm = proof.llm_spans(spans)
    where = f'{{{SERVICE_LABEL}="{SERVICE}"}}'
    wait_until(lambda: stack.api.vector(f"sum({M(names.METRIC_REQUESTS)}{where})") == [({}, float(len(llm)))],
               60, "prometheus to count every request, the outage's included")
    assert stack.api.scalar(f"sum({M(names.METRIC_COST)}{where})") == pytest.approx(proof.span_cost(spans), rel=1e-9)
    in_jaeger = {s["spanID"] for s in stack.jaeger.spans(SERVICE)}
    lost = len(span_ids(during) - in_jaeger)
    print(f"\n[figure] agent down {outage_s:.1f} s: {len(during)} spans made meanwhile, "
          f"{lost} of them never reached Jaeger (the SDK exporter gave up on them); metrics complete")


# --- memory_limiter under a burst --------------------------------------------------------------------
def trace_request(spans: int, attr_bytes: int, seed: int) -> bytes:
    """An OTLP/HTTP protobuf trace export of ``spans`` spans, each with one ``attr_bytes``-long attribute."""
    payload = AnyValue(string_value="x" * attr_bytes)
    now = time.time_ns()
    scope = ScopeSpans(spans=[Span(trace_id=(seed * 1_000_003 + i).to_bytes(16, "big"),
                                   span_id=(i + 1).to_bytes(8, "big"), name="burst",
                                   start_time_unix_nano=now, end_time_unix_nano=now + 1000,
                                   attributes=[KeyValue(key="payload", value=payload)]) for i in range(spans)])
    resource = ResourceSpans(scope_spans=[scope])
    resource.resource.attributes.append(KeyValue(key="service.name", value=AnyValue(string_value="burst")))
    return ExportTraceServiceRequest(resource_spans=[resource]).SerializeToString()


def post(url: str, body: bytes) -> int:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/x-protobuf"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return -1


SPANS_PER_REQUEST = 500
ATTR_BYTES = 2048  # ~1 MB per request
STEADY_SENDERS, BURST_SENDERS = 1, 10  # the burst: ten times the steady load
REQUESTS_PER_SENDER = 12


def send(url: str, senders: int, seed: int) -> tuple[dict[int, int], float]:
    """``senders`` threads, each posting REQUESTS_PER_SENDER requests back to back; status counts, seconds."""
    statuses: dict[int, int] = {}
    lock = threading.Lock()

    def sender(k: int) -> None:
        for r in range(REQUESTS_PER_SENDER):
            status = post(url, trace_request(SPANS_PER_REQUEST, ATTR_BYTES, seed + k * 1000 + r))
            with lock:
                statuses[status] = statuses.get(status, 0) + 1

    threads = [threading.Thread(target=sender, args=(k,)) for k in range(senders)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return statuses, time.monotonic() - start


def test_burst_against_memory_limiter_is_refused_then_recovers(tmp_path) -> None:
    """One collector (otel-collector.yaml's pipeline: memory_limiter first) with a small memory limit; a 10x
    burst of ~1 MB trace requests: memory_limiter refuses some (HTTP 503/429, retryable for the sender), the
    process never dies, and once the burst is over a normal request is accepted again."""
    jaeger_ports = JaegerPorts()
    ports = CollectorPorts()
    config_path = render(SINGLE, tmp_path, ports, jaeger_grpc=jaeger_ports.grpc, overrides={
        # The shipped limit is 80% of the machine's memory; a test cannot fill 19 GiB, so the same
        # processor is given a small limit. Soft limit = limit_mib - spike_limit_mib.
        "processors.memory_limiter": {"check_interval": "100ms", "limit_mib": 120, "spike_limit_mib": 40}})
    procs = [jaeger(render_jaeger(tmp_path, jaeger_ports), jaeger_ports, tmp_path),
             collector("collector", config_path, ports, tmp_path)]
    with stopping(*procs):
        for proc in procs:
            proc.start()
        url = f"http://127.0.0.1:{ports.http}/v1/traces"
        steady, steady_s = send(url, STEADY_SENDERS, seed=1)
        assert steady == {200: STEADY_SENDERS * REQUESTS_PER_SENDER}, steady
        burst, burst_s = send(url, BURST_SENDERS, seed=2)
        assert procs[1].alive(), f"collector died in the burst:\n{procs[1].tail()}"
        refused = sum(n for status, n in burst.items() if status in (429, 503))
        assert refused > 0, f"memory_limiter never refused: {burst}"
        assert set(burst) <= {200, 429, 503}, burst
        # Recovers: after the burst, the same request is accepted again.
        wait_until(lambda: post(url, trace_request(10, 16, seed=3)) == 200, 60, "the collector to accept again")
        assert procs[1].alive()
        metrics = own_metrics(ports)
        accepted = burst.get(200, 0) * SPANS_PER_REQUEST
        print(f"\n[figure] steady: {STEADY_SENDERS * REQUESTS_PER_SENDER * SPANS_PER_REQUEST / steady_s:,.0f} spans/s "
              f"accepted; burst x{BURST_SENDERS // STEADY_SENDERS}: {accepted / burst_s:,.0f} spans/s accepted, "
              f"{refused} of {sum(burst.values())} requests refused ({burst}); collector refused_spans="
              f"{metrics.get('otelcol_receiver_refused_spans', 0):,.0f}, "
              f"RSS now {rss_mib(procs[1]):.0f} MiB")


def rss_mib(proc: Proc) -> float:
    assert proc.proc is not None
    with open(f"/proc/{proc.proc.pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return math.nan


