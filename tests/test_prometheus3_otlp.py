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

from collections.abc import Iterator
from contextlib import ExitStack

import pytest
import test_prometheus_proof as proof
from collector_support import binary
from llmmeter import names
from promtools import (
    RULES_FILE,
    PrometheusAPI,
    check_alert_expression,
    check_dashboard_query,
    prometheus_server,
    wait_until,
)

M = names.metric_prometheus_name
L = names.prometheus_label


@pytest.fixture(scope="module")
def prom3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PrometheusAPI, proof.OTLPWorkload]]:
    tmp = tmp_path_factory.mktemp("prom3")
    data_dir, _rate = proof.last_week_tsdb(tmp)
    config = {
        "global": {"evaluation_interval": "1s"},
        "rule_files": [str(RULES_FILE)],
        "otlp": {"promote_resource_attributes": ["service.name"],
                 "translation_strategy": "UnderscoreEscapingWithSuffixes"},
    }
    with ExitStack() as cleanup:
        api = cleanup.enter_context(prometheus_server(
            binary("prometheus3"), tmp, config, data_dir=data_dir, ready_timeout=60,
            args=("--web.enable-otlp-receiver", "--storage.tsdb.retention.time=30d")))
        # Metrics pushed over OTLP/HTTP to Prometheus 3; spans kept in memory only.
        workload = proof.OTLPWorkload.over_otlp(f"{api.base_url}/api/v1/otlp/v1/metrics")
        client = proof.attach(cleanup, workload)
        requests = M(names.METRIC_REQUESTS)

        def two_samples() -> None:
            # Two pushes of every series at least, so rate()/increase() see them grow.
            wait_until(lambda: (api.vector(f"min(count_over_time({requests}[1m]))") or [({}, 0.0)])[0][1] >= 2, 60,
                       "two samples of every series")

        proof.run_phases(workload, client, api, timeout=60, after_each=two_samples)
        yield api, workload


@pytest.mark.parametrize(("where", "expr"), proof.dashboard_queries(), ids=[q[0] for q in proof.dashboard_queries()])
def test_dashboard_query_returns_data(prom3: tuple[PrometheusAPI, proof.OTLPWorkload], where: str, expr: str) -> None:
    api, _ = prom3
    check_dashboard_query(api, where, expr)


@pytest.mark.parametrize(("alert", "expr"), proof.alert_expressions(), ids=[a[0] for a in proof.alert_expressions()])
def test_alert_expression_evaluates(prom3: tuple[PrometheusAPI, proof.OTLPWorkload], alert: str, expr: str) -> None:
    api, _ = prom3
    check_alert_expression(api, alert, expr)


def test_totals_equal_the_spans(prom3: tuple[PrometheusAPI, proof.OTLPWorkload]) -> None:
    api, workload = prom3
    spans = workload.spans()
    assert api.scalar(f"sum({M(names.METRIC_COST)})") == pytest.approx(proof.span_cost(spans), rel=1e-9)
    token_type = L(names.LABEL_TOKEN_TYPE)
    got = {m[token_type]: v for m, v in api.vector(f"sum by ({token_type}) ({M(names.METRIC_TOKENS)})")}
    assert got == {k: float(v) for k, v in proof.span_tokens(spans).items()}
    assert api.scalar(f"sum({M(names.METRIC_REQUESTS)})") == len(proof.llm_spans(spans))
    assert {m[L("service.name")] for m, _ in api.vector(f"sum by (service_name) ({M(names.METRIC_COST)})")} == {
        proof.SERVICE}
