"""Proof on a real Prometheus: every dashboard query returns data and every alert expression evaluates,
on metrics produced by llmmeter's span processor from a known workload; totals match the workload; one
alert fires into a real Alertmanager.

Pipeline: OTel SDK spans carrying the semconv/llmmeter attributes instrumentors emit (see the brief's
Spans contract) -> ``LLMMeterSpanProcessor`` -> ``PrometheusMetricReader`` served by prometheus_client on
127.0.0.1 -> ``prometheus`` (1 s scrapes, temp storage) -> HTTP API. Last week's data (for ``offset 1w``)
is backfilled with ``promtool tsdb create-blocks-from openmetrics``.

Metrics no llmmeter module emits yet from spans (agent runs, loop guard, budgets, outcomes) are recorded
by STAND-IN instruments below with the names/units of ``names.METRIC_SPECS``; replace them with the real
modules once they exist.
"""

from __future__ import annotations

import math
import pathlib
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import yaml
from llmmeter import attribution, names
from llmmeter.config import Settings
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind, StatusCode
from promtools import (
    DASHBOARDS_DIR,
    RULES_FILE,
    PrometheusAPI,
    free_port,
    grafana_to_promql,
    http_get,
    require_binary,
    running,
    wait_until,
)

SERVICE = "llmmeter-proof"
M = names.metric_prometheus_name
L = names.prometheus_label
# The one place the Python exporter's naming differs from the collector's (names.prometheus_name):
# it maps unit "1" to no suffix, the collector appends `_ratio` to gauges with unit "1".
PYTHON_EXPORTER_DIVERGENCES = {M(names.METRIC_BUDGET_SPEND): "llmmeter_budget_spend"}


@dataclass
class Call:
    provider: str
    model: str
    input: int
    output: int
    cache_read: int = 0
    reasoning: int = 0
    cost: float | None = None  # None: unpriced
    estimated: bool = False
    error: str | None = None
    who: dict[str, str] = field(default_factory=dict)


WHO_A = {"tenant": "acme", "feature": "support-chat", "team": "cx", "route": "/api/support",
         "environment": "prod", "user": "u-1001"}
WHO_B = {"tenant": "globex", "feature": "summarize", "team": "docs", "route": "/api/summarize",
         "environment": "prod", "user": "u-2002"}
PHASES: list[list[Call]] = [
    [
        Call("openai", "gpt-4o-mini", 1200, 150, cache_read=1024, cost=0.000333, who=WHO_A),
        Call("anthropic", "claude-sonnet-4", 3000, 400, cache_read=2000, cost=0.0126, who=WHO_B),
        Call("openai", "acme-internal-llm-2", 500, 50, who=WHO_A),
        Call("openai", "gpt-4o", 800, 120, cost=0.0032, estimated=True, who=WHO_B),
    ],
    [
        Call("openai", "gpt-4o-mini", 1500, 300, cache_read=1024, reasoning=64, cost=0.00041, who=WHO_A),
        Call("anthropic", "claude-sonnet-4", 5000, 800, cache_read=4096, cost=0.0215, who=WHO_B),
        Call("openai", "acme-internal-llm-2", 700, 90, who=WHO_A),
        Call("openai", "gpt-4o", 900, 0, cost=0.00225, error="RateLimitError", who=WHO_B),
        Call("openai", "gpt-4o", 1000, 200, cost=0.0045, estimated=True, who=WHO_A),
    ],
]


def expected_totals(phases: list[list[Call]]) -> dict[str, float]:
    calls = [c for phase in phases for c in phase]
    return {
        "cost": sum(c.cost or 0.0 for c in calls),
        "input": sum(c.input for c in calls),
        "output": sum(c.output for c in calls),
        "cache_read": sum(c.cache_read for c in calls),
        "reasoning": sum(c.reasoning for c in calls),
        "requests": len(calls),
        "unpriced": sum(1 for c in calls if c.cost is None),
    }


class Workload:
    """The app side: a real SDK TracerProvider with llmmeter's span processor, metrics served for scraping."""

    def __init__(self) -> None:
        from llmmeter.processor import LLMMeterSpanProcessor
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import CollectorRegistry, start_http_server

        self.registry = CollectorRegistry()
        reader = PrometheusMetricReader(
            registry=self.registry, resource_attribute_filter=lambda key: key == "service.name"
        )
        resource = Resource.create({"service.name": SERVICE})
        self.meter_provider = MeterProvider(metric_readers=[reader], resource=resource)
        self.tracer_provider = TracerProvider(resource=resource)
        settings = Settings(label_keys=(*names.DEFAULT_LABEL_KEYS, "user"))
        self.tracer_provider.add_span_processor(LLMMeterSpanProcessor(self.meter_provider, settings=settings))
        self.tracer = self.tracer_provider.get_tracer("llmmeter.proof")
        self.port = free_port()
        self.server, self.thread = start_http_server(self.port, addr="127.0.0.1", registry=self.registry)
        self._stand_ins()

    def _stand_ins(self) -> None:
        """STAND-IN for modules that do not emit these yet: same names, units and label keys as names.py."""
        meter = self.meter_provider.get_meter("llmmeter.proof.stand-in")

        def make(metric: str):
            kind, unit = names.METRIC_SPECS[metric]
            create = {names.KIND_COUNTER: meter.create_counter, names.KIND_HISTOGRAM: meter.create_histogram,
                      names.KIND_GAUGE: meter.create_gauge}[kind]
            return create(metric, unit=unit)

        self.runs = make(names.METRIC_AGENT_RUNS)
        self.run_cost = make(names.METRIC_AGENT_RUN_COST)
        self.run_calls = make(names.METRIC_AGENT_RUN_LLM_CALLS)
        self.trips = make(names.METRIC_LOOP_GUARD_TRIPS)
        self.spend = make(names.METRIC_BUDGET_SPEND)
        self.crossings = make(names.METRIC_BUDGET_CROSSINGS)
        self.blocked = make(names.METRIC_BUDGET_BLOCKED)
        self.outcomes = make(names.METRIC_OUTCOMES)

    def run_phase(self, calls: list[Call], phase: int) -> None:
        for call in calls:
            with attribution.attributes(**call.who):
                self._llm_call(call)
        who = {k: v for k, v in WHO_A.items()}
        agent = {names.AGENT_NAME: "triage-agent", **who}
        self.runs.add(2, agent)
        for cost, llm_calls in ((0.004, 3), (0.03, 9)):
            self.run_cost.record(cost, agent)
            self.run_calls.record(llm_calls, agent)
        self.trips.add(1, {names.LABEL_GUARD: "max_llm_calls", **who})
        self.spend.set(0.5 + 0.4 * phase, {names.LABEL_BUDGET: "team-cx-daily", **who})
        self.crossings.add(1, {names.LABEL_BUDGET: "team-cx-daily", names.LABEL_THRESHOLD: "0.8", **who})
        self.blocked.add(1, {names.LABEL_BUDGET: "team-cx-daily", **who})
        self.outcomes.add(3, {names.LABEL_OUTCOME: "ticket_resolved", names.LABEL_SUCCESS: "true", **who})
        self.outcomes.add(1, {names.LABEL_OUTCOME: "ticket_resolved", names.LABEL_SUCCESS: "false", **who})

    def _llm_call(self, call: Call) -> None:
        attrs = {names.PROVIDER: call.provider, names.OPERATION: names.OP_CHAT, names.REQUEST_MODEL: call.model}
        with self.tracer.start_as_current_span(f"chat {call.model}", kind=SpanKind.CLIENT, attributes=attrs) as span:
            span.set_attribute(names.RESPONSE_MODEL, call.model)
            span.set_attribute(names.USAGE_INPUT_TOKENS, call.input)
            span.set_attribute(names.USAGE_OUTPUT_TOKENS, call.output)
            if call.cache_read:
                span.set_attribute(names.USAGE_CACHE_READ_TOKENS, call.cache_read)
            if call.reasoning:
                span.set_attribute(names.USAGE_REASONING_TOKENS, call.reasoning)
            span.set_attribute(names.LLMMETER_PRICED, call.cost is not None)
            if call.cost is not None:
                span.set_attribute(names.COST_USD, call.cost)
            span.set_attribute(names.LLMMETER_ESTIMATED, call.estimated)
            if call.error:
                span.set_attribute(names.ERROR_TYPE, call.error)
                span.set_status(StatusCode.ERROR)

    def exposition(self) -> str:
        return http_get(f"http://127.0.0.1:{self.port}/metrics").decode()

    def close(self) -> None:
        self.server.shutdown()
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


def backfill_last_week(promtool: str, data_dir: pathlib.Path, tmp: pathlib.Path) -> float:
    """Input tokens and cost from one week ago (for the `offset 1w` panels and the spike alert)."""
    now = time.time()
    start, step, points = now - 7 * 86400 - 5400, 60, 100
    labels = (f'{L(names.PROVIDER)}="openai",{L(names.REQUEST_MODEL)}="gpt-4o-mini",'
              f'{L("service.name")}="{SERVICE}"')
    tokens, cost = M(names.METRIC_TOKENS), M(names.METRIC_COST)
    lines = [f"# TYPE {tokens.removesuffix('_total')} counter", f"# TYPE {cost.removesuffix('_total')} counter"]
    per_step_tokens = 600
    for i in range(points):
        ts = start + i * step
        lines.append(f'{tokens}{{{labels},{L(names.LABEL_TOKEN_TYPE)}="input"}} {i * per_step_tokens} {ts:.3f}')
    for i in range(points):
        ts = start + i * step
        lines.append(f"{cost}{{{labels}}} {i * 0.01:.2f} {ts:.3f}")
    lines.append("# EOF")
    source = tmp / "last-week.om"
    source.write_text("\n".join(lines) + "\n")
    result = subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", str(source), str(data_dir)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return per_step_tokens / step  # input tokens per second last week


@dataclass
class Stack:
    api: PrometheusAPI
    alertmanager_url: str
    workload: Workload
    last_week_input_rate: float


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    prometheus = require_binary("prometheus")
    alertmanager = require_binary("prometheus-alertmanager")
    promtool = require_binary("promtool")
    tmp = tmp_path_factory.mktemp("prom")
    data_dir = tmp / "data"
    data_dir.mkdir()
    last_week_rate = backfill_last_week(promtool, data_dir, tmp)

    workload = Workload()
    am_port, prom_port = free_port(), free_port()
    (tmp / "alertmanager.yml").write_text(yaml.safe_dump({
        "route": {"receiver": "test", "group_wait": "0s", "group_interval": "1s", "repeat_interval": "1h"},
        "receivers": [{"name": "test"}],
    }))
    python_name, collector_name = next(iter(PYTHON_EXPORTER_DIVERGENCES.items()))[::-1]
    (tmp / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES_FILE)],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]},
        "scrape_configs": [{
            "job_name": "llmmeter-app",
            "static_configs": [{"targets": [f"127.0.0.1:{workload.port}"]}],
            # Direct scrape of the Python exporter: give the budget gauge the collector's name.
            "metric_relabel_configs": [{
                "source_labels": ["__name__"], "regex": python_name,
                "target_label": "__name__", "replacement": collector_name,
            }],
        }],
    }))
    am_args = [alertmanager, f"--config.file={tmp / 'alertmanager.yml'}", f"--storage.path={tmp / 'am'}",
               f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address="]
    prom_args = [prometheus, f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={data_dir}",
                 f"--web.listen-address=127.0.0.1:{prom_port}", "--storage.tsdb.retention.time=30d"]
    try:
        with running(am_args, tmp / "alertmanager.log"), running(prom_args, tmp / "prometheus.log"):
            base = f"http://127.0.0.1:{prom_port}"
            wait_until(lambda: http_get(f"{base}/-/ready"), 30, "prometheus ready")
            wait_until(lambda: http_get(f"http://127.0.0.1:{am_port}/-/ready"), 30, "alertmanager ready")
            api = PrometheusAPI(base)
            requests = M(names.METRIC_REQUESTS)
            seen = 0
            for phase, calls in enumerate(PHASES):
                workload.run_phase(calls, phase)
                seen += len(calls)
                # Wait until a scrape has seen this phase, so rate()/increase() have two distinct samples.
                wait_until(lambda n=seen: api.vector(f"sum({requests})") == [({}, float(n))], 30,
                           f"prometheus to scrape {seen} requests")
            yield Stack(api, f"http://127.0.0.1:{am_port}", workload, last_week_rate)
    finally:
        workload.close()


def dashboard_queries() -> list[tuple[str, str]]:
    import json

    out = []
    for path in sorted(DASHBOARDS_DIR.glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel["targets"]:
                out.append((f"{path.stem}: {panel['title']} [{target['refId']}]", target["expr"]))
    return out


def alert_expressions() -> list[tuple[str, str]]:
    doc = yaml.safe_load(RULES_FILE.read_text())
    return [(rule["alert"], rule["expr"]) for group in doc["groups"] for rule in group["rules"]]


def test_python_exporter_names_match_prometheus_name(stack: Stack) -> None:
    """What opentelemetry-exporter-prometheus serves vs names.prometheus_name(): equal but for the
    documented budget-gauge difference (unit "1")."""
    text = stack.workload.exposition()
    served = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}
    for metric, (kind, _unit) in names.METRIC_SPECS.items():
        if metric in (names.METRIC_TIME_TO_FIRST_CHUNK, names.METRIC_ATTRIBUTION_OVERFLOW):
            continue  # no stream / no overflow in this workload
        expected = PYTHON_EXPORTER_DIVERGENCES.get(M(metric), M(metric))
        sample = expected + "_bucket" if kind == names.KIND_HISTOGRAM else expected
        assert sample in served, f"{metric}: expected {sample} in the exposition, served {sorted(served)}"
    assert M(names.METRIC_BUDGET_SPEND) not in served, "the Python exporter now appends _ratio: update the docs"
    labels_line = next(line for line in text.splitlines() if line.startswith(M(names.METRIC_TOKENS) + "{"))
    for label in (L(names.PROVIDER), L(names.REQUEST_MODEL), L(names.LABEL_TOKEN_TYPE), "tenant", "user",
                  L("service.name")):
        assert f"{label}=" in labels_line, f"{label} missing from {labels_line}"


@pytest.mark.parametrize(("where", "expr"), dashboard_queries(), ids=[q[0] for q in dashboard_queries()])
def test_dashboard_query_returns_data(stack: Stack, where: str, expr: str) -> None:
    result = stack.api.vector(grafana_to_promql(expr))
    assert result, f"{where}: no data for {grafana_to_promql(expr)}"
    assert all(not math.isnan(value) for _, value in result), f"{where}: NaN in {result}"


@pytest.mark.parametrize(("alert", "expr"), alert_expressions(), ids=[a[0] for a in alert_expressions()])
def test_alert_expression_evaluates(stack: Stack, alert: str, expr: str) -> None:
    response = stack.api.query(expr)
    assert response["status"] == "success", f"{alert}: {response}"


def test_totals_equal_the_workload(stack: Stack) -> None:
    want = expected_totals(PHASES)
    api = stack.api
    assert api.scalar(f"sum({M(names.METRIC_COST)})") == pytest.approx(want["cost"], rel=1e-9)
    by_type = dict((m[L(names.LABEL_TOKEN_TYPE)], v) for m, v in
                   api.vector(f"sum by ({L(names.LABEL_TOKEN_TYPE)}) ({M(names.METRIC_TOKENS)})"))
    assert by_type == {"input": want["input"], "output": want["output"], "cache_read": want["cache_read"],
                       "reasoning": want["reasoning"]}
    priced = L(names.LABEL_PRICED)
    assert api.scalar(f"sum({M(names.METRIC_REQUESTS)})") == want["requests"]
    assert api.scalar(f'sum({M(names.METRIC_REQUESTS)}{{{priced}="false"}})') == want["unpriced"]
    # The semconv histogram saw the same input tokens.
    sc = L(names.TOKEN_TYPE)
    assert api.scalar(f'sum({M(names.METRIC_TOKEN_USAGE)}_sum{{{sc}="input"}})') == want["input"]


def test_week_over_week_panel_sees_backfilled_history(stack: Stack) -> None:
    expr = f'sum(rate({M(names.METRIC_TOKENS)}{{{L(names.LABEL_TOKEN_TYPE)}="input"}}[1h] offset 1w))'
    assert stack.api.scalar(expr) == pytest.approx(stack.last_week_input_rate, rel=0.05)


def test_unpriced_model_alert_fires_into_alertmanager(stack: Stack) -> None:
    import json

    def firing() -> list[dict]:
        alerts = json.loads(http_get(f"{stack.alertmanager_url}/api/v2/alerts"))
        return [a for a in alerts if a["labels"].get("alertname") == "LLMUnpricedModelSeen"]

    alerts = wait_until(firing, 30, "LLMUnpricedModelSeen in alertmanager")
    assert {a["labels"][L(names.REQUEST_MODEL)] for a in alerts} == {"acme-internal-llm-2"}
    assert alerts[0]["labels"]["severity"] == "warning"
    assert alerts[0]["status"]["state"] == "active"
