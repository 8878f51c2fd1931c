"""Attribution crosses services as W3C Baggage through the standard OTel HTTP instrumentations.

A real ``requests`` client (opentelemetry-instrumentation-requests) calls a real WSGI server on
127.0.0.1 (wsgiref + opentelemetry-instrumentation-wsgi); the server makes an LLM call through the
real openai SDK to a local OpenAI-wire server, and that call's span and metrics carry the tenant set
by the *client* process side. Inbound baggage is then shown to be filtered, and ignorable.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import llmmeter.attribution as attribution
import pytest
import requests
from guard_support import CountingServer, chat, guarded
from llmmeter import config, names
from opentelemetry.instrumentation.requests import RequestsInstrumentor
from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def services(telemetry) -> Iterator[dict[str, Any]]:
    """A backend service (WSGI, instrumented) whose handler makes one LLM call, and an instrumented client."""
    with guarded(telemetry), CountingServer() as llm:
        llm_client = llm.client()

        def app(environ, start_response):
            with attribution.attributes(route=environ["PATH_INFO"]):  # set in-process by the backend
                chat(llm_client)
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"done"]

        wrapped = OpenTelemetryMiddleware(app, tracer_provider=telemetry.tracer_provider)
        server: WSGIServer = make_server("127.0.0.1", 0, wrapped, handler_class=_Quiet)
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        RequestsInstrumentor().instrument(tracer_provider=telemetry.tracer_provider)
        try:
            yield {"url": f"http://127.0.0.1:{server.server_address[1]}", "llm": llm}
        finally:
            RequestsInstrumentor().uninstrument()
            server.shutdown()
            server.server_close()


def _llm_span(telemetry):
    [span] = telemetry.llm_spans()
    return span


def test_client_tenant_reaches_the_backend_llm_span_and_metrics(telemetry, services):
    config.set_settings(config.Settings())
    with attribution.attributes(tenant="acme", feature="checkout", user="u-7"):
        response = requests.get(services["url"] + "/api/answer", timeout=10)
    assert response.status_code == 200 and services["llm"].requests == 1

    span = _llm_span(telemetry)
    attrs = span.attributes
    assert attrs[names.ATTRIBUTION_SPAN_PREFIX + "tenant"] == "acme"
    assert attrs[names.ATTRIBUTION_SPAN_PREFIX + "feature"] == "checkout"
    assert attrs[names.ATTRIBUTION_SPAN_PREFIX + "user"] == "u-7"
    assert attrs[names.ATTRIBUTION_SPAN_PREFIX + "route"] == "/api/answer"
    # One trace: client span -> server span -> LLM span.
    by_id = {s.context.span_id: s for s in telemetry.spans()}
    server_span = by_id[span.parent.span_id]
    assert server_span.kind.name == "SERVER"
    assert by_id[server_span.parent.span_id].kind.name == "CLIENT"
    assert telemetry.metric_total(names.METRIC_REQUESTS, tenant="acme", feature="checkout") == 1


def test_hostile_inbound_baggage_is_filtered(telemetry, services):
    config.set_settings(config.Settings())
    header = ",".join([
        "llmmeter.tenant=acme",
        "llmmeter.feature=" + "x" * 300,  # too long
        "llmmeter.team=%3Cscript%3E",  # decodes to <script>
        "llmmeter.password=hunter2",  # not allow-listed
    ])
    response = requests.get(services["url"] + "/api/raw", headers={"baggage": header}, timeout=10)
    assert response.status_code == 200
    attrs = _llm_span(telemetry).attributes
    attributed = {k: v for k, v in attrs.items() if k.startswith(names.ATTRIBUTION_SPAN_PREFIX)}
    assert attributed == {
        names.ATTRIBUTION_SPAN_PREFIX + "tenant": "acme",
        names.ATTRIBUTION_SPAN_PREFIX + "route": "/api/raw",
    }


def test_untrusted_mode_ignores_inbound_baggage_but_keeps_backend_values(telemetry, services):
    config.set_settings(config.Settings.from_env({config.ENV_TRUST_INBOUND_BAGGAGE: "false"}))
    with attribution.attributes(tenant="spoofed-by-caller"):
        response = requests.get(services["url"] + "/api/answer", timeout=10)
    assert response.status_code == 200
    attrs = _llm_span(telemetry).attributes
    assert names.ATTRIBUTION_SPAN_PREFIX + "tenant" not in attrs
    assert attrs[names.ATTRIBUTION_SPAN_PREFIX + "route"] == "/api/answer"
