"""End to end: ``opentelemetry-instrument python app.py`` with zero code changes, exporting OTLP/HTTP.

The app makes a real openai SDK call to a 127.0.0.1 server replaying a recorded OpenAI response; the
test receives what the exporters send (protobuf over HTTP, as a collector would) and checks the span
(semconv attributes, cost, attribution) and the metric values (llmmeter.tokens, llmmeter.cost, requests).
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from llmmeter import names
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from replay_server import ReplayServer

CASSETTE = "openai/tests/traces/cassettes/test_chat/test_chat.yaml"  # gpt-3.5-turbo: 15 in, 19 out (first reply)
BIN = os.path.dirname(sys.executable)
# Prices given through LLMMETER_PRICE_FILE (LiteLLM format), so the expected cost is computed here by hand.
INPUT_PRICE = 0.5e-6
OUTPUT_PRICE = 1.5e-6
PRICES = {
    "gpt-3.5-turbo-0125": {
        "litellm_provider": "openai",
        "mode": "chat",
        "input_cost_per_token": INPUT_PRICE,
        "output_cost_per_token": OUTPUT_PRICE,
    }
}

APP = textwrap.dedent(
    """
    import sys
    import openai
    from llmmeter.attribution import attributes

    client = openai.OpenAI(base_url=sys.argv[1] + "/v1", api_key="sk-test-secret-key", max_retries=0)
    with attributes(tenant="acme", feature="jokes", user="u-7"):
        reply = client.chat.completions.create(
            model="gpt-3.5-turbo", messages=[{"role": "user", "content": "Tell me a joke about opentelemetry"}]
        )
    print("usage", reply.usage.prompt_tokens, reply.usage.completion_tokens)
    """
)


def _value(any_value: AnyValue) -> Any:
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return tuple(_value(v) for v in any_value.array_value.values)
    return getattr(any_value, kind) if kind else None


def _attrs(key_values: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in key_values}


class OTLPReceiver:
    """A minimal OTLP/HTTP (protobuf) receiver on 127.0.0.1, as a collector's otlp receiver."""

    def __init__(self) -> None:
        self.traces: list[ExportTraceServiceRequest] = []
        self.metrics: list[ExportMetricsServiceRequest] = []
        self.content_types: set[str] = set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                receiver.content_types.add(self.headers.get("Content-Type", ""))
                if self.path == "/v1/traces":
                    receiver.traces.append(ExportTraceServiceRequest.FromString(body))
                    reply = ExportTraceServiceResponse().SerializeToString()
                elif self.path == "/v1/metrics":
                    receiver.metrics.append(ExportMetricsServiceRequest.FromString(body))
                    reply = ExportMetricsServiceResponse().SerializeToString()
                else:
                    reply = b""
                self.send_response(200 if reply is not None else 404)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def spans(self) -> list[tuple[dict[str, Any], Any]]:
        """(resource attributes, span) for every span received."""
        return [
            (_attrs(rs.resource.attributes), span)
            for request in self.traces
            for rs in request.resource_spans
            for ss in rs.scope_spans
            for span in ss.spans
        ]

    def last_points(self, metric_name: str) -> list[tuple[dict[str, Any], Any]]:
        """(attributes, point) of the last export of a metric (cumulative: the last is the total)."""
        found: list[tuple[dict[str, Any], Any]] = []
        for request in self.metrics:
            points = []
            for rm in request.resource_metrics:
                for sm in rm.scope_metrics:
                    for metric in sm.metrics:
                        if metric.name != metric_name:
                            continue
                        data = getattr(metric, metric.WhichOneof("data"))
                        points.extend((_attrs(p.attributes), p) for p in data.data_points)
            if points:
                found = points
        return found

    def metric_units(self) -> dict[str, str]:
        return {
            m.name: m.unit
            for request in self.metrics
            for rm in request.resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
        }


@pytest.fixture
def receiver() -> Iterator[OTLPReceiver]:
    server = OTLPReceiver()
    server.thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


@pytest.fixture
def provider_server() -> Iterator[ReplayServer]:
    server = ReplayServer(CASSETTE, index=0)
    server.start()
    yield server
    server.stop()


def run_app(
    tmp_path: Path, receiver: OTLPReceiver, provider: ReplayServer, **env_extra: str
) -> subprocess.CompletedProcess:
    app = tmp_path / "app.py"
    app.write_text(APP)
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps(PRICES))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMMETER_", "OTEL_", "OPENAI_"))}
    env.update(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_METRIC_EXPORT_INTERVAL": "200",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "OTEL_SERVICE_NAME": "e2e-app",
            "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=test",
            "OTEL_LOGS_EXPORTER": "none",
            "LLMMETER_PRICE_FILE": str(prices),
        }
    )
    env.update(env_extra)
    return subprocess.run(
        [os.path.join(BIN, "opentelemetry-instrument"), sys.executable, str(app), provider.base_url],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def chat_spans(receiver: OTLPReceiver) -> list[tuple[dict[str, Any], Any]]:
    return [(res, s) for res, s in receiver.spans() if _attrs(s.attributes).get(names.OPERATION) == "chat"]


# openai-v2 2.4b0 makes its spans through opentelemetry-util-genai's TelemetryHandler, under this scope.
OPENAI_V2_SCOPE = "opentelemetry.util.genai.handler"


def _scoped_chat_spans(receiver: OTLPReceiver) -> list[tuple[str, Any]]:
    return [
        (ss.scope.name, span)
        for request in receiver.traces
        for rs in request.resource_spans
        for ss in rs.scope_spans
        for span in ss.spans
        if _attrs(span.attributes).get(names.OPERATION) == "chat"
    ]


def llmmeter_scoped(receiver: OTLPReceiver) -> list[Any]:
    return [
        span
        for request in receiver.traces
        for rs in request.resource_spans
        for ss in rs.scope_spans
        if ss.scope.name.startswith("llmmeter")
        for span in ss.spans
    ]


def assert_counted_once(receiver: OTLPReceiver) -> None:
    """llmmeter.tokens / cost / requests hold exactly one call of 15 input and 19 output tokens."""
    tokens = receiver.last_points(names.METRIC_TOKENS)
    by_type = {a[names.LABEL_TOKEN_TYPE]: (a, p.as_double or p.as_int) for a, p in tokens}
    assert by_type["input"][1] == 15 and by_type["output"][1] == 19
    labels = by_type["input"][0]
    assert labels[names.PROVIDER] == "openai" and labels[names.REQUEST_MODEL] == "gpt-3.5-turbo"
    assert labels["tenant"] == "acme" and labels["feature"] == "jokes" and "user" not in labels
    ((_, cost),) = receiver.last_points(names.METRIC_COST)
    assert cost.as_double == pytest.approx(EXPECTED_COST)
    ((req_labels, requests),) = receiver.last_points(names.METRIC_REQUESTS)
    assert requests.as_int == 1
    assert (req_labels[names.LABEL_STATUS], req_labels[names.LABEL_PRICED]) == ("ok", "true")
    usage = {a[names.TOKEN_TYPE]: p for a, p in receiver.last_points(names.METRIC_TOKEN_USAGE)}
    assert usage["input"].count == 1 and usage["input"].sum == 15
    assert tuple(usage["input"].explicit_bounds) == names.TOKEN_USAGE_BUCKETS


EXPECTED_COST = 15 * INPUT_PRICE + 19 * OUTPUT_PRICE


def test_zero_code_openai_call_exports_span_and_metrics(
    tmp_path: Path, receiver: OTLPReceiver, provider_server: ReplayServer
) -> None:
    # Only llmmeter's instrumentor ("openai" is opentelemetry-instrumentation-openai-v2's entry point).
    result = run_app(tmp_path, receiver, provider_server, OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="openai")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "usage 15 19"  # the app got the SDK's real return value
    assert "sk-test-secret-key" not in result.stderr

    llm = chat_spans(receiver)
    assert len(llm) == 1, [s.name for _, s in receiver.spans()]
    resource, span = llm[0]
    attrs = _attrs(span.attributes)
    assert span.name == "chat gpt-3.5-turbo"
    assert span.kind == span.SPAN_KIND_CLIENT
    assert resource["service.name"] == "e2e-app" and resource["deployment.environment.name"] == "test"
    assert attrs[names.PROVIDER] == "openai"
    assert attrs[names.REQUEST_MODEL] == "gpt-3.5-turbo"
    assert attrs[names.RESPONSE_MODEL] == "gpt-3.5-turbo-0125"
    assert attrs[names.USAGE_INPUT_TOKENS] == 15 and attrs[names.USAGE_OUTPUT_TOKENS] == 19
    assert attrs[names.LLMMETER_PRICED] is True
    assert attrs[names.COST_USD] == pytest.approx(EXPECTED_COST)
    assert attrs["llmmeter.attr.tenant"] == "acme" and attrs["llmmeter.attr.feature"] == "jokes"
    assert attrs["llmmeter.attr.user"] == "u-7"  # on spans; not a metric label unless configured
    assert names.INPUT_MESSAGES not in attrs  # content is opt-in
    assert all("sk-test" not in str(v) for v in attrs.values())

    assert_counted_once(receiver)
    units = receiver.metric_units()
    assert units[names.METRIC_TOKENS] == "{token}" and units[names.METRIC_COST] == "USD"
    assert receiver.content_types == {"application/x-protobuf"}  # OTLP/HTTP protobuf by default
    # An endpoint is configured, so the exit summary stays off (auto mode).
    assert "llmmeter: LLM usage" not in result.stderr


def test_official_openai_instrumentor_alongside_counts_the_call_once(
    tmp_path: Path, receiver: OTLPReceiver, provider_server: ReplayServer
) -> None:
    """opentelemetry-instrumentation-openai-v2 (installed for the test) wraps the same call; so do the other
    `openai` instrumentors the test environment installs (OpenLLMetry's, OpenInference's), as in a user's
    environment where several are installed: the call is still counted once."""
    result = run_app(tmp_path, receiver, provider_server)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "usage 15 19"
    spans = [span for _, span in chat_spans(receiver)]
    scopes = [scope for scope, _span in _scoped_chat_spans(receiver)]
    assert scopes.count("llmmeter.instrumentors.openai") == 1
    assert scopes.count(OPENAI_V2_SCOPE) == 1  # one per instrumentor: all are kept in the trace ...
    assert len({s.trace_id for s in spans}) == 1  # ... nested in one trace (one request)
    assert len(llmmeter_scoped(receiver)) == 1
    assert_counted_once(receiver)


def test_disabling_llmmeter_openai_still_counts_the_other_instrumentors_span(
    tmp_path: Path, receiver: OTLPReceiver, provider_server: ReplayServer
) -> None:
    """OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=llmmeter_openai turns off llmmeter's wrapper only; the span
    processor still meters (and prices, from llmmeter's table) the other instrumentors' span, once."""
    result = run_app(tmp_path, receiver, provider_server, OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="llmmeter_openai")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "usage 15 19"
    assert len(provider_server.requests) == 1
    assert llmmeter_scoped(receiver) == []  # ours is off ...
    chat = [span for scope, span in _scoped_chat_spans(receiver) if scope == OPENAI_V2_SCOPE]
    assert len(chat) == 1
    attrs = _attrs(chat[0].attributes)
    assert names.LLMMETER_PRICED not in attrs and attrs["llmmeter.attr.tenant"] == "acme"
    assert_counted_once(receiver)  # ... and the call is still metered once, with a price


def test_without_an_endpoint_the_exit_summary_is_the_output(tmp_path: Path, provider_server: ReplayServer) -> None:
    app = tmp_path / "app.py"
    app.write_text(APP)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMMETER_", "OTEL_", "OPENAI_"))}
    env["OTEL_PYTHON_DISABLED_INSTRUMENTATIONS"] = "openai"
    result = subprocess.run(
        [os.path.join(BIN, "opentelemetry-instrument"), sys.executable, str(app), provider_server.base_url],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "usage 15 19"
    (row,) = [line for line in result.stderr.splitlines() if "jokes" in line]
    assert "gpt-3.5-turbo-0125" in row and " 15 " in row and " 19 " in row and "$" in row
    assert "not exported" in result.stderr
    assert "Connection refused" not in result.stderr and "Transient error" not in result.stderr
