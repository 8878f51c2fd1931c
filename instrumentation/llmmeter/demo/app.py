"""``llmmeter demo``: the whole pipeline on a laptop, no API key, no collector, no Docker.

It builds the same pipeline ``opentelemetry-instrument`` builds (SDK TracerProvider and MeterProvider,
llmmeter's span processor, the instrumentors), runs :mod:`llmmeter.demo.scenarios` through the real
``openai`` SDK against :class:`~llmmeter.demo.server.DemoServer` on 127.0.0.1, and prints the bill.
With ``OTEL_EXPORTER_OTLP_ENDPOINT`` set, the spans and metrics also go to that collector, so the
compose stack in ``collector/`` shows the same numbers in Grafana and the agent trace in Jaeger.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from rich.console import Console

from llmmeter import config, estimate, summary
from llmmeter.demo import scenarios
from llmmeter.demo.server import DemoServer


def _exporters() -> tuple[list[Any], list[Any]]:
    """OTLP/HTTP exporters when an endpoint is configured, else none (the table is the output)."""
    if not summary.should_print("auto"):  # an OTLP endpoint is set
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        return [BatchSpanProcessor(OTLPSpanExporter())], [PeriodicExportingMetricReader(OTLPMetricExporter())]
    return [], []


def run_demo(console: Console, agent: bool = True, frameworks: bool = False) -> summary.Tally:
    """Run every scenario, print the table, and return the tally it printed."""
    import openai
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    from llmmeter.pipeline import configure, uninstrument_all
    from llmmeter.views import llmmeter_views

    settings = dataclasses.replace(config.Settings.from_env(), summary="off")  # the demo prints it itself
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "llmmeter-demo")})
    span_processors, readers = _exporters()
    tracer_provider = TracerProvider(resource=resource)
    meter_provider = MeterProvider(resource=resource, metric_readers=readers, views=llmmeter_views())
    from llmmeter.ledger import default_directory

    # The demo always keeps its calls in the cost ledger, so `llmmeter report` works right after it.
    ledger = settings.ledger if settings.ledger is not None else str(default_directory())
    processor = configure(tracer_provider=tracer_provider, meter_provider=meter_provider, settings=settings,
                          ledger=ledger)
    for span_processor in span_processors:
        tracer_provider.add_span_processor(span_processor)
    estimate.warm_up(wait=True, timeout=30)
    try:
        with DemoServer() as server:
            client = openai.OpenAI(base_url=server.base_url, api_key="demo-not-a-secret", max_retries=0)
            with console.status("running the demo app against a local OpenAI-wire server..."):
                scenarios.run_all(client)
                if agent:
                    _run_agent(client, console)
                framework_runs = _run_frameworks(server.base_url) if frameworks else []
    finally:
        tracer_provider.force_flush()
        meter_provider.force_flush()
        uninstrument_all()
    summary.render_summary(processor.tally, console)
    for run in framework_runs:
        console.print(f"agent framework run: {run.framework} / {run.agent}: {run.outcome}")
    ledger_dir = config.settings().ledger
    if ledger_dir not in (None, "off"):
        console.print(f"every call is in the cost ledger {ledger_dir}: try `llmmeter report top --by user`")
    if span_processors:
        console.print(f"spans and metrics sent to {os.environ.get('OTEL_EXPORTER_OTLP_ENDPOINT', 'the OTLP endpoint')}")
    tracer_provider.shutdown()
    meter_provider.shutdown()
    return processor.tally


def _run_agent(client: Any, console: Console) -> None:
    try:
        from llmmeter.demo.agent_scenario import run_agent_scenario
    except ImportError:
        return
    run_agent_scenario(client)


def _run_frameworks(base_url: str) -> list[Any]:
    """``--agents``: OpenAI Agents SDK and LangGraph runs (llmmeter.demo.framework_scenarios)."""
    from llmmeter.demo.framework_scenarios import run_all

    return run_all(base_url)
