"""Proof on a real Prometheus: every dashboard query returns data and every alert expression evaluates,
on metrics llmmeter produced from a real workload; totals match the spans; alerts fire into a real
Alertmanager.

The workload is the demo's (``llmmeter demo``): :mod:`llmmeter.demo.scenarios` and the looping support
agent of :mod:`llmmeter.demo.agent_scenario`, through the real ``openai`` SDK instrumented by llmmeter's
``OpenAIInstrumentor``, against :class:`llmmeter.demo.server.DemoServer` on 127.0.0.1. On top of it, what a
product adds: budgets (``llmmeter.budgets``: a soft token budget that crosses 80% and 100%, a soft USD
budget, a hard call budget that refuses a tenant's calls), business outcomes (``llmmeter.record_outcome``)
and a long tail of teams past the per-label cap (so ``llmmeter.attribution.overflow`` is produced too).

Pipeline: SDK TracerProvider -> ``LLMMeterSpanProcessor`` (tokens, cost, requests) and, through
``llmmeter._providers.use()``, the agents/budgets/outcomes instruments -> one SDK MeterProvider ->
``PrometheusMetricReader`` served on 127.0.0.1 -> ``prometheus`` (1 s scrapes) -> HTTP API. Expected totals
are computed from the exported spans, never typed in. Last week's data (for ``offset 1w``) is backfilled
with ``promtool tsdb create-blocks-from openmetrics``.
"""

from __future__ import annotations

import json
import math
import pathlib
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any, TypeVar

import llmmeter
import openai
import pytest
import yaml
from guard_support import guarded
from llmmeter import attribution, budgets, config, estimate, hooks, names
from llmmeter.demo import agent_scenario, scenarios
from llmmeter.demo.server import DemoServer
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from promtools import (
    DASHBOARDS_DIR,
    RULES_FILE,
    PrometheusAPI,
    check_alert_expression,
    check_dashboard_query,
    check_token_labels,
    free_port,
    http_get,
    prometheus_server,
    promised_names,
    require_binary,
    running,
    served_names,
    wait_until,
)

W = TypeVar("W", bound="Workload")
SERVICE = "llmmeter-proof"
ENVIRONMENT = "proof"
M = names.metric_prometheus_name
L = names.prometheus_label
PHASES = 2  # two scrapes apart, so rate()/increase() see every series grow
# The per-label cap: LONG_TAIL_TEAMS go past it (the demo itself never sets `team`), so later teams fold
# into __overflow__. Which keys overflow is worked out from the spans, so new demo scenarios cannot break it.
MAX_VALUES_PER_LABEL = 8
LONG_TAIL_TEAMS = tuple(f"team-{i:02d}" for i in range(MAX_VALUES_PER_LABEL + 2))
OVER_BUDGET = {"tenant": "hooli", "feature": "support-chat", "route": "/api/support", "user": "u-4004"}
SUPPORT = {"tenant": "acme", "feature": "support-chat", "route": "/api/support", "user": "u-1001"}
BUDGET_SPECS = (
    "feature=summarize: 1k tokens/day",  # soft; the first summarize call crosses 80% and 100%
    "tenant=acme: $5/day",  # soft; far from spent
    f"tenant={OVER_BUDGET['tenant']}: 1 calls/day hard",  # the tenant's second call is refused
)


def _estimate_input(request: Any, span: Any) -> None:
    """Before-call hook: estimate the prompt's input tokens with tiktoken (checked after the response)."""
    if request.prompt_text is not None:
        request.estimated_input = estimate.count_tokens(request.prompt_text(), request.model)[0]


@dataclass
class Workload:
    """The app side: the pipeline ``llmmeter demo`` builds, with its metrics served for scraping."""

    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    exporter: InMemorySpanExporter
    settings: config.Settings
    port: int
    server: Any
    budgets: list[budgets.Budget] = field(default_factory=list)
    resolved_tickets: int = 0  # record_outcome(success=True) calls made by the workload
    refused: int = 0  # BudgetExceeded the app caught

    @classmethod
    def start(cls) -> Workload:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import CollectorRegistry, start_http_server

        registry = CollectorRegistry()
        reader = PrometheusMetricReader(registry=registry, resource_attribute_filter=lambda key: key == "service.name")
        port = free_port()
        server, _thread = start_http_server(port, addr="127.0.0.1", registry=registry)
        # The cost ledger is on (a scratch directory), so its llmmeter.ledger.dropped counter is served too.
        return cls.build(reader, ledger=tempfile.mkdtemp(prefix="llmmeter-prom-ledger-"), port=port, server=server)

    @classmethod
    def build(cls: type[W], reader: MetricReader, *, ledger: str | None = None,
              span_exporter: SpanExporter | None = None, port: int = 0, server: Any = None) -> W:
        """The app's pipeline as ``llmmeter demo`` builds it, its metrics read by ``reader``; every span kept in
        memory (the expected totals come from them) and, given ``span_exporter``, exported in batches too."""
        from llmmeter.processor import LLMMeterSpanProcessor
        from llmmeter.views import llmmeter_views

        resource = Resource.create({"service.name": SERVICE})
        meter_provider = MeterProvider(metric_readers=[reader], resource=resource, views=llmmeter_views())
        tracer_provider = TracerProvider(resource=resource)
        settings = config.Settings(label_keys=(*names.DEFAULT_LABEL_KEYS, "user"), summary="off",
                                   max_values_per_label=MAX_VALUES_PER_LABEL, ledger=ledger)
        tracer_provider.add_span_processor(LLMMeterSpanProcessor(meter_provider, settings=settings))
        exporter = InMemorySpanExporter()
        tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
        if span_exporter is not None:
            tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))
        return cls(tracer_provider, meter_provider, exporter, settings, port, server)

    def run_phase(self, client: openai.OpenAI, phase: int) -> None:
        hooks.register_before_call(_estimate_input)  # a pre-call estimate, as hard $-budgets make: estimate.error
        try:
            self._run_phase(client, phase)
        finally:
            hooks.BEFORE_CALL.remove(_estimate_input)

    def _run_phase(self, client: openai.OpenAI, phase: int) -> None:
        with attribution.attributes(environment=ENVIRONMENT):
            scenarios.run_all(client)  # support-chat, summarize (streams, cache, estimate), search, unpriced
            # A Claude model writes its cache on the first long prompt and reads it on the second: the cache
            # economics (llmmeter.cache.savings / write_premium) of a feature.
            long_prompt = "Summarize the attached contract. " + "Clause: the parties agree to terms. " * 200
            with attribution.attributes(tenant="acme", feature="contracts", route="/api/contracts", user="u-1001"):
                for _ in range(2):
                    client.chat.completions.create(model="claude-sonnet-4-5", messages=[
                        {"role": "system", "content": long_prompt}, {"role": "user", "content": f"phase {phase}"}])
            with attribution.attributes(**SUPPORT):
                llmmeter.record_outcome("ticket_resolved", success=True, count=2)
                self.resolved_tickets += 2
                llmmeter.record_cache(True, "faq", model="gpt-4o-mini", input_tokens=100, output_tokens=20)
                llmmeter.record_cache(False, "faq")
            with attribution.attributes(**OVER_BUDGET):
                for _ in range(2 if phase == 0 else 1):
                    try:
                        client.chat.completions.create(
                            model="gpt-4o-mini", messages=[{"role": "user", "content": "Cancel my plan."}])
                    except llmmeter.BudgetExceeded:
                        self.refused += 1
            for team in LONG_TAIL_TEAMS:
                with attribution.attributes(tenant="acme", feature="search", route="/api/search", team=team):
                    client.embeddings.create(model="text-embedding-3-small", input=["order status"])
            result = agent_scenario.run_agent_scenario(client)  # stopped by the loop guard
            assert result.stopped_by == "repeated_tool_call", result
        with attribution.attributes(feature=" search\n"):  # trimmed: llmmeter.attribution.normalized (no call)
            pass

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def exposition(self) -> str:
        return http_get(f"http://127.0.0.1:{self.port}/metrics").decode()

    def flush(self) -> None:
        """Push what the app holds (nothing here: Prometheus scrapes it)."""

    def close(self) -> None:
        self.server.shutdown()
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


@dataclass
class OTLPWorkload(Workload):
    """The same app exporting over OTLP/HTTP (to a collector, or to Prometheus 3's OTLP receiver) instead of
    serving /metrics: metrics every second, spans in batches when ``traces_url`` is given."""

    @classmethod
    def over_otlp(cls, metrics_url: str, traces_url: str | None = None) -> OTLPWorkload:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

        reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=metrics_url), export_interval_millis=1000)
        return cls.build(reader, span_exporter=OTLPSpanExporter(endpoint=traces_url) if traces_url else None)

    @classmethod
    def to_collector(cls, endpoint: str) -> OTLPWorkload:
        """Both signals to a collector's OTLP/HTTP receiver at ``endpoint`` (``http://host:port``)."""
        return cls.over_otlp(f"{endpoint}/v1/metrics", f"{endpoint}/v1/traces")

    def flush(self) -> None:
        self.tracer_provider.force_flush()
        self.meter_provider.force_flush()

    def close(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


def attach(cleanup: ExitStack, workload: Workload, *, with_budgets: bool = True) -> openai.OpenAI:
    """Make ``workload`` the app until ``cleanup`` closes: guarded() (llmmeter's guard telemetry to this
    pipeline, the openai SDK instrumented, fresh budgets and outcomes; on exit every hook, budget, provider and
    setting is put back), its settings current, BUDGET_SPECS added unless ``with_budgets`` is false. Returns an
    openai client of the demo's scripted server on 127.0.0.1."""
    cleanup.callback(workload.close)
    cleanup.enter_context(guarded(workload))
    config.set_settings(workload.settings)
    if with_budgets:
        workload.budgets = [budgets.add(spec) for spec in BUDGET_SPECS]
    demo = cleanup.enter_context(DemoServer())
    return openai.OpenAI(base_url=demo.base_url, api_key="demo-not-a-secret", max_retries=0)


def run_phases(workload: Workload, client: openai.OpenAI, api: PrometheusAPI, *, where: str = "",
               timeout: float = 30, after_each: Any = None) -> None:
    """The PHASES phases of the workload; after each, wait until Prometheus counts every LLM call made so far
    (``where``: a label selector, e.g. one service's), so rate()/increase() see two distinct samples of each
    series. ``after_each``: a further wait, if the path needs one."""
    requests = M(names.METRIC_REQUESTS)
    for phase in range(PHASES):
        workload.run_phase(client, phase)
        workload.flush()
        seen = len(llm_spans(workload.spans()))
        wait_until(lambda n=seen: api.vector(f"sum({requests}{where})") == [({}, float(n))], timeout,
                   f"prometheus to count {seen} requests{where}")
        if after_each is not None:
            after_each()


# --- what the spans say ------------------------------------------------------------------------------
TOKEN_ATTRS = {
    "input": names.USAGE_INPUT_TOKENS,
    "output": names.USAGE_OUTPUT_TOKENS,
    "cache_read": names.USAGE_CACHE_READ_TOKENS,
    "cache_creation": names.USAGE_CACHE_CREATION_TOKENS,
    "reasoning": names.USAGE_REASONING_TOKENS,
}


def llm_spans(spans: list[ReadableSpan]) -> list[ReadableSpan]:
    return [s for s in spans if (s.attributes or {}).get(names.OPERATION) in names.INFERENCE_OPERATIONS]


def events(spans: list[ReadableSpan], name: str) -> list[Any]:
    return [e for s in spans for e in s.events if e.name == name]


def span_tokens(spans: list[ReadableSpan]) -> dict[str, int]:
    """Tokens by llmmeter token type over the LLM spans (types with none left out, like the counter)."""
    totals = {kind: sum(s.attributes.get(attr, 0) for s in llm_spans(spans)) for kind, attr in TOKEN_ATTRS.items()}
    return {kind: total for kind, total in totals.items() if total}


def span_cost(spans: list[ReadableSpan]) -> float:
    return math.fsum(s.attributes.get(names.COST_USD, 0.0) for s in llm_spans(spans))


def unpriced_models(spans: list[ReadableSpan]) -> set[str]:
    return {s.attributes[names.REQUEST_MODEL] for s in llm_spans(spans)
            if s.attributes.get(names.LLMMETER_PRICED) is False and not s.attributes.get(names.LLMMETER_BLOCKED)}


# --- the stack ---------------------------------------------------------------------------------------
def backfill_last_week(promtool: str, data_dir: pathlib.Path, tmp: pathlib.Path) -> float:
    """Input tokens and cost from one week ago (for the `offset 1w` panels and the spike alert)."""
    now = time.time()
    start, step, points = now - 7 * 86400 - 5400, 60, 100
    labels = (f'{L(names.PROVIDER)}="openai",{L(names.REQUEST_MODEL)}="gpt-4o-mini",'
              f'{L("service.name")}="{SERVICE}",environment="{ENVIRONMENT}"')
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


def last_week_tsdb(tmp: pathlib.Path) -> tuple[pathlib.Path, float]:
    """A TSDB directory under ``tmp`` holding :func:`backfill_last_week`'s data, and last week's input rate."""
    data_dir = tmp / "data"
    data_dir.mkdir()
    return data_dir, backfill_last_week(require_binary("promtool"), data_dir, tmp)


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
    tmp = tmp_path_factory.mktemp("prom")
    data_dir, last_week_rate = last_week_tsdb(tmp)

    with ExitStack() as cleanup:
        workload = Workload.start()
        client = attach(cleanup, workload)

        am_port = free_port()
        (tmp / "alertmanager.yml").write_text(yaml.safe_dump({
            "route": {"receiver": "test", "group_wait": "0s", "group_interval": "1s", "repeat_interval": "1h"},
            "receivers": [{"name": "test"}],
        }))
        am_args = [alertmanager, f"--config.file={tmp / 'alertmanager.yml'}", f"--storage.path={tmp / 'am'}",
                   f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address="]
        cleanup.enter_context(running(am_args, tmp / "alertmanager.log"))
        api = cleanup.enter_context(prometheus_server(prometheus, tmp, {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES_FILE)],
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]},
            # A direct scrape of the Python exporter: no relabelling, the names are the collector's.
            "scrape_configs": [{"job_name": "llmmeter-app",
                                "static_configs": [{"targets": [f"127.0.0.1:{workload.port}"]}]}],
        }, data_dir=data_dir, args=("--storage.tsdb.retention.time=30d",)))
        wait_until(lambda: http_get(f"http://127.0.0.1:{am_port}/-/ready"), 30, "alertmanager ready")
        run_phases(workload, client, api)
        yield Stack(api, f"http://127.0.0.1:{am_port}", workload, last_week_rate)


def dashboard_queries() -> list[tuple[str, str]]:
    out = []
    for path in sorted(DASHBOARDS_DIR.glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel["targets"]:
                out.append((f"{path.stem}: {panel['title']} [{target['refId']}]", target["expr"]))
    return out


def alert_expressions() -> list[tuple[str, str]]:
    doc = yaml.safe_load(RULES_FILE.read_text())
    return [(rule["alert"], rule["expr"]) for group in doc["groups"] for rule in group["rules"]]


# --- tests -------------------------------------------------------------------------------------------
def test_python_exporter_names_match_prometheus_name(stack: Stack) -> None:
    """opentelemetry-exporter-prometheus serves exactly names.metric_prometheus_name() for every metric
    of names.METRIC_SPECS (the collector's names), and nothing else under llmmeter_/gen_ai_."""
    text = stack.workload.exposition()
    served = served_names(text)
    assert {s for s in served if s.startswith(("llmmeter_", "gen_ai_"))} == promised_names()
    labels_line = next(line for line in text.splitlines() if line.startswith(M(names.METRIC_TOKENS) + "{"))
    check_token_labels(labels_line)


@pytest.mark.parametrize(("where", "expr"), dashboard_queries(), ids=[q[0] for q in dashboard_queries()])
def test_dashboard_query_returns_data(stack: Stack, where: str, expr: str) -> None:
    check_dashboard_query(stack.api, where, expr)


@pytest.mark.parametrize(("alert", "expr"), alert_expressions(), ids=[a[0] for a in alert_expressions()])
def test_alert_expression_evaluates(stack: Stack, alert: str, expr: str) -> None:
    check_alert_expression(stack.api, alert, expr)


def test_cost_and_tokens_equal_the_spans(stack: Stack) -> None:
    spans = stack.workload.spans()
    llm = llm_spans(spans)
    api = stack.api
    want_cost = span_cost(spans)
    assert want_cost > 0
    assert api.scalar(f"sum({M(names.METRIC_COST)})") == pytest.approx(want_cost, rel=1e-9)
    token_type = L(names.LABEL_TOKEN_TYPE)
    by_type = {m[token_type]: v for m, v in api.vector(f"sum by ({token_type}) ({M(names.METRIC_TOKENS)})")}
    want_tokens = span_tokens(spans)
    assert {"input", "output", "cache_read"} <= set(want_tokens)  # the workload exercises the prompt cache
    assert by_type == want_tokens
    sc = L(names.TOKEN_TYPE)
    assert api.scalar(f'sum({M(names.METRIC_TOKEN_USAGE)}_sum{{{sc}="input"}})') == want_tokens["input"]
    assert api.scalar(f"sum({M(names.METRIC_REQUESTS)})") == len(llm)
    estimated = sum(1 for s in llm if s.attributes.get(names.LLMMETER_ESTIMATED) is True)
    assert estimated > 0
    assert api.scalar(f'sum({M(names.METRIC_REQUESTS)}{{{L(names.LABEL_ESTIMATED)}="true"}})') == estimated
    unpriced = sum(1 for s in llm if s.attributes.get(names.LLMMETER_PRICED) is False
                   and not s.attributes.get(names.LLMMETER_BLOCKED))
    assert api.scalar(f'sum({M(names.METRIC_REQUESTS)}{{{L(names.LABEL_PRICED)}="false"}})') == unpriced
    blocked = sum(1 for s in llm if s.attributes.get(names.LLMMETER_BLOCKED) is True)
    assert api.scalar(f'sum({M(names.METRIC_REQUESTS)}{{{L(names.LABEL_STATUS)}="blocked"}})') == blocked


def test_cost_by_tenant_equals_the_spans(stack: Stack) -> None:
    tenant_attr = names.ATTRIBUTION_SPAN_PREFIX + "tenant"
    want: Counter[str] = Counter()
    for span in llm_spans(stack.workload.spans()):
        want[span.attributes[tenant_attr]] += span.attributes.get(names.COST_USD, 0.0)
    got = {m["tenant"]: v for m, v in stack.api.vector(f"sum by (tenant) ({M(names.METRIC_COST)})")}
    assert set(got) == {t for t, usd in want.items() if usd}
    for tenant, usd in got.items():
        assert usd == pytest.approx(want[tenant], rel=1e-9), tenant


def test_agent_and_loop_guard_metrics_equal_the_spans(stack: Stack) -> None:
    spans = stack.workload.spans()
    runs = [s for s in spans if s.attributes.get(names.OPERATION) == names.OP_INVOKE_AGENT]
    assert len(runs) == PHASES
    api = stack.api
    agent = L(names.AGENT_NAME)
    assert api.vector(f"sum by ({agent}, {L(names.LABEL_STATUS)}) ({M(names.METRIC_AGENT_RUNS)})") == [
        ({agent: agent_scenario.AGENT_NAME, L(names.LABEL_STATUS): "blocked"}, float(len(runs)))]
    trips = events(spans, names.EVENT_LOOP_GUARD)
    assert api.vector(f"sum by ({L(names.LABEL_GUARD)}) ({M(names.METRIC_LOOP_GUARD_TRIPS)})") == [
        ({L(names.LABEL_GUARD): "repeated_tool_call"}, float(len(trips)))]
    run_cost = math.fsum(s.attributes[names.RUN_COST_USD] for s in runs)
    assert api.scalar(f"sum({M(names.METRIC_AGENT_RUN_COST)}_sum)") == pytest.approx(run_cost, rel=1e-9)
    run_calls = sum(s.attributes[names.RUN_LLM_CALLS] for s in runs)
    assert api.scalar(f"sum({M(names.METRIC_AGENT_RUN_LLM_CALLS)}_sum)") == run_calls


def test_budget_metrics_equal_the_spans(stack: Stack) -> None:
    workload, api = stack.workload, stack.api
    spans = workload.spans()
    budget, threshold = L(names.LABEL_BUDGET), L(names.LABEL_THRESHOLD)
    crossings = Counter((e.attributes[names.LABEL_BUDGET], e.attributes[names.LABEL_THRESHOLD])
                        for e in events(spans, names.EVENT_BUDGET_THRESHOLD))
    got = {(m[budget], m[threshold]): v
           for m, v in api.vector(f"sum by ({budget}, {threshold}) ({M(names.METRIC_BUDGET_CROSSINGS)})")}
    tokens_budget, usd_budget, calls_budget = workload.budgets
    assert {(tokens_budget.name, "0.8"), (tokens_budget.name, "1"), (calls_budget.name, "1")} <= set(got)
    assert got == {key: float(n) for key, n in crossings.items()}
    refusals = events(spans, names.EVENT_BUDGET_EXCEEDED)
    assert len(refusals) == workload.refused == PHASES
    assert api.vector(f"sum by ({budget}) ({M(names.METRIC_BUDGET_BLOCKED)})") == [
        ({budget: calls_budget.name}, float(len(refusals)))]
    # The gauge: what the summarize feature's calls used (input + output tokens) over the budget's limit.
    feature = names.ATTRIBUTION_SPAN_PREFIX + "feature"
    summarize = [s for s in llm_spans(spans) if s.attributes.get(feature) == "summarize"]
    used = sum(s.attributes[names.USAGE_INPUT_TOKENS] + s.attributes[names.USAGE_OUTPUT_TOKENS] for s in summarize)
    spend = {m[budget]: v for m, v in api.vector(M(names.METRIC_BUDGET_SPEND))}
    assert set(spend) == {b.name for b in workload.budgets}
    assert spend[tokens_budget.name] == pytest.approx(used / tokens_budget.limit, rel=1e-9)
    assert spend[calls_budget.name] == 1.0  # one call admitted, the rest refused
    tenant = names.ATTRIBUTION_SPAN_PREFIX + usd_budget.key
    usd = math.fsum(s.attributes.get(names.COST_USD, 0.0) for s in llm_spans(spans)
                    if s.attributes.get(tenant) == usd_budget.value)
    assert usd > 0
    assert spend[usd_budget.name] == pytest.approx(usd / usd_budget.limit, rel=1e-9)


def test_outcomes_and_overflow(stack: Stack) -> None:
    spans, api = stack.workload.spans(), stack.api
    success = L(names.LABEL_SUCCESS)
    got = {m[success]: v for m, v in api.vector(f"sum by ({success}) ({M(names.METRIC_OUTCOMES)})")}
    failed = [e for e in events(spans, names.EVENT_OUTCOME) if e.attributes[names.LABEL_SUCCESS] is False]
    assert got == {"true": float(stack.workload.resolved_tickets), "false": float(len(failed))}
    # Past MAX_VALUES_PER_LABEL values of a label, later values fold into __overflow__, and each folded
    # call is counted in the overflow counter under its key.
    llm = llm_spans(spans)
    folded: Counter[str] = Counter()
    for key in stack.workload.settings.label_keys:
        attr = names.ATTRIBUTION_SPAN_PREFIX + key
        seen: list[str] = []
        for span in sorted(llm, key=lambda s: s.end_time or 0):
            value = span.attributes.get(attr)
            if value is None:
                continue
            if value not in seen and len(seen) < MAX_VALUES_PER_LABEL:
                seen.append(value)
            if value not in seen:
                folded[key] += 1
        label = names.ATTRIBUTION_LABEL_PREFIX + key
        values = {m.get(label, "") for m, _ in api.vector(f"sum by ({label}) ({M(names.METRIC_REQUESTS)})")} - {""}
        assert values == set(seen) | ({names.OVERFLOW_VALUE} if folded[key] else set()), key
    assert folded["team"] >= (len(LONG_TAIL_TEAMS) - MAX_VALUES_PER_LABEL) * PHASES  # the long tail folded
    key_label = L(names.LABEL_ATTRIBUTION_KEY)
    overflow = api.vector(f"sum by ({key_label}) ({M(names.METRIC_ATTRIBUTION_OVERFLOW)})")
    assert {m[key_label]: v for m, v in overflow} == {key: float(n) for key, n in folded.items()}


def test_week_over_week_panel_sees_backfilled_history(stack: Stack) -> None:
    expr = f'sum(rate({M(names.METRIC_TOKENS)}{{{L(names.LABEL_TOKEN_TYPE)}="input"}}[1h] offset 1w))'
    assert stack.api.scalar(expr) == pytest.approx(stack.last_week_input_rate, rel=0.05)


def test_alerts_fire_into_alertmanager(stack: Stack) -> None:
    """The unpriced model and the loop guard of the workload reach a real Alertmanager."""
    wanted = {"LLMUnpricedModelSeen", "LLMLoopGuardTripped"}

    def firing() -> dict[str, list[dict]]:
        alerts = json.loads(http_get(f"{stack.alertmanager_url}/api/v2/alerts"))
        out: dict[str, list[dict]] = {}
        for alert in alerts:
            out.setdefault(alert["labels"].get("alertname"), []).append(alert)
        return out if wanted <= set(out) else {}

    alerts = wait_until(firing, 30, f"{sorted(wanted)} in alertmanager")
    unpriced = alerts["LLMUnpricedModelSeen"]
    assert {a["labels"][L(names.REQUEST_MODEL)] for a in unpriced} == unpriced_models(stack.workload.spans())
    assert {a["labels"][L(names.REQUEST_MODEL)] for a in unpriced} == {scenarios.UNPRICED_MODEL}
    assert all(a["labels"]["severity"] == "warning" and a["status"]["state"] == "active" for a in unpriced)
    assert {a["labels"][L(names.LABEL_GUARD)] for a in alerts["LLMLoopGuardTripped"]} == {"repeated_tool_call"}
