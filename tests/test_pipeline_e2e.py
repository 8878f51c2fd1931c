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
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import openai
import pytest
import test_prometheus_proof as proof
from collector_support import (
    CollectorPorts,
    JaegerAPI,
    Proc,
    log_events,
    own_metrics,
    prometheus_config,
    start_pipeline,
    tags,
)
from llmmeter import names
from llmmeter.demo import agent_scenario
from promtools import (
    PrometheusAPI,
    check_alert_expression,
    check_dashboard_query,
    check_token_labels,
    http_get,
    prometheus_server,
    promised_names,
    require_binary,
    served_names,
    wait_until,
)

M = names.metric_prometheus_name
L = names.prometheus_label
SERVICE = proof.SERVICE  # the in-process workload (the backfilled last week uses this name too)
DEMO_SERVICE = "llmmeter-demo-cli"  # `llmmeter demo` in its own process
SERVICE_LABEL = L("service.name")
LLM_OPERATIONS = set(names.INFERENCE_OPERATIONS)


@dataclass
class Stack:
    """The scaled-out pipeline running, with the proof workload's app sending OTLP/HTTP to the agent."""

    api: PrometheusAPI
    jaeger: JaegerAPI
    procs: dict[str, Proc]
    agent: CollectorPorts
    gateways: list[CollectorPorts]
    workload: proof.OTLPWorkload
    client: openai.OpenAI


@contextmanager
def running_stack(tmp: Any, *, data_dir: Any = None, prometheus_args: tuple[str, ...] = (),
                  with_budgets: bool = True) -> Iterator[Stack]:
    """Jaeger, two gateways, an agent and a real Prometheus scraping the gateways, all healthy; the app attached
    (proof.attach). Everything is stopped and put back on exit."""
    prometheus = require_binary("prometheus")
    with ExitStack() as cleanup:
        jaeger_ports, gateways, agent, procs = start_pipeline(cleanup, tmp)
        api = cleanup.enter_context(prometheus_server(prometheus, tmp, prometheus_config(gateways),
                                                      data_dir=data_dir, args=prometheus_args))
        workload = proof.OTLPWorkload.to_collector(f"http://127.0.0.1:{agent.http}")
        client = proof.attach(cleanup, workload, with_budgets=with_budgets)
        yield Stack(api, JaegerAPI(jaeger_ports), procs, agent, gateways, workload, client)


@dataclass
class Pipeline(Stack):
    demo_output: str
    last_week_input_rate: float


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
    tmp = tmp_path_factory.mktemp("pipeline")
    data_dir, last_week_rate = proof.last_week_tsdb(tmp)
    with running_stack(tmp, data_dir=data_dir, prometheus_args=("--storage.tsdb.retention.time=30d",)) as stack:
        api, workload = stack.api, stack.workload
        requests = M(names.METRIC_REQUESTS)
        # Two scrapes apart, so rate()/increase() see every series grow.
        proof.run_phases(workload, stack.client, api, where=f'{{{SERVICE_LABEL}="{SERVICE}"}}', timeout=60)
        demo_output = run_demo_cli(stack.agent)
        jaeger_api = stack.jaeger
        sent = len(workload.spans())
        wait_until(lambda: len(jaeger_api.spans(SERVICE)) == sent, 60, f"{sent} spans of {SERVICE} in Jaeger")

        def demo_complete() -> bool:
            llm = [s for s in jaeger_api.spans(DEMO_SERVICE) if tags(s).get(names.OPERATION) in LLM_OPERATIONS]
            scraped = api.vector(f'sum({requests}{{{SERVICE_LABEL}="{DEMO_SERVICE}"}})')
            return bool(llm) and scraped == [({}, float(len(llm)))]

        wait_until(demo_complete, 60, f"{DEMO_SERVICE}'s spans in Jaeger and its requests in Prometheus to agree")
        yield Pipeline(**vars(stack), demo_output=demo_output, last_week_input_rate=last_week_rate)


# --- Prometheus through the collector ----------------------------------------------------------------
@pytest.mark.parametrize(("where", "expr"), proof.dashboard_queries(), ids=[q[0] for q in proof.dashboard_queries()])
def test_dashboard_query_returns_data(pipeline: Pipeline, where: str, expr: str) -> None:
    check_dashboard_query(pipeline.api, where, expr)


@pytest.mark.parametrize(("alert", "expr"), proof.alert_expressions(), ids=[a[0] for a in proof.alert_expressions()])
def test_alert_expression_evaluates(pipeline: Pipeline, alert: str, expr: str) -> None:
    check_alert_expression(pipeline.api, alert, expr)


def test_collector_exporter_serves_the_names_llmmeter_promises(pipeline: Pipeline) -> None:
    """The gateways' prometheus exporter serves exactly names.metric_prometheus_name() for every metric of
    names.METRIC_SPECS, nothing else under llmmeter_/gen_ai_, with the labels the dashboards filter on."""
    served: set[str] = set()
    lines: list[str] = []
    for gateway in pipeline.gateways:
        text = http_get(f"http://127.0.0.1:{gateway.prometheus}/metrics").decode()
        lines += text.splitlines()
        served |= served_names(text)
    assert {s for s in served if s.startswith(("llmmeter_", "gen_ai_"))} == promised_names()
    tokens_line = next(line for line in lines if line.startswith(M(names.METRIC_TOKENS) + "{")
                       and f'{SERVICE_LABEL}="{SERVICE}"' in line)
    check_token_labels(tokens_line)


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
