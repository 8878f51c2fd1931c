"""The whole pipeline for real, on 127.0.0.1:

    app (real openai SDK -> llmmeter, OTLP/HTTP) -> agent collector (collector/agent.yaml)
        -> loadbalancing (traces by trace ID, metrics by service) -> 2 gateway collectors (collector/gateway.yaml)
        -> prometheus exporter -> the real Prometheus (1 s scrapes of both gateways, the shipped alert rules)
        -> otlp/jaeger (persistent queue) -> Jaeger v2 (collector/jaeger.yaml, in-memory storage)

Collectors are ``otelcol-llmmeter`` and Jaeger is ``jaeger``, both built from pinned Go modules by
``scripts/build-collector.sh``. The configs are the shipped ones with only endpoints substituted
(``collector_support.render``).

Two services send: ``llmmeter-proof`` runs the workload of ``tests/test_prometheus_proof.py`` (the demo's
scenarios, budgets, outcomes, a long tail of teams, the looping support agent) in this process; ``llmmeter
demo`` runs as a separate process (the CLI a user runs, OTLP endpoint pointed at the agent). Expected totals
come from the spans: the ones this process exported (in memory) and the ones Jaeger's API returns; they are
compared with what Prometheus shows, so the name mapping the dashboards and alerts rely on is proven
through the collector's exporter, not the Python one.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import openai
import pytest
import test_prometheus_proof as proof
import yaml
from collector_support import (
    AGENT,
    GATEWAY,
    CollectorPorts,
    JaegerAPI,
    JaegerPorts,
    Proc,
    collector,
    jaeger,
    log_events,
    own_metrics,
    render,
    render_jaeger,
    stopping,
    tags,
)
from guard_support import guarded
from llmmeter import budgets, config, names
from llmmeter.demo import agent_scenario
from llmmeter.demo.server import DemoServer
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from promtools import RULES_FILE, PrometheusAPI, free_port, http_get, require_binary, running, wait_until

M = names.metric_prometheus_name
L = names.prometheus_label
SERVICE = proof.SERVICE  # the in-process workload (the backfilled last week uses this name too)
DEMO_SERVICE = "llmmeter-demo-cli"  # `llmmeter demo` in its own process
SERVICE_LABEL = L("service.name")
LLM_OPERATIONS = set(names.INFERENCE_OPERATIONS)


@dataclass
class OTLPWorkload(proof.Workload):
    """proof.Workload's app, exporting OTLP/HTTP to the agent collector instead of serving /metrics."""

    @classmethod
    def to_collector(cls, endpoint: str) -> OTLPWorkload:
        from llmmeter.processor import LLMMeterSpanProcessor
        from llmmeter.views import llmmeter_views
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

        resource = Resource.create({"service.name": SERVICE})
        reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=f"{endpoint}/v1/metrics"),
                                               export_interval_millis=1000)
        meter_provider = MeterProvider(metric_readers=[reader], resource=resource, views=llmmeter_views())
        tracer_provider = TracerProvider(resource=resource)
        settings = config.Settings(label_keys=(*names.DEFAULT_LABEL_KEYS, "user"), summary="off",
                                   max_values_per_label=proof.MAX_VALUES_PER_LABEL)
        tracer_provider.add_span_processor(LLMMeterSpanProcessor(meter_provider, settings=settings))
        exporter = InMemorySpanExporter()
        tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
        tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces")))
        return cls(tracer_provider, meter_provider, exporter, settings, port=0, server=None)

    def flush(self) -> None:
        self.tracer_provider.force_flush()
        self.meter_provider.force_flush()

    def close(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


@dataclass
class Pipeline:
    api: PrometheusAPI
    jaeger: JaegerAPI
    workload: OTLPWorkload
    agent: CollectorPorts
    gateways: list[CollectorPorts]
    demo_output: str
    last_week_input_rate: float


def prometheus_config(tmp: Any, gateways: list[CollectorPorts]) -> dict[str, Any]:
    return {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES_FILE)],
        # As collector/prometheus.yml, with every gateway replica as a target.
        "scrape_configs": [{"job_name": "otel-collector", "honor_labels": True, "static_configs": [
            {"targets": [f"127.0.0.1:{g.prometheus}" for g in gateways]}]}],
    }


def start_pipeline(cleanup: ExitStack, tmp: Any) -> tuple[JaegerPorts, list[CollectorPorts], CollectorPorts,
                                                          dict[str, Proc]]:
    """Jaeger, two gateways and an agent, each started and healthy; stopped by ``cleanup``."""
    jaeger_ports = JaegerPorts()
    procs = {"jaeger": jaeger(render_jaeger(tmp, jaeger_ports), jaeger_ports, tmp)}
    gateways = [CollectorPorts(), CollectorPorts()]
    for i, ports in enumerate(gateways, 1):
        procs[f"gateway-{i}"] = collector(f"gateway-{i}", render(GATEWAY, tmp, ports, jaeger_grpc=jaeger_ports.grpc),
                                          ports, tmp)
    agent = CollectorPorts()
    procs["agent"] = collector("agent", render(AGENT, tmp, agent, gateways=[f"127.0.0.1:{g.grpc}" for g in gateways]),
                               agent, tmp)
    cleanup.enter_context(stopping(*procs.values()))
    for proc in procs.values():
        proc.start()
    return jaeger_ports, gateways, agent, procs


def run_demo_cli(agent: CollectorPorts) -> str:
    """`llmmeter demo` as a user runs it, its OTLP endpoint the agent collector."""
    env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{agent.http}",
           "OTEL_SERVICE_NAME": DEMO_SERVICE, "OTEL_METRIC_EXPORT_INTERVAL": "1000"}
    env.pop("OTEL_EXPORTER_OTLP_PROTOCOL", None)
    cli = os.path.join(os.path.dirname(sys.executable), "llmmeter")
    result = subprocess.run([cli, "demo"], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    prometheus, promtool = require_binary("prometheus"), require_binary("promtool")
    tmp = tmp_path_factory.mktemp("pipeline")
    data_dir = tmp / "prom-data"
    data_dir.mkdir()
    last_week_rate = proof.backfill_last_week(promtool, data_dir, tmp)
    with ExitStack() as cleanup:
        jaeger_ports, gateways, agent, _procs = start_pipeline(cleanup, tmp)
        prom_port = free_port()
        (tmp / "prometheus.yml").write_text(yaml.safe_dump(prometheus_config(tmp, gateways)))
        cleanup.enter_context(running(
            [prometheus, f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={data_dir}",
             f"--web.listen-address=127.0.0.1:{prom_port}", "--storage.tsdb.retention.time=30d"],
            tmp / "prometheus.log"))
        api = PrometheusAPI(f"http://127.0.0.1:{prom_port}")
        wait_until(lambda: http_get(f"{api.base_url}/-/ready"), 30, "prometheus ready")

        workload = OTLPWorkload.to_collector(f"http://127.0.0.1:{agent.http}")
        cleanup.callback(workload.close)
        cleanup.enter_context(guarded(workload))
        config.set_settings(workload.settings)
        workload.budgets = [budgets.add(spec) for spec in proof.BUDGET_SPECS]
        demo = cleanup.enter_context(DemoServer())
        client = openai.OpenAI(base_url=demo.base_url, api_key="demo-not-a-secret", max_retries=0)
        requests = M(names.METRIC_REQUESTS)
        for phase in range(proof.PHASES):
            workload.run_phase(client, phase)
            workload.flush()
            seen = len(proof.llm_spans(workload.spans()))
            # Two scrapes apart, so rate()/increase() see every series grow.
            wait_until(lambda n=seen: api.vector(f'sum({requests}{{{SERVICE_LABEL}="{SERVICE}"}})') == [({}, n)],
                       60, f"prometheus to scrape {seen} requests of {SERVICE} through the collectors")
        demo_output = run_demo_cli(agent)
        jaeger_api = JaegerAPI(jaeger_ports)
        sent = len(workload.spans())
        wait_until(lambda: len(jaeger_api.spans(SERVICE)) == sent, 60, f"{sent} spans of {SERVICE} in Jaeger")

        def demo_complete() -> bool:
            llm = [s for s in jaeger_api.spans(DEMO_SERVICE) if tags(s).get(names.OPERATION) in LLM_OPERATIONS]
            scraped = api.vector(f'sum({requests}{{{SERVICE_LABEL}="{DEMO_SERVICE}"}})')
            return bool(llm) and scraped == [({}, float(len(llm)))]

        wait_until(demo_complete, 60, f"{DEMO_SERVICE}'s spans in Jaeger and its requests in Prometheus to agree")
        yield Pipeline(api, jaeger_api, workload, agent, gateways, demo_output, last_week_rate)


# --- Prometheus through the collector ----------------------------------------------------------------
@pytest.mark.parametrize(("where", "expr"), proof.dashboard_queries(), ids=[q[0] for q in proof.dashboard_queries()])
def test_dashboard_query_returns_data(pipeline: Pipeline, where: str, expr: str) -> None:
    result = pipeline.api.vector(proof.grafana_to_promql(expr))
    assert result, f"{where}: no data for {proof.grafana_to_promql(expr)}"
    assert all(not math.isnan(value) for _, value in result), f"{where}: NaN in {result}"


@pytest.mark.parametrize(("alert", "expr"), proof.alert_expressions(), ids=[a[0] for a in proof.alert_expressions()])
def test_alert_expression_evaluates(pipeline: Pipeline, alert: str, expr: str) -> None:
    response = pipeline.api.query(expr)
    assert response["status"] == "success", f"{alert}: {response}"


def test_collector_exporter_serves_the_names_llmmeter_promises(pipeline: Pipeline) -> None:
    """The gateways' prometheus exporter serves exactly names.metric_prometheus_name() for every metric of
    names.METRIC_SPECS, nothing else under llmmeter_/gen_ai_, with the labels the dashboards filter on."""
    served: set[str] = set()
    lines: list[str] = []
    for gateway in pipeline.gateways:
        text = http_get(f"http://127.0.0.1:{gateway.prometheus}/metrics").decode()
        lines += text.splitlines()
        served |= {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and line[0] != "#"}
    expected = set()
    for metric, (kind, _unit) in names.METRIC_SPECS.items():
        if metric in names.NOT_SERVED_BY_A_HEALTHY_APP:  # `llmmeter reconcile`'s, or a disabled setting's
            continue
        base = M(metric)
        expected |= {base + s for s in ("_bucket", "_sum", "_count")} if kind == names.KIND_HISTOGRAM else {base}
    assert {s for s in served if s.startswith(("llmmeter_", "gen_ai_"))} == expected
    tokens_line = next(line for line in lines if line.startswith(M(names.METRIC_TOKENS) + "{")
                       and f'{SERVICE_LABEL}="{SERVICE}"' in line)
    for label in (L(names.PROVIDER), L(names.REQUEST_MODEL), L(names.LABEL_TOKEN_TYPE), "tenant", "user",
                  "environment", SERVICE_LABEL):
        assert f"{label}=" in tokens_line, f"{label} missing from {tokens_line}"


def jaeger_llm_spans(pipeline: Pipeline, service: str) -> list[dict[str, Any]]:
    return [s for s in pipeline.jaeger.spans(service) if tags(s).get(names.OPERATION) in LLM_OPERATIONS]


@pytest.mark.parametrize("service", [SERVICE, DEMO_SERVICE])
def test_cost_and_tokens_in_prometheus_equal_the_spans_in_jaeger(pipeline: Pipeline, service: str) -> None:
    api, llm = pipeline.api, jaeger_llm_spans(pipeline, service)
    where = f'{{{SERVICE_LABEL}="{service}"}}'
    want_cost = math.fsum(tags(s).get(names.COST_USD, 0.0) for s in llm)
    assert want_cost > 0
    assert api.scalar(f"sum({M(names.METRIC_COST)}{where})") == pytest.approx(want_cost, rel=1e-9)
    token_type = L(names.LABEL_TOKEN_TYPE)
    want_tokens = {kind: sum(tags(s).get(attr, 0) for s in llm) for kind, attr in proof.TOKEN_ATTRS.items()}
    want_tokens = {kind: float(n) for kind, n in want_tokens.items() if n}
    assert {"input", "output"} <= set(want_tokens)
    got = {m[token_type]: v for m, v in api.vector(f"sum by ({token_type}) ({M(names.METRIC_TOKENS)}{where})")}
    assert got == want_tokens
    assert api.scalar(f"sum({M(names.METRIC_REQUESTS)}{where})") == len(llm)


def test_jaeger_holds_every_span_the_app_exported(pipeline: Pipeline) -> None:
    exported = pipeline.workload.spans()
    in_jaeger = pipeline.jaeger.spans(SERVICE)
    assert Counter(s["operationName"] for s in in_jaeger) == Counter(s.name for s in exported)
    assert math.fsum(tags(s).get(names.COST_USD, 0.0) for s in in_jaeger) == pytest.approx(
        proof.span_cost(exported), rel=1e-12)
    # Content never leaves the pipeline (attributes/drop_content), whatever the app captured.
    assert not {key for s in in_jaeger for key in tags(s)} & set(names.CONTENT_ATTRIBUTES)


def test_both_gateways_carry_traffic_and_no_span_is_duplicated(pipeline: Pipeline) -> None:
    """loadbalancing spreads traces over both gateways; what they accepted adds up to what the agent sent."""
    agent = own_metrics(pipeline.agent)
    per_gateway = [own_metrics(g).get("otelcol_receiver_accepted_spans", 0.0) for g in pipeline.gateways]
    assert all(n > 0 for n in per_gateway), per_gateway
    assert sum(per_gateway) == agent["otelcol_receiver_accepted_spans"]
    assert agent.get("otelcol_receiver_refused_spans", 0.0) == 0


def test_demo_cli_prints_its_summary_while_exporting(pipeline: Pipeline) -> None:
    assert "sent to http://127.0.0.1:" in pipeline.demo_output


# --- Jaeger: the agent run's trace -------------------------------------------------------------------
def test_agent_run_trace_tree_in_jaeger(pipeline: Pipeline) -> None:
    operation = f"{names.OP_INVOKE_AGENT} {agent_scenario.AGENT_NAME}"
    traces = pipeline.jaeger.traces(SERVICE, operation=operation)
    assert len(traces) == proof.PHASES  # one agent run per phase
    exported_runs = {format(s.context.span_id, "016x"): s for s in pipeline.workload.spans()
                     if s.name == operation}
    for trace in traces:
        spans = {s["spanID"]: s for s in trace["spans"]}
        (root,) = [s for s in spans.values() if s["operationName"] == operation]
        assert not [r for r in root.get("references", []) if r["refType"] == "CHILD_OF"
                    and r["spanID"] in spans], "the agent span is the root of its trace"
        children = [s for s in spans.values() if any(r["refType"] == "CHILD_OF" and r["spanID"] == root["spanID"]
                                                      for r in s.get("references", []))]
        names_under = Counter(s["operationName"] for s in children)
        tool = f"{names.OP_EXECUTE_TOOL} {agent_scenario.TOOL_NAME}"
        chat = f"{names.OP_CHAT} {agent_scenario.MODEL}"
        # The loop guard trips on the third identical tool call: 3 chat calls answered, 3 tool calls made,
        # and the 4th chat call refused before it was sent (a span marked blocked, no tokens).
        assert names_under == {chat: agent_scenario.MAX_REPEATED_TOOL_CALLS + 1,
                               tool: agent_scenario.MAX_REPEATED_TOOL_CALLS}, names_under
        chats = [s for s in children if s["operationName"] == chat]
        blocked = [s for s in chats if tags(s).get(names.LLMMETER_BLOCKED) is True]
        answered = [s for s in chats if s not in blocked]
        assert len(blocked) == 1 and len(answered) == agent_scenario.MAX_REPEATED_TOOL_CALLS
        root_tags = tags(root)
        exported = exported_runs[root["spanID"]]
        for key in (names.RUN_LLM_CALLS, names.RUN_TOOL_CALLS, names.RUN_INPUT_TOKENS, names.RUN_OUTPUT_TOKENS,
                    names.RUN_COST_USD, names.RUN_STOPPED_BY):
            assert root_tags[key] == exported.attributes[key], key
        assert root_tags[names.RUN_TOOL_CALLS] == agent_scenario.MAX_REPEATED_TOOL_CALLS
        assert root_tags[names.RUN_INPUT_TOKENS] == sum(tags(s)[names.USAGE_INPUT_TOKENS] for s in answered)
        assert root_tags[names.RUN_OUTPUT_TOKENS] == sum(tags(s)[names.USAGE_OUTPUT_TOKENS] for s in answered)
        assert root_tags[names.RUN_COST_USD] == pytest.approx(
            math.fsum(tags(s)[names.COST_USD] for s in answered), rel=1e-12)
        assert root_tags[names.RUN_STOPPED_BY] == "repeated_tool_call"
        trips = [e for s in spans.values() for e in log_events(s) if e.get("event") == names.EVENT_LOOP_GUARD]
        assert len(trips) == 1, trips
