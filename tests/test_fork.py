"""Fork safety: children forked from a busy instrumented process neither hang nor re-export the parent's counts.

tests/fork_app.py is the parent (4 threads calling a local OpenAI-wire server, a metric reader collecting
every 5 ms, 120 children forked meanwhile, each making one call and exiting normally). The oracle is the
server's own request count: every process's exported ``llmmeter.requests`` summed must equal the calls
the server received, and each child must report exactly its one call.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest
from guard_support import CountingServer

CHILDREN = 120
APP = pathlib.Path(__file__).with_name("fork_app.py")

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX-only")


def test_children_forked_from_a_busy_parent_exit_and_count_only_their_own_calls(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "exports"
    out.mkdir()
    with CountingServer(10, 5) as server:
        result = subprocess.run(
            [sys.executable, str(APP), server.base_url, str(out), str(CHILDREN)],
            capture_output=True, text=True, timeout=600,
            env={**os.environ, "LLMMETER_SUMMARY": "off", "OTEL_SDK_DISABLED": "false"},
        )
        real_calls = server.requests
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["hung"] == [], f"{len(report['hung'])} of {CHILDREN} children did not exit"
    assert report["failed"] == []

    exported = {int(p.stem): json.loads(p.read_text())["requests"] for p in out.glob("*.json")}
    parent = exported.pop(report["parent_pid"])
    assert len(exported) == CHILDREN  # every child exported (its last export is its cumulative count)
    assert sorted(set(exported.values())) == [1]  # each child: its own call, none of the parent's
    assert parent == report["parent_calls"]
    assert parent + sum(exported.values()) == real_calls


def test_spans_are_counted_before_the_sdk_takes_its_collection_lock() -> None:
    """The queued spans are counted on the reader's thread, but outside the SDK's collection lock: held
    there (as the observable callbacks did), a fork at that moment left the child's lock held forever."""
    from llmmeter import names
    from llmmeter.processor import LLMMeterSpanProcessor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider

    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    tracer_provider = TracerProvider()
    processor = LLMMeterSpanProcessor(meter_provider=meter_provider)
    tracer_provider.add_span_processor(processor)
    collection_lock = meter_provider._measurement_consumer._lock  # the SDK's (read, never replaced)
    held: list[bool] = []
    count = processor._deferred._process
    processor._deferred._process = lambda span: (held.append(collection_lock.locked()), count(span))
    tracer = tracer_provider.get_tracer("llmmeter.test")
    for _ in range(3):
        tracer.start_span("chat m", attributes={names.OPERATION: names.OP_CHAT, names.REQUEST_MODEL: "m"}).end()
    data = reader.get_metrics_data()
    requests = [p.value for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
                if m.name == names.METRIC_REQUESTS for p in m.data.data_points]
    assert sum(requests) == 3  # counted in this collection ...
    assert held == [False, False, False]  # ... without the SDK's lock held
    tracer_provider.shutdown()
    meter_provider.shutdown()
