"""A dead collector costs at most LLMMETER_EXPORT_TIMEOUT at exit, is named once, and the summary still prints.

Real apps under ``opentelemetry-instrument`` (the distro's OTLP/HTTP exporters) make one real openai call
against a local server, then exit. The collector is (a) a closed port, (b) a TCP server that accepts
connections and never answers, (c) a local HTTP server answering 200, for the "what actually happened"
line. Exit time is measured from the app's last output to its exit and bounded by three times the budget
plus the interpreter's own teardown (an upper limit on a documented timeout, not a performance figure:
without the bound the same apps took 14-18 s, the OTLP exporters' retries and timeouts).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from guard_support import CountingServer
from llmmeter import config
from llmmeter.config import ConfigError, Settings

BIN = os.path.dirname(sys.executable)
KNOB_S = 2.0  # LLMMETER_EXPORT_TIMEOUT for the bounded-exit tests
# The exporters' own timeout in those tests: unbounded, their exit would take at least this long.
EXPORTER_TIMEOUT_S = 600
HANG_GUARD_S = 120  # how long a test waits for the app to exit after its last output
APP = textwrap.dedent(
    """
    import sys, openai
    from llmmeter import estimate
    client = openai.OpenAI(base_url=sys.argv[1], api_key="test-key", max_retries=0)
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    estimate.warm_up(wait=True)  # not part of the exit being measured
    print("done", flush=True)
    """
)
# Only llmmeter's openai instrumentor: the others import SDKs this app never uses (a bigger heap to tear down).
OTHERS = "llmmeter_anthropic,llmmeter_bedrock,llmmeter_google_genai,llmmeter_mistral,llmmeter_cohere,llmmeter_ollama"


def run_app(tmp_path: Path, endpoint: str, **extra_env: str) -> str:
    """Run the app under opentelemetry-instrument; its stderr. Fails if it has not exited
    ``HANG_GUARD_S`` after its last output."""
    app = tmp_path / "app.py"
    app.write_text(APP)
    with CountingServer(10, 5) as server:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMMETER_", "OTEL_"))}
        env.update({"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": OTHERS,
                    # Everything is exported at exit, not by a periodic export that a slow (loaded) run may
                    # reach first: the exit export is what these tests are about.
                    "OTEL_BSP_SCHEDULE_DELAY": "600000", "OTEL_METRIC_EXPORT_INTERVAL": "600000",
                    "COLUMNS": "300", **extra_env})
        proc = subprocess.Popen(
            [os.path.join(BIN, "opentelemetry-instrument"), sys.executable, str(app), server.base_url],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "done"
            _out, err = proc.communicate(timeout=HANG_GUARD_S)
        finally:
            proc.kill()
            proc.wait()
        assert server.requests == 1
    assert proc.returncode == 0, err
    return err


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def silent_collector() -> Iterator[int]:
    """Accepts TCP connections (the kernel completes them from the backlog) and never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        yield s.getsockname()[1]


def assert_named_once_with_summary(err: str, port: int) -> None:
    problem = [line for line in err.splitlines() if "not exported: the export did not finish within" in line]
    assert len(problem) == 1, err  # said once
    assert "traces and metrics" in problem[0] and f"within {KNOB_S:g} s (LLMMETER_EXPORT_TIMEOUT)" in problem[0]
    assert f"OTLPSpanExporter -> http://127.0.0.1:{port}/v1/traces" in problem[0]
    assert f"OTLPMetricExporter -> http://127.0.0.1:{port}/v1/metrics" in problem[0]
    # auto mode prints the summary when the export failed: it is the run's only record
    (row,) = [line for line in err.splitlines() if "gpt-4o-mini" in line and "total" not in line]
    assert "10" in row and "5" in row
    assert "no exporter is configured" not in err


def test_closed_port_exits_within_the_budget(tmp_path: Path) -> None:
    port = closed_port()
    err = run_app(tmp_path, f"http://127.0.0.1:{port}", LLMMETER_EXPORT_TIMEOUT=f"{KNOB_S:g}",
                  OTEL_EXPORTER_OTLP_TIMEOUT=str(EXPORTER_TIMEOUT_S))
    assert_named_once_with_summary(err, port)


def test_collector_that_never_answers_costs_at_most_the_budget(tmp_path: Path, silent_collector: int) -> None:
    err = run_app(tmp_path, f"http://127.0.0.1:{silent_collector}", LLMMETER_EXPORT_TIMEOUT=f"{KNOB_S:g}",
                  OTEL_EXPORTER_OTLP_TIMEOUT=str(EXPORTER_TIMEOUT_S))
    assert_named_once_with_summary(err, silent_collector)


def test_the_default_budget_is_documented_and_applied(tmp_path: Path, silent_collector: int) -> None:
    err = run_app(tmp_path, f"http://127.0.0.1:{silent_collector}", OTEL_EXPORTER_OTLP_TIMEOUT=str(EXPORTER_TIMEOUT_S))
    assert f"within {config.DEFAULT_EXPORT_TIMEOUT_S:g} s (LLMMETER_EXPORT_TIMEOUT)" in err


class _Collector(BaseHTTPRequestHandler):
    paths: ClassVar[list[str]] = []
    status: ClassVar[int] = 200

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).paths.append(self.path)
        self.send_response(type(self).status)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()


@contextmanager
def collector(status: int) -> Iterator[int]:
    """A local OTLP/HTTP endpoint answering every export with ``status``; yields its port."""
    _Collector.paths, _Collector.status = [], status
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_summary_says_what_actually_happened_when_export_worked(tmp_path: Path) -> None:
    with collector(200) as port:
        err = run_app(tmp_path, f"http://127.0.0.1:{port}", LLMMETER_SUMMARY="always")
    assert "/v1/traces" in _Collector.paths and "/v1/metrics" in _Collector.paths  # it did arrive
    assert (f"spans and metrics were exported through OTLPSpanExporter -> http://127.0.0.1:{port}/v1/traces, "
            f"OTLPMetricExporter -> http://127.0.0.1:{port}/v1/metrics") in " ".join(err.split())
    assert "not exported" not in err and "export failed" not in err


def test_a_refused_export_is_named_once(tmp_path: Path) -> None:
    """A collector that answers 400 (not retried): the export fails fast, and llmmeter says so."""
    with collector(400) as port:
        err = run_app(tmp_path, f"http://127.0.0.1:{port}")
    assert "/v1/traces" in _Collector.paths and "/v1/metrics" in _Collector.paths
    (line,) = [line for line in err.splitlines() if line.startswith("llmmeter: ") and "export failed" in line]
    assert f"OTLPSpanExporter -> http://127.0.0.1:{port}/v1/traces" in line
    assert f"OTLPMetricExporter -> http://127.0.0.1:{port}/v1/metrics" in line
    assert any("gpt-4o-mini" in row for row in err.splitlines())  # auto mode: the summary, the only record


@pytest.mark.parametrize("value", ["0", "-1", "abc", "100000"])
def test_bad_export_timeout_is_a_config_error(value: str) -> None:
    with pytest.raises(ConfigError, match=f"LLMMETER_EXPORT_TIMEOUT.*{value}"):
        Settings.from_env({config.ENV_EXPORT_TIMEOUT: value})


def test_export_timeout_is_read_in_seconds() -> None:
    assert Settings.from_env({config.ENV_EXPORT_TIMEOUT: "0.25"}).export_timeout_s == 0.25
    assert Settings.from_env({}).export_timeout_s == 3.0


IN_CODE = textwrap.dedent(
    """
    import os, sys, openai, llmmeter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

    sink = open(os.devnull, "w")
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=sink)))
    meter_provider = MeterProvider(metric_readers=[PeriodicExportingMetricReader(ConsoleMetricExporter(out=sink))])
    llmmeter.configure(tracer_provider=tracer_provider, meter_provider=meter_provider)
    client = openai.OpenAI(base_url=sys.argv[1], api_key="test-key", max_retries=0)
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    print("done", flush=True)
    """
)


def test_exporters_configured_in_code_are_named_not_called_missing(tmp_path: Path) -> None:
    """No OTLP endpoint, but the app exports in code: the summary says where the data went."""
    app = tmp_path / "in_code.py"
    app.write_text(IN_CODE)
    with CountingServer(10, 5) as server:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMMETER_", "OTEL_"))}
        result = subprocess.run([sys.executable, str(app), server.base_url], env=env, capture_output=True,
                                text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    err = " ".join(result.stderr.split())
    assert "spans and metrics were exported through ConsoleSpanExporter, ConsoleMetricExporter" in err
    assert "not exported" not in err and "gpt-4o-mini" in err
