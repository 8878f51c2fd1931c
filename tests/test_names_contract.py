"""Every metric and label name used by the dashboards, alert rules (and their unit tests) and collector
configs is one that ``llmmeter.names`` produces. A metric renamed in names.py but not everywhere else
fails here instead of leaving a dashboard silently empty (the LiteLLM lesson in the field notes)."""

from __future__ import annotations

import json
import pathlib
import re

import pytest
import yaml
from llmmeter import names
from opentelemetry.semconv.attributes.service_attributes import SERVICE_NAME

ROOT = pathlib.Path(__file__).resolve().parents[1]
PROMQL_WORDS = {
    # aggregations, functions and keywords that can appear as bare identifiers
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile", "count_values",
    "group", "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
    "offset", "rate", "irate", "increase", "delta", "idelta", "histogram_quantile", "label_values", "vector",
    "scalar", "abs", "clamp_min", "clamp_max", "max_over_time", "min_over_time", "avg_over_time", "time",
    "absent", "inf", "nan",
}
# Labels Prometheus or the scrape add, not llmmeter.
INFRA_LABELS = {"le", "job", "instance", "__name__"}
STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
MATCHERS = re.compile(r"\{([^{}]*)\}")
MATCHER = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
IDENT = re.compile(r"(?<![\w.$])([A-Za-z_:][A-Za-z0-9_:]*)")
TEMPLATE_LABEL = re.compile(r"\$labels\.([A-Za-z_][A-Za-z0-9_]*)|\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def allowed_metrics() -> set[str]:
    out = set()
    for metric, (kind, _unit) in names.METRIC_SPECS.items():
        base = names.metric_prometheus_name(metric)
        out.add(base)
        if kind == names.KIND_HISTOGRAM:
            out |= {base + "_bucket", base + "_sum", base + "_count"}
    return out


def allowed_labels() -> set[str]:
    keys = {v for k, v in vars(names).items() if k.isupper() and isinstance(v, str) and "." in v}
    labels = {names.prometheus_label(k) for k in keys}
    labels |= {names.ATTRIBUTION_LABEL_PREFIX + k for k in names.KNOWN_ATTRIBUTION_KEYS}
    labels.add(names.prometheus_label(SERVICE_NAME))
    return labels | INFRA_LABELS


ALLOWED_VALUES = {
    names.prometheus_label(names.LABEL_TOKEN_TYPE): set(names.TOKEN_TYPES),
    names.prometheus_label(names.TOKEN_TYPE): {names.TOKEN_TYPE_INPUT, names.TOKEN_TYPE_OUTPUT},
    names.prometheus_label(names.LABEL_STATUS): {"ok", "error", "blocked"},
    names.prometheus_label(names.LABEL_PRICED): {"true", "false"},
    names.prometheus_label(names.LABEL_ESTIMATED): {"true", "false"},
    names.prometheus_label(names.LABEL_SUCCESS): {"true", "false"},
}


def parse(expr: str) -> tuple[set[str], set[str], list[tuple[str, str, str]]]:
    """(metric names, label names, (label, op, value) matchers) referenced by a PromQL expression."""
    labels: set[str] = set()
    matchers: list[tuple[str, str, str]] = []
    for body in MATCHERS.findall(expr):
        for label, op, value in MATCHER.findall(body):
            labels.add(label)
            matchers.append((label, op, value))
    rest = MATCHERS.sub(" ", expr)
    for body in GROUPING.findall(rest):
        labels |= {label.strip() for label in body.split(",") if label.strip()}
    rest = STRING.sub(" ", GROUPING.sub(" ", rest))
    rest = re.sub(r"\[[^\]]*\]", " ", rest)  # range durations
    rest = re.sub(r"\boffset\s+\w+", " ", rest)
    rest = re.sub(r"\b\d+(\.\d+)?([eE][+-]?\d+)?\b", " ", rest)
    metrics = {m for m in IDENT.findall(rest) if m not in PROMQL_WORDS}
    # Grafana's label_values(metric, label): the second argument is a label, not a metric.
    for _metric, label in re.findall(r"label_values\(\s*(\w+)\s*,\s*(\w+)\s*\)", expr):
        metrics.discard(label)
        labels.add(label)
    return metrics, labels, matchers


def dashboard_references() -> list[tuple[str, str, set[str]]]:
    """(where, PromQL, labels used in legends) for every dashboard query and variable."""
    out = []
    for path in sorted((ROOT / "dashboards").glob("*.json")):
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel["targets"]:
                legend = {a or b for a, b in TEMPLATE_LABEL.findall(target.get("legendFormat", ""))}
                out.append((f"{path.name}: {panel['title']}", target["expr"], legend))
        for var in board["templating"]["list"]:
            if var["type"] == "query":
                out.append((f"{path.name}: variable {var['name']}", var["definition"], set()))
    return out


def rule_references() -> list[tuple[str, str, set[str]]]:
    doc = yaml.safe_load((ROOT / "collector" / "rules" / "llmmeter-alerts.yaml").read_text())
    out = []
    for group in doc["groups"]:
        for rule in group["rules"]:
            text = " ".join(rule.get("annotations", {}).values())
            used = {a or b for a, b in TEMPLATE_LABEL.findall(text)} | set(rule.get("labels", {})) - {
                "severity", "budget_window"}  # alert-routing labels the rules define themselves
            out.append((f"rule {rule.get('alert') or rule.get('record')}", rule["expr"], used))
    return out


def rule_test_references() -> list[tuple[str, str, set[str]]]:
    out = []
    for path in sorted((ROOT / "collector" / "rules" / "tests").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        for group in doc["tests"]:
            for series in group.get("input_series", []):
                out.append((f"{path.name}: input series", series["series"], set()))
    return out


ALL_REFERENCES = dashboard_references() + rule_references() + rule_test_references()


def check(where: str, expr: str, extra_labels: set[str]) -> list[str]:
    metrics, labels, matchers = parse(expr)
    problems = [f"{where}: unknown metric {m!r}" for m in sorted(metrics - allowed_metrics())]
    problems += [f"{where}: unknown label {label!r}" for label in sorted((labels | extra_labels) - allowed_labels())]
    for label, op, value in matchers:
        if label in ALLOWED_VALUES and op == "=" and value not in ALLOWED_VALUES[label]:
            problems.append(f"{where}: {label}={value!r} is not a value llmmeter emits")
        if label in ALLOWED_VALUES and op == "=~":
            for part in value.split("|"):
                if part not in ALLOWED_VALUES[label]:
                    problems.append(f"{where}: {label}=~{value!r} has {part!r}, not a value llmmeter emits")
    return problems


def test_references_were_found() -> None:
    assert len(dashboard_references()) > 30 and len(rule_references()) == 19 and rule_test_references()
    used = set().union(*(parse(expr)[0] for _, expr, _ in ALL_REFERENCES))
    # Every llmmeter metric is shown or alerted on somewhere, except the overflow and normalized-value counters
    # (ops signals), time-to-first-chunk (documented, not yet charted), the ledger's dropped-records counter (an
    # ops signal), and the config-error counter (a disabled setting is also logged and printed in the exit summary).
    shown = {m for m in names.METRIC_SPECS if any(u.startswith(names.metric_prometheus_name(m)) for u in used)}
    assert set(names.METRIC_SPECS) - shown == {
        names.METRIC_ATTRIBUTION_OVERFLOW, names.METRIC_TIME_TO_FIRST_CHUNK, names.METRIC_ATTRIBUTION_NORMALIZED,
        names.METRIC_LEDGER_DROPPED, names.METRIC_CONFIG_ERRORS,
    }


@pytest.mark.parametrize(("where", "expr", "extra"), ALL_REFERENCES, ids=[r[0] for r in ALL_REFERENCES])
def test_reference_uses_names_llmmeter_produces(where: str, expr: str, extra: set[str]) -> None:
    assert check(where, expr, extra) == []


def test_the_checker_catches_divergence() -> None:
    """Names that drifted from names.py (old unit-less cost, a dotted label, a wrong token type) are caught."""
    problems = check("probe", 'sum by (tenant, llmmeter_tokentype) (rate(llmmeter_cost_total{'
                              'llmmeter_token_type="cached"}[5m]))', set())
    assert any("'llmmeter_cost_total'" in p for p in problems)
    assert any("'llmmeter_tokentype'" in p for p in problems)
    assert any("'cached'" in p for p in problems)


def test_unit_one_metrics_are_gauges_already_named_ratio() -> None:
    """The collector's prometheus exporter appends ``_ratio`` to gauges with unit ``1``, while
    opentelemetry-exporter-prometheus appends nothing for ``1``. Only a gauge whose OTLP name already ends in
    ``_ratio`` gets the same Prometheus name from both (llmmeter_budget_spend_ratio once diverged)."""
    unit_one = {metric: kind for metric, (kind, unit) in names.METRIC_SPECS.items() if unit == "1"}
    assert names.METRIC_BUDGET_SPEND in unit_one
    for metric, kind in unit_one.items():
        assert kind == names.KIND_GAUGE, f"{metric}: unit 1 on a {kind} is named differently by the two exporters"
        assert metric.endswith("_ratio"), f"{metric}: name it ...{metric.rsplit('.', 1)[-1]}_ratio"
        assert names.metric_prometheus_name(metric) == names.prometheus_label(metric)


def test_collector_configs_name_only_llmmeter_attributes() -> None:
    known = {v for k, v in vars(names).items() if k.isupper() and isinstance(v, str)}
    for path in [ROOT / "otel-collector.yaml", ROOT / "collector" / "agent.yaml", ROOT / "collector" / "gateway.yaml"]:
        config = yaml.safe_load(path.read_text())
        for processor in (config.get("processors") or {}).values():
            for action in (processor or {}).get("actions", []):
                assert action["key"] in known, f"{path.name}: attribute {action['key']!r} is not in llmmeter.names"
