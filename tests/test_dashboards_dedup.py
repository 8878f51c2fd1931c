"""Dashboards and alerts count one call once, with openai-v2 installed beside llmmeter, on a real Prometheus.

Both instrumentors wrap the real openai SDK (as ``opentelemetry-instrument`` does when both are installed),
so every call is recorded twice in ``gen_ai.client.token.usage`` / ``gen_ai.client.operation.duration``,
once per instrumentation scope. The metrics go through opentelemetry-exporter-prometheus to a real
``prometheus`` (1 s scrapes). Every selector of those histograms in the shipped dashboards and alert rules
must see each call once: the expected counts are the calls this test made and the usage the scripted
server returned (test_dedup_openai_v2's figures), not anything llmmeter computed. Panels that divide by a
series a healthy system lacks (no estimates, no cache reads here) must show 0, not "No data".
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import openai
import pytest
import yaml
from llmmeter import names
from llmmeter.instrumentors.openai import OpenAIInstrumentor as LLMMeterInstrumentor
from llmmeter.processor import LLMMeterSpanProcessor
from llmmeter.views import llmmeter_views
from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor as OfficialInstrumentor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from promtools import (
    DASHBOARDS_DIR,
    RULES_FILE,
    PrometheusAPI,
    free_port,
    grafana_to_promql,
    prometheus_server,
    require_binary,
    wait_until,
)
from replay_server import scripted
from test_dedup_openai_v2 import INPUT_TOKENS, OUTPUT_TOKENS, _reply

M, L = names.metric_prometheus_name, names.prometheus_label
TOKEN_USAGE, DURATION = M(names.METRIC_TOKEN_USAGE), M(names.METRIC_OPERATION_DURATION)
SCOPE, SC_TYPE = L(names.OTEL_SCOPE_NAME), L(names.TOKEN_TYPE)
CALLS_PER_PHASE = 3
PHASES = 2  # two scrapes apart, so rate() sees the series grow
CALLS = CALLS_PER_PHASE * PHASES
HISTOGRAM_SELECTOR = re.compile(rf"\b({TOKEN_USAGE}|{DURATION})_(?:bucket|sum|count)(\{{[^{{}}]*\}})?")


@dataclass
class Stack:
    api: PrometheusAPI


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from prometheus_client import CollectorRegistry, start_http_server

    prometheus = require_binary("prometheus")
    tmp = tmp_path_factory.mktemp("prom-dedup")
    with ExitStack() as cleanup:
        registry = CollectorRegistry()
        reader = PrometheusMetricReader(registry=registry)
        resource = Resource.create({"service.name": "llmmeter-dedup"})
        meter_provider = MeterProvider(metric_readers=[reader], resource=resource, views=llmmeter_views())
        tracer_provider = TracerProvider(resource=resource)
        tracer_provider.add_span_processor(LLMMeterSpanProcessor(meter_provider))
        cleanup.callback(meter_provider.shutdown)
        cleanup.callback(tracer_provider.shutdown)
        port = free_port()
        server, _thread = start_http_server(port, addr="127.0.0.1", registry=registry)
        cleanup.callback(server.shutdown)
        for instrumentor in (OfficialInstrumentor(), LLMMeterInstrumentor()):
            instrumentor.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
            cleanup.callback(instrumentor.uninstrument)
        llm = cleanup.enter_context(scripted(_reply))
        client = openai.OpenAI(base_url=llm.base_url + "/v1", api_key="test-key", max_retries=0)

        api = cleanup.enter_context(prometheus_server(prometheus, tmp, {
            "global": {"scrape_interval": "1s"},
            "scrape_configs": [{"job_name": "app", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}],
        }))
        requests = M(names.METRIC_REQUESTS)
        for phase in range(PHASES):
            for _ in range(CALLS_PER_PHASE):
                client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
            done = CALLS_PER_PHASE * (phase + 1)
            wait_until(lambda n=done: api.vector(f"sum({requests})") == [({}, float(n))], 30,
                       f"prometheus to scrape {done} requests")
        # ... and the histograms of that scrape (the same exposition, but be explicit)
        wait_until(lambda: api.vector(f'sum({TOKEN_USAGE}_count{{{SC_TYPE}="input"}})') == [({}, 2.0 * CALLS)],
                   30, "both instrumentors' histogram records")
        yield Stack(api)


def histogram_selectors() -> list[tuple[str, str, str]]:
    """(where, metric, label matchers) of every semconv histogram selector in the dashboards and rules."""
    found = []
    for path in sorted(DASHBOARDS_DIR.glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel["targets"]:
                for metric, matchers in HISTOGRAM_SELECTOR.findall(grafana_to_promql(target["expr"])):
                    found.append((f"{path.stem}: {panel['title']}", metric, matchers))
    for group in yaml.safe_load(RULES_FILE.read_text())["groups"]:
        for rule in group["rules"]:
            for metric, matchers in HISTOGRAM_SELECTOR.findall(rule["expr"]):
                found.append((f"rule {rule.get('alert') or rule.get('record')}", metric, matchers))
    return found


SELECTORS = histogram_selectors()


def test_both_instrumentors_really_record_each_call(stack: Stack) -> None:
    """Without a scope filter a call counts twice: the premise of this file (and the exporter's scope label)."""
    by_scope = dict((m[SCOPE], v) for m, v in stack.api.vector(
        f'sum by ({SCOPE}) ({TOKEN_USAGE}_count{{{SC_TYPE}="input"}})'))
    assert by_scope.get(names.LLMMETER_SCOPE) == CALLS
    assert len(by_scope) == 2 and all(v == CALLS for v in by_scope.values()), by_scope


def test_selectors_were_found() -> None:
    metrics = {metric for _where, metric, _m in SELECTORS}
    assert metrics == {TOKEN_USAGE, DURATION}
    assert any(where.startswith("rule ") for where, _m, _s in SELECTORS)


@pytest.mark.parametrize(("where", "metric", "matchers"), SELECTORS, ids=[s[0] for s in SELECTORS])
def test_every_histogram_selector_counts_each_call_once(stack: Stack, where: str, metric: str, matchers: str) -> None:
    api = stack.api
    if metric == TOKEN_USAGE:
        counts = dict((m[SC_TYPE], v) for m, v in api.vector(f"sum by ({SC_TYPE}) ({metric}_count{matchers})"))
        assert counts and all(v == CALLS for v in counts.values()), f"{where}: {counts}"
        sums = dict((m[SC_TYPE], v) for m, v in api.vector(f"sum by ({SC_TYPE}) ({metric}_sum{matchers})"))
        expected = {"input": CALLS * INPUT_TOKENS, "output": CALLS * OUTPUT_TOKENS}
        assert sums == {kind: expected[kind] for kind in sums}, f"{where}: {sums}"
    else:
        assert api.scalar(f"sum({metric}_count{matchers})") == CALLS, where


@pytest.mark.parametrize("title", ["Share of requests with estimated tokens", "Cache hit ratio"])
def test_ratio_of_a_series_absent_when_healthy_shows_zero(stack: Stack, title: str) -> None:
    board = json.loads((DASHBOARDS_DIR / "llmmeter-tokens.json").read_text())
    (panel,) = [p for p in board["panels"] if p["title"] == title]
    (target,) = panel["targets"]
    # No estimates and no cache reads in this workload (the server reports full usage, 0 cached tokens).
    assert stack.api.vector(grafana_to_promql(target["expr"])) == [({}, 0.0)]
