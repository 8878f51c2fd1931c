"""The second path: Prometheus 3's native OTLP receiver, no collector in between.

Prometheus 3 is built from its Go module (``collector/prometheus3/go.mod`` pins
``github.com/prometheus/prometheus`` ``cmd/prometheus``; ``scripts/build-collector.sh prometheus3``) and started
with ``--web.enable-otlp-receiver``; its config promotes ``service.name`` to the ``service_name`` label and names
the translation explicitly (``UnderscoreEscapingWithSuffixes``, Prometheus 3's default). The app is the proof
workload of ``tests/test_prometheus_proof.py`` exporting its metrics over OTLP/HTTP straight to Prometheus.
Every dashboard query must return data and every alert expression evaluate, with the totals equal to the spans:
so the dashboards work for both name translations (the collector's prometheus exporter, test_pipeline_e2e, and
Prometheus's own OTLP translation, here).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import openai
import pytest
import test_prometheus_proof as proof
import yaml
from collector_support import binary
from guard_support import guarded
from llmmeter import budgets, config, names
from llmmeter.demo.server import DemoServer
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from promtools import RULES_FILE, PrometheusAPI, free_port, http_get, require_binary, running, wait_until

M = names.metric_prometheus_name
L = names.prometheus_label


@dataclass
class OTLPToPrometheus(proof.Workload):
    """proof.Workload's app with its metrics pushed over OTLP/HTTP to Prometheus 3 (spans kept in memory)."""

    @classmethod
    def to_prometheus(cls, otlp_url: str) -> OTLPToPrometheus:
        from llmmeter.processor import LLMMeterSpanProcessor
        from llmmeter.views import llmmeter_views
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

        resource = Resource.create({"service.name": proof.SERVICE})
        reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=otlp_url), export_interval_millis=1000)
        meter_provider = MeterProvider(metric_readers=[reader], resource=resource, views=llmmeter_views())
        tracer_provider = TracerProvider(resource=resource)
        settings = config.Settings(label_keys=(*names.DEFAULT_LABEL_KEYS, "user"), summary="off",
                                   max_values_per_label=proof.MAX_VALUES_PER_LABEL)
        tracer_provider.add_span_processor(LLMMeterSpanProcessor(meter_provider, settings=settings))
        exporter = InMemorySpanExporter()
        tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
        return cls(tracer_provider, meter_provider, exporter, settings, port=0, server=None)

    def close(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


@pytest.fixture(scope="module")
def prom3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PrometheusAPI, OTLPToPrometheus]]:
    promtool = require_binary("promtool")
    prometheus = binary("prometheus3")
    tmp = tmp_path_factory.mktemp("prom3")
    data_dir = tmp / "data"
    data_dir.mkdir()
    proof.backfill_last_week(promtool, data_dir, tmp)
    port = free_port()
    (tmp / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"evaluation_interval": "1s"},
        "rule_files": [str(RULES_FILE)],
        "otlp": {"promote_resource_attributes": ["service.name"],
                 "translation_strategy": "UnderscoreEscapingWithSuffixes"},
    }))
    with ExitStack() as cleanup:
        cleanup.enter_context(running(
            [prometheus, f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={data_dir}",
             f"--web.listen-address=127.0.0.1:{port}", "--web.enable-otlp-receiver",
             "--storage.tsdb.retention.time=30d"], tmp / "prometheus.log"))
        api = PrometheusAPI(f"http://127.0.0.1:{port}")
        wait_until(lambda: http_get(f"{api.base_url}/-/ready"), 60, "prometheus 3 ready")
        workload = OTLPToPrometheus.to_prometheus(f"{api.base_url}/api/v1/otlp/v1/metrics")
        cleanup.callback(workload.close)
        cleanup.enter_context(guarded(workload))
        config.set_settings(workload.settings)
        workload.budgets = [budgets.add(spec) for spec in proof.BUDGET_SPECS]
        demo = cleanup.enter_context(DemoServer())
        client = openai.OpenAI(base_url=demo.base_url, api_key="demo-not-a-secret", max_retries=0)
        requests = M(names.METRIC_REQUESTS)
        for phase in range(proof.PHASES):
            workload.run_phase(client, phase)
            workload.meter_provider.force_flush()
            seen = len(proof.llm_spans(workload.spans()))
            wait_until(lambda n=seen: api.vector(f"sum({requests})") == [({}, float(n))], 60,
                       f"prometheus 3 to hold {seen} requests")
            # Two pushes of every series at least, so rate()/increase() see them grow.
            wait_until(lambda: (api.vector(f"min(count_over_time({requests}[1m]))") or [({}, 0.0)])[0][1] >= 2, 60,
                       "two samples of every series")
        yield api, workload


@pytest.mark.parametrize(("where", "expr"), proof.dashboard_queries(), ids=[q[0] for q in proof.dashboard_queries()])
def test_dashboard_query_returns_data(prom3: tuple[PrometheusAPI, OTLPToPrometheus], where: str, expr: str) -> None:
    api, _ = prom3
    result = api.vector(proof.grafana_to_promql(expr))
    assert result, f"{where}: no data for {proof.grafana_to_promql(expr)}"
    assert all(not math.isnan(value) for _, value in result), f"{where}: NaN in {result}"


@pytest.mark.parametrize(("alert", "expr"), proof.alert_expressions(), ids=[a[0] for a in proof.alert_expressions()])
def test_alert_expression_evaluates(prom3: tuple[PrometheusAPI, OTLPToPrometheus], alert: str, expr: str) -> None:
    api, _ = prom3
    assert api.query(expr)["status"] == "success", alert


def test_totals_equal_the_spans(prom3: tuple[PrometheusAPI, OTLPToPrometheus]) -> None:
    api, workload = prom3
    spans = workload.spans()
    assert api.scalar(f"sum({M(names.METRIC_COST)})") == pytest.approx(proof.span_cost(spans), rel=1e-9)
    token_type = L(names.LABEL_TOKEN_TYPE)
    got = {m[token_type]: v for m, v in api.vector(f"sum by ({token_type}) ({M(names.METRIC_TOKENS)})")}
    assert got == {k: float(v) for k, v in proof.span_tokens(spans).items()}
    assert api.scalar(f"sum({M(names.METRIC_REQUESTS)})") == len(proof.llm_spans(spans))
    assert {m[L("service.name")] for m, _ in api.vector(f"sum by (service_name) ({M(names.METRIC_COST)})")} == {
        proof.SERVICE}
