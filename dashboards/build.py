"""Generate llmmeter's Grafana dashboards (import format) from ``llmmeter.names``.

Why generated: every metric and label in a query comes from ``llmmeter.names`` (via
``metric_prometheus_name()`` / ``prometheus_label()``), so renaming a metric there changes the dashboards
too instead of leaving them silently empty. ``tests/test_dashboards.py`` regenerates the JSON and fails
if the committed files differ; ``tests/test_prometheus_proof.py`` runs every query on a real Prometheus.

Usage: ``python dashboards/build.py`` (writes ``dashboards/*.json``).
"""

from __future__ import annotations

import json
import pathlib
from dataclasses import dataclass, field
from typing import Any

from llmmeter import names
from opentelemetry.semconv.attributes.service_attributes import SERVICE_NAME

HERE = pathlib.Path(__file__).resolve().parent
SCHEMA_VERSION = 39  # Grafana 10.4 / 11.x
DS = {"type": "prometheus", "uid": "${datasource}"}

M = names.metric_prometheus_name
L = names.prometheus_label
COST, TOKENS, REQUESTS = M(names.METRIC_COST), M(names.METRIC_TOKENS), M(names.METRIC_REQUESTS)
TOKEN_USAGE, DURATION = M(names.METRIC_TOKEN_USAGE), M(names.METRIC_OPERATION_DURATION)
OUTCOMES = M(names.METRIC_OUTCOMES)
AGENT_RUNS, RUN_COST, RUN_CALLS = M(names.METRIC_AGENT_RUNS), M(names.METRIC_AGENT_RUN_COST), M(
    names.METRIC_AGENT_RUN_LLM_CALLS
)
TRIPS, SPEND, CROSSINGS, BLOCKED = (
    M(names.METRIC_LOOP_GUARD_TRIPS),
    M(names.METRIC_BUDGET_SPEND),
    M(names.METRIC_BUDGET_CROSSINGS),
    M(names.METRIC_BUDGET_BLOCKED),
)
PROVIDER, MODEL, TOKEN_TYPE = L(names.PROVIDER), L(names.REQUEST_MODEL), L(names.LABEL_TOKEN_TYPE)
SC_TOKEN_TYPE, AGENT = L(names.TOKEN_TYPE), L(names.AGENT_NAME)
STATUS, PRICED, ESTIMATED, SUCCESS = (
    L(names.LABEL_STATUS),
    L(names.LABEL_PRICED),
    L(names.LABEL_ESTIMATED),
    L(names.LABEL_SUCCESS),
)
BUDGET, THRESHOLD, GUARD = L(names.LABEL_BUDGET), L(names.LABEL_THRESHOLD), L(names.LABEL_GUARD)
SERVICE = L(SERVICE_NAME)
# Prices (issue 12): cache economics on the cost dashboard, the pre-call estimate's error on the tokens dashboard.
CACHE_SAVED, CACHE_PREMIUM = M(names.METRIC_CACHE_SAVINGS), M(names.METRIC_CACHE_WRITE_PREMIUM)
ESTIMATE_ERROR = M(names.METRIC_ESTIMATE_ERROR)
# The semconv histograms as llmmeter recorded them: another instrumentor beside llmmeter (openai-v2) records
# its own copy of every call, under its own scope. "=~...|" also matches a series with no scope label at all
# (a pipeline that drops it): such panels then show what they showed before, never nothing.
OURS = f'{L(names.OTEL_SCOPE_NAME)}=~"{names.LLMMETER_SCOPE}|"'


def _attr(key: str) -> str:
    return names.ATTRIBUTION_LABEL_PREFIX + key


USER = _attr("user")
# Template variables: (variable name, label, metric to list values from).
ATTRIBUTION_VARS = [(key, _attr(key)) for key in names.DEFAULT_LABEL_KEYS if key != "environment"] + [("user", USER)]
VARIABLES: list[tuple[str, str]] = [
    ("service", SERVICE),
    ("environment", _attr("environment")),
    ("provider", PROVIDER),
    ("model", MODEL),
    *ATTRIBUTION_VARS,
]
HAS_USER = f'{USER}!=""'
IN_OR_OUT = f'{TOKEN_TYPE}=~"{names.TOKEN_TYPE_INPUT}|{names.TOKEN_TYPE_OUTPUT}"'
WHO = ["service", "environment", *(v for v, _ in ATTRIBUTION_VARS)]  # filters that apply to every metric


def _filter(var_names: list[str], *extra: str) -> str:
    label_of = dict(VARIABLES)
    parts = [f'{label_of[v]}=~"${v}"' for v in var_names] + list(extra)
    return "{" + ", ".join(parts) + "}"


def F(*extra: str) -> str:
    """All template-variable filters (for metrics labelled with provider and model) plus ``extra`` matchers."""
    return _filter([v for v, _ in VARIABLES], *extra)


def A(*extra: str) -> str:
    """Who-filters only, for metrics without provider/model labels (outcomes, agents, budgets)."""
    return _filter(WHO, *extra)


def eq(label: str, value: str) -> str:
    return f'{label}="{value}"'


@dataclass
class Panel:
    title: str
    description: str
    targets: list[tuple[str, str]]  # (PromQL, legend)
    kind: str = "timeseries"
    unit: str = "short"
    width: int = 12
    height: int = 8
    options: dict[str, Any] = field(default_factory=dict)
    thresholds: list[tuple[float | None, str]] = field(default_factory=list)


def _panel(p: Panel, pid: int, x: int, y: int) -> dict[str, Any]:
    steps = [{"color": color, "value": value} for value, color in (p.thresholds or [(None, "green")])]
    out: dict[str, Any] = {
        "id": pid,
        "type": p.kind,
        "title": p.title,
        "description": p.description,
        "datasource": DS,
        "gridPos": {"h": p.height, "w": p.width, "x": x, "y": y},
        "fieldConfig": {
            "defaults": {"unit": p.unit, "thresholds": {"mode": "absolute", "steps": steps}},
            "overrides": [],
        },
        "options": p.options,
        "targets": [
            {
                "refId": chr(ord("A") + i),
                "datasource": DS,
                "expr": expr,
                "legendFormat": legend,
                **({"instant": True, "range": False, "format": "table"} if p.kind in ("table", "bargauge") else {}),
            }
            for i, (expr, legend) in enumerate(p.targets)
        ],
    }
    return out


def _variables() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {
            "name": "datasource",
            "label": "Prometheus",
            "type": "datasource",
            "query": "prometheus",
            "current": {"selected": False, "text": "${DS_PROMETHEUS}", "value": "${DS_PROMETHEUS}"},
            "hide": 0,
            "refresh": 1,
        }
    ]
    for var, label in VARIABLES:
        out.append(
            {
                "name": var,
                "label": var,
                "type": "query",
                "datasource": DS,
                "query": {"query": f"label_values({REQUESTS}, {label})", "refId": f"var-{var}"},
                "definition": f"label_values({REQUESTS}, {label})",
                "includeAll": True,
                "multi": True,
                "allValue": ".*",
                "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
                "refresh": 2,
                "sort": 1,
                "hide": 0,
            }
        )
    return out


def dashboard(uid: str, title: str, description: str, panels: list[Panel]) -> dict[str, Any]:
    laid: list[dict[str, Any]] = []
    x = y = row_h = 0
    for pid, p in enumerate(panels, start=1):
        if x + p.width > 24:
            x, y, row_h = 0, y + row_h, 0
        laid.append(_panel(p, pid, x, y))
        x += p.width
        row_h = max(row_h, p.height)
    return {
        "__inputs": [
            {
                "name": "DS_PROMETHEUS",
                "label": "Prometheus",
                "description": "Prometheus scraping the llmmeter collector (otel-collector.yaml, :8889)",
                "type": "datasource",
                "pluginId": "prometheus",
                "pluginName": "Prometheus",
            }
        ],
        "__requires": [
            {"type": "grafana", "id": "grafana", "name": "Grafana", "version": "10.4.0"},
            {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
            *[
                {"type": "panel", "id": kind, "name": kind, "version": ""}
                for kind in sorted({p.kind for p in panels})
            ],
        ],
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["llmmeter", "genai"],
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "time": {"from": "now-24h", "to": "now"},
        "refresh": "1m",
        "timezone": "",
        "annotations": {"list": []},
        "links": [],
        "templating": {"list": _variables()},
        "panels": laid,
    }


def rate(selector: str, window: str = "$__rate_interval", offset: str = "") -> str:
    return f"rate({selector}[{window}]{' offset ' + offset if offset else ''})"


def cost_dashboard() -> dict[str, Any]:
    c, r = COST + F(), REQUESTS + F()
    return dashboard(
        "llmmeter-cost",
        "LLM cost",
        "What LLM calls cost, by model, provider, feature, tenant and user (llmmeter).",
        [
            Panel("Spend (selected range)", "USD spent in the dashboard's time range.",
                  [(f"sum(increase({c}[$__range]))", "spend")], "stat", "currencyUSD", 6, 5),
            Panel("Burn rate (USD/day)", "Spend per day at the rate of the last hour.",
                  [(f"sum({rate(c, '1h')}) * 86400", "USD/day")], "stat", "currencyUSD", 6, 5),
            Panel("Cost per request", "Mean USD per LLM call (priced calls; unpriced ones add no cost).",
                  [(f"sum({rate(c)}) / sum({rate(r)})", "USD/request")], "stat", "currencyUSD", 6, 5),
            Panel("Cost per successful outcome",
                  f"USD spent per business outcome reported with {names.LABEL_SUCCESS}=true: what success costs.",
                  [(f"sum(increase({c}[$__range])) / "
                    f"sum(increase({OUTCOMES}{A(eq(SUCCESS, 'true'))}[$__range]))", "USD/outcome")],
                  "stat", "currencyUSD", 6, 5),
            Panel("Spend rate (USD/hour)", "Total spend rate.",
                  [(f"sum({rate(c)}) * 3600", "USD/hour")], unit="currencyUSD"),
            Panel("Spend by model", "USD/hour per provider and requested model.",
                  [(f"sum by ({PROVIDER}, {MODEL}) ({rate(c)}) * 3600", f"{{{{{PROVIDER}}}}}/{{{{{MODEL}}}}}")],
                  unit="currencyUSD"),
            Panel("Spend by provider", "USD/hour per provider.",
                  [(f"sum by ({PROVIDER}) ({rate(c)}) * 3600", f"{{{{{PROVIDER}}}}}")], unit="currencyUSD"),
            Panel("Spend by feature", "USD/hour per feature (llmmeter.attributes(feature=...)).",
                  [(f"sum by ({_attr('feature')}) ({rate(c)}) * 3600", f"{{{{{_attr('feature')}}}}}")],
                  unit="currencyUSD"),
            Panel("Spend by tenant", "USD/hour per tenant.",
                  [(f"sum by ({_attr('tenant')}) ({rate(c)}) * 3600", f"{{{{{_attr('tenant')}}}}}")],
                  unit="currencyUSD"),
            Panel("Top 10 users (selected range)", "The ten users who cost most in the time range.",
                  [(f"topk(10, sum by ({USER}) (increase({COST}{F(HAS_USER)}[$__range])))",
                    f"{{{{{USER}}}}}")], "bargauge", "currencyUSD",
                  options={"orientation": "horizontal", "displayMode": "gradient",
                           "reduceOptions": {"calcs": ["lastNotNull"], "values": True}}),
            Panel("Unpriced calls", "Calls to models with no known price: their cost is missing from every figure "
                  "above. Add the model to the price table.",
                  [(f"sum by ({PROVIDER}, {MODEL}) (increase({REQUESTS}{F(eq(PRICED, 'false'))}[$__range]))",
                    f"{{{{{PROVIDER}}}}}/{{{{{MODEL}}}}}")], "table", "short", 24, 6),
            *cache_economics_panels(),
        ],
    )


def cache_economics_panels() -> list[Panel]:
    """Cost dashboard: what prompt caching saved (reads against the uncached input rate) and what it cost
    (writes above that rate), per feature and model; the LLMCacheWritesNotPaying alert watches the same."""
    feature = _attr("feature")
    saved, premium = CACHE_SAVED + F(), CACHE_PREMIUM + F()
    by = f"{feature}, {MODEL}"
    legend = f"{{{{{feature}}}}} {{{{{MODEL}}}}}"
    return [
        Panel("Net cache savings (selected range)", "USD prompt-cache reads saved minus what cache writes cost "
              "above the uncached input rate. Negative: caching costs more than it saves.",
              [(f"(sum(increase({saved}[$__range])) or vector(0)) - (sum(increase({premium}[$__range])) or vector(0))",
                "net")], "stat", "currencyUSD", 6, 5, thresholds=[(None, "red"), (0, "green")]),
        Panel("Cache savings and write premium by feature", "USD/hour saved by cache reads and paid for cache "
              "writes above the uncached input rate, per feature.",
              [(f"sum by ({feature}) ({rate(saved)}) * 3600", f"saved {{{{{feature}}}}}"),
               (f"sum by ({feature}) ({rate(premium)}) * 3600", f"write premium {{{{{feature}}}}}")],
              unit="currencyUSD", width=18, height=5),
        Panel("Cache economics by feature and model (selected range)", "USD saved by cache reads and USD paid for "
              "cache writes above the uncached input rate, per feature and model.",
              [(f"sum by ({by}) (increase({saved}[$__range]))", f"saved {legend}"),
               (f"sum by ({by}) (increase({premium}[$__range]))", f"write premium {legend}")],
              "table", "currencyUSD", 24, 6),
    ]


def estimate_error_panels() -> list[Panel]:
    """Tokens dashboard: how far the pre-call input estimate (hard $-budgets' bound) was from the provider's
    count, per provider and model. The histogram has no attribution labels: filtered by service/provider/model."""
    sel = ESTIMATE_ERROR + "_bucket" + _filter(["service", "provider", "model"])
    return [
        Panel("Pre-call input estimate / provider count (p50 / p95)", "Input tokens estimated before a call was "
              "sent, divided by the provider's count: 1 is exact, above 1 the estimate was high (a safe bound).",
              [(f"histogram_quantile({q}, sum by (le, {PROVIDER}, {MODEL}) ({rate(sel)}))",
                f"p{int(q * 100)} {{{{{PROVIDER}}}}}/{{{{{MODEL}}}}}") for q in (0.5, 0.95)],
              unit="short", width=24),
    ]


def app_cache_panels() -> list[Panel]:
    """Tokens dashboard: the app's own caches (llmmeter.record_cache), hit rate per cache. The counter has no
    provider/model/attribution labels: filtered by service only."""
    lookups = M(names.METRIC_APP_CACHE_LOOKUPS) + _filter(["service"])
    hits = M(names.METRIC_APP_CACHE_LOOKUPS) + _filter(["service"], eq(L(names.LABEL_APP_CACHE_RESULT), "hit"))
    cache = L(names.LABEL_APP_CACHE)
    return [
        Panel("App cache hit rate", "Share of the app's own cache lookups (llmmeter.record_cache) answered by the "
              "cache instead of a model call, per cache; LLMAppCacheHitRateDrop watches it against its own day.",
              [(f"(sum by ({cache}) ({rate(hits)}) or sum by ({cache}) ({rate(lookups)}) * 0) / "
                f"sum by ({cache}) ({rate(lookups)})", f"{{{{{cache}}}}}")],
              unit="percentunit", width=16),
        Panel("App cache lookups (selected range)", "Lookups per cache and result.",
              [(f"sum by ({cache}, {L(names.LABEL_APP_CACHE_RESULT)}) (increase({lookups}[$__range]))",
                f"{{{{{cache}}}}} {{{{{L(names.LABEL_APP_CACHE_RESULT)}}}}}")], "table", "short", 8),
    ]


def tokens_dashboard() -> dict[str, Any]:
    t = TOKENS

    def tok(kind: str) -> str:
        return t + F(eq(TOKEN_TYPE, kind))

    return dashboard(
        "llmmeter-tokens",
        "Tokens and efficiency",
        "Token volumes, prompt-cache efficiency, verbosity and estimation share (llmmeter).",
        [
            Panel("Tokens by type", "Tokens/second by llmmeter token type (input includes cache reads/writes; "
                  "reasoning is part of output).",
                  [(f"sum by ({TOKEN_TYPE}) ({rate(t + F())})", f"{{{{{TOKEN_TYPE}}}}}")], width=24),
            Panel("Cache hit ratio", "Share of input tokens read from the provider's prompt cache (cache_read / "
                  "input). A drop usually means a prompt prefix changed.",
                  [(f"(sum({rate(tok('cache_read'))}) or vector(0)) / sum({rate(tok(names.TOKEN_TYPE_INPUT))})",
                    "cache hit")],
                  unit="percentunit", width=8),
            Panel("Output / input ratio", "Output tokens per input token: a rise means more verbose answers.",
                  [(f"sum({rate(tok(names.TOKEN_TYPE_OUTPUT))}) / sum({rate(tok(names.TOKEN_TYPE_INPUT))})",
                    "output/input")], width=8),
            Panel("Share of requests with estimated tokens", "Requests whose token counts were estimated with "
                  "tiktoken (e.g. streams without usage).",
                  [(f"(sum({rate(REQUESTS + F(eq(ESTIMATED, 'true')))}) or vector(0)) / sum({rate(REQUESTS + F())})",
                    "estimated")], unit="percentunit", width=8),
            Panel("Tokens per request (p50 / p95)", "From the semconv gen_ai.client.token.usage histogram, as "
                  "llmmeter recorded it (one record per call, whichever instrumentors also record it).",
                  [(f"histogram_quantile({q}, sum by (le, {SC_TOKEN_TYPE}) "
                    f"({rate(TOKEN_USAGE + '_bucket' + F(OURS))}))", f"p{int(q * 100)} {{{{{SC_TOKEN_TYPE}}}}}")
                   for q in (0.5, 0.95)]),
            Panel("Call duration (p95)", "From the semconv gen_ai.client.operation.duration histogram, as llmmeter "
                  "recorded it (one record per call).",
                  [(f"histogram_quantile(0.95, sum by (le, {MODEL}) ({rate(DURATION + '_bucket' + F(OURS))}))",
                    f"{{{{{MODEL}}}}}")], unit="s"),
            Panel("Prompt footprint, week over week", "Input tokens/second now and at the same time last week.",
                  [(f"sum({rate(tok(names.TOKEN_TYPE_INPUT), '1h')})", "this week"),
                   (f"sum({rate(tok(names.TOKEN_TYPE_INPUT), '1h', '1w')})", "last week")]),
            Panel("Prompt footprint change vs last week", "Relative change of the input-token rate vs one week "
                  "earlier.",
                  [(f"sum({rate(tok(names.TOKEN_TYPE_INPUT), '1h')}) / "
                    f"sum({rate(tok(names.TOKEN_TYPE_INPUT), '1h', '1w')}) - 1", "change")],
                  "stat", "percentunit"),
            Panel("Tokens by model", "Input+output tokens/second per model.",
                  [(f"sum by ({MODEL}) ({rate(t + F(IN_OR_OUT))})", f"{{{{{MODEL}}}}}")],
                  width=24),
            *estimate_error_panels(),
            *app_cache_panels(),
        ],
    )


# --- agent frameworks: runs by framework and agent (llmmeter.frameworks) ---------------------------------
FRAMEWORK = L(names.AGENT_FRAMEWORK)


def framework_panels() -> list[Panel]:
    """Runs, cost and guard outcomes by framework and agent (empty framework: ``llmmeter.agent`` in app code)."""
    by = f"{FRAMEWORK}, {AGENT}"
    legend = f"{{{{{FRAMEWORK}}}}} / {{{{{AGENT}}}}}"
    not_ok = A(f'{STATUS}!="ok"')
    return [
        Panel("Runs by framework and agent", "Finished runs per hour, by framework (openai-agents, langgraph, "
              "pydantic-ai, crewai; empty: llmmeter.agent in the app) and agent name.",
              [(f"sum by ({by}) ({rate(AGENT_RUNS + A())}) * 3600", legend)]),
        Panel("Run cost by framework and agent", "Mean USD per run, by framework and agent.",
              [(f"sum by ({by}) ({rate(RUN_COST + '_sum' + A())}) / "
                f"sum by ({by}) ({rate(RUN_COST + '_count' + A())})", legend)], unit="currencyUSD"),
        Panel("Blocked and failed runs by framework", "Runs in the time range that a guard stopped (blocked) or "
              "that ended with an error, by framework and agent.",
              [(f"sum by ({by}, {STATUS}) (increase({AGENT_RUNS}{not_ok}[$__range]))",
                f"{legend} {{{{{STATUS}}}}}")], "table", width=24),
    ]


def agents_dashboard() -> dict[str, Any]:
    return dashboard(
        "llmmeter-agents",
        "Agents and budgets",
        "Agent runs (cost and LLM calls per run), loop guards and budgets (llmmeter).",
        [
            Panel("Agent runs per hour", "Finished agent runs (invoke_agent spans) per hour, by agent.",
                  [(f"sum by ({AGENT}) ({rate(AGENT_RUNS + A())}) * 3600", f"{{{{{AGENT}}}}}")]),
            Panel("Mean cost per run", "USD per agent run.",
                  [(f"sum by ({AGENT}) ({rate(RUN_COST + '_sum' + A())}) / "
                    f"sum by ({AGENT}) ({rate(RUN_COST + '_count' + A())})", f"{{{{{AGENT}}}}}")],
                  unit="currencyUSD"),
            Panel("Cost per run (p50 / p95)", "Distribution of USD per run.",
                  [(f"histogram_quantile({q}, sum by (le) ({rate(RUN_COST + '_bucket' + A())}))",
                    f"p{int(q * 100)}") for q in (0.5, 0.95)], unit="currencyUSD"),
            Panel("LLM calls per run (p50 / p95)", "How many LLM calls a run makes; a long tail hints at loops.",
                  [(f"histogram_quantile({q}, sum by (le) ({rate(RUN_CALLS + '_bucket' + A())}))",
                    f"p{int(q * 100)}") for q in (0.5, 0.95)]),
            Panel("Loop-guard trips", "Runs stopped by a loop guard in the time range, by guard.",
                  [(f"sum by ({GUARD}) (increase({TRIPS}{A()}[$__range]))", f"{{{{{GUARD}}}}}")], "bargauge",
                  options={"orientation": "horizontal", "reduceOptions": {"calcs": ["lastNotNull"], "values": True}}),
            Panel("Budget spend", "Fraction of each budget's limit spent in its window (1 = spent).",
                  [(f"max by ({BUDGET}) ({SPEND}{A()})", f"{{{{{BUDGET}}}}}")], "gauge", "percentunit",
                  options={"reduceOptions": {"calcs": ["lastNotNull"], "values": False}},
                  thresholds=[(None, "green"), (0.8, "orange"), (1, "red")]),
            Panel("Budget threshold crossings", "Times a budget crossed a threshold in the time range.",
                  [(f"sum by ({BUDGET}, {THRESHOLD}) (increase({CROSSINGS}{A()}[$__range]))",
                    f"{{{{{BUDGET}}}}} {{{{{THRESHOLD}}}}}")], "table"),
            Panel("Calls blocked by budgets", "Calls a budget guard stopped before they were sent.",
                  [(f"sum by ({BUDGET}) (increase({BLOCKED}{A()}[$__range]))", f"{{{{{BUDGET}}}}}")], "table"),
            *framework_panels(),
        ],
    )


DASHBOARDS = {
    "llmmeter-cost.json": cost_dashboard,
    "llmmeter-tokens.json": tokens_dashboard,
    "llmmeter-agents.json": agents_dashboard,
}


def render() -> dict[str, str]:
    """File name -> JSON text of every dashboard (deterministic)."""
    return {name: json.dumps(build(), indent=2, sort_keys=False) + "\n" for name, build in DASHBOARDS.items()}


def main() -> int:
    for file_name, text in render().items():
        (HERE / file_name).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
