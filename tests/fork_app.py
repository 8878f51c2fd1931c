"""A busy, gunicorn-style parent for tests/test_fork.py: 4 threads making LLM calls while it forks children.

Run as ``python fork_app.py BASE_URL OUT_DIR CHILDREN``. Metrics go through a PeriodicExportingMetricReader
that collects every few milliseconds (so collections are in progress at fork time), whose exporter writes
each process's cumulative ``llmmeter.requests`` to ``OUT_DIR/<pid>.json``. Each child makes one call and
exits normally (atexit: the SDK's final collection and export). The parent waits for each child with a
bounded wait, kills one that does not exit and reports it as hung; it prints one JSON line at the end.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import sys
import threading
import time
from typing import Any

import llmmeter
import openai
from llmmeter import names
from llmmeter.config import Settings
from llmmeter.instrumentors.openai import OpenAIInstrumentor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, PeriodicExportingMetricReader
from opentelemetry.sdk.trace import TracerProvider

THREADS = 4
MAX_ALIVE = 6  # children alive at once
CHILD_WAIT_S = 20.0  # a child that has not exited by then is hung (a healthy one takes well under a second)


class RequestsToFile(MetricExporter):
    def __init__(self, out_dir: str) -> None:
        super().__init__()
        self.out_dir = out_dir

    def export(self, metrics_data: Any, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        total = 0
        for rm in metrics_data.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name == names.METRIC_REQUESTS:
                        total += sum(point.value for point in metric.data.data_points)
        path = os.path.join(self.out_dir, f"{os.getpid()}.json")
        with open(path + ".tmp", "w") as f:
            json.dump({"requests": total}, f)
        os.replace(path + ".tmp", path)
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        pass


def chat(client: openai.OpenAI) -> None:
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])


def child(base_url: str, meter_provider: MeterProvider) -> None:
    code = 0
    try:
        chat(openai.OpenAI(base_url=base_url, api_key="test-key", max_retries=0))  # its own connection
        # Export now (the SDK's final collection at exit allows only one export interval, 5 ms here, and
        # could time out on a loaded machine); shutdown at exit still collects and exports once more.
        meter_provider.force_flush()
    except BaseException:
        code = 3
    # Exit the way sys.exit() would, minus the interpreter's teardown of the parent's whole inherited heap
    # (seconds of copy-on-write page faults per child on a loaded 2-core machine, and nothing to test):
    # the atexit handlers (the SDK's shutdown, its last collection and export, llmmeter's) all run.
    atexit._run_exitfuncs()
    os._exit(code)


def main() -> None:
    base_url, out_dir, children = sys.argv[1], sys.argv[2], int(sys.argv[3])
    meter_provider = MeterProvider(
        metric_readers=[PeriodicExportingMetricReader(RequestsToFile(out_dir), export_interval_millis=5)]
    )
    tracer_provider = TracerProvider()
    llmmeter.configure(tracer_provider=tracer_provider, meter_provider=meter_provider, instrument=False,
                       settings=Settings(summary="off"))
    OpenAIInstrumentor().instrument(tracer_provider=tracer_provider)

    stop = threading.Event()
    calls = [0] * THREADS

    def work(i: int) -> None:
        client = openai.OpenAI(base_url=base_url, api_key="test-key", max_retries=0)
        while not stop.is_set():
            chat(client)
            calls[i] += 1

    threads = [threading.Thread(target=work, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    while sum(calls) < 20:  # busy before the first fork
        time.sleep(0.01)

    alive: dict[int, float] = {}
    hung: list[int] = []
    failed: list[int] = []

    def reap(block: bool) -> None:
        while alive:
            for pid, started in list(alive.items()):
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    del alive[pid]
                    if os.waitstatus_to_exitcode(status) != 0:
                        failed.append(pid)
                elif time.monotonic() - started > CHILD_WAIT_S:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    del alive[pid]
                    hung.append(pid)
            if not block and len(alive) < MAX_ALIVE:
                return
            time.sleep(0.005)

    for _ in range(children):
        pid = os.fork()
        if pid == 0:
            child(base_url, meter_provider)
        alive[pid] = time.monotonic()
        reap(block=False)
    reap(block=True)

    stop.set()
    for t in threads:
        t.join()
    tracer_provider.shutdown()
    meter_provider.force_flush()  # the parent's final export (see child())
    meter_provider.shutdown()
    print(json.dumps({"parent_pid": os.getpid(), "parent_calls": sum(calls), "hung": hung, "failed": failed}))


if __name__ == "__main__":
    main()
