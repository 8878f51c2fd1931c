"""The committed dashboards are exactly what dashboards/build.py generates from llmmeter.names, and are
valid Grafana import documents with the template variables the product promises."""

from __future__ import annotations

import importlib.util
import json
import pathlib
import sys
from types import ModuleType
from typing import Any

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DASHBOARDS = ROOT / "dashboards"
EXPECTED_VARIABLES = {"datasource", "service", "environment", "provider", "model", "tenant", "feature", "team",
                      "route", "user"}


def load_build() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dashboards_build", DASHBOARDS / "build.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


def committed() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


def test_committed_json_is_what_the_generator_writes() -> None:
    generated = load_build().render()
    on_disk = {p.name: p.read_text() for p in DASHBOARDS.glob("*.json")}
    assert sorted(on_disk) == sorted(generated), "dashboards/*.json and dashboards/build.py disagree on files"
    for name, text in generated.items():
        assert on_disk[name] == text, f"{name} is stale: run `python dashboards/build.py`"


def test_a_metric_rename_reaches_the_dashboards(monkeypatch: pytest.MonkeyPatch) -> None:
    """The generator reads names at build time, so renaming a metric in llmmeter.names changes the queries."""
    from llmmeter import names

    specs = dict(names.METRIC_SPECS)
    specs["llmmeter.spend"] = specs.pop(names.METRIC_COST)
    monkeypatch.setattr(names, "METRIC_SPECS", specs)
    monkeypatch.setattr(names, "METRIC_COST", "llmmeter.spend")
    text = "".join(load_build().render().values())
    assert "llmmeter_spend_USD_total" in text and "llmmeter_cost_USD_total" not in text


@pytest.mark.parametrize("file_name", ["llmmeter-cost.json", "llmmeter-tokens.json", "llmmeter-agents.json"])
def test_dashboard_is_an_importable_grafana_document(file_name: str) -> None:
    board = committed()[file_name]
    assert board["schemaVersion"] >= 39
    assert [i["name"] for i in board["__inputs"]] == ["DS_PROMETHEUS"]
    assert board["__inputs"][0]["pluginId"] == "prometheus"
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert set(variables) == EXPECTED_VARIABLES
    assert variables["datasource"]["current"]["value"] == "${DS_PROMETHEUS}"
    for name in EXPECTED_VARIABLES - {"datasource"}:
        assert variables[name]["includeAll"] and variables[name]["allValue"] == ".*"
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        assert 0 <= panel["gridPos"]["x"] and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        for target in panel["targets"]:
            assert target["expr"].count("(") == target["expr"].count(")"), target["expr"]


def test_dashboards_cover_the_promised_panels() -> None:
    titles = {name: {p["title"] for p in board["panels"]} for name, board in committed().items()}
    exprs = {name: " ".join(t["expr"] for p in board["panels"] for t in p["targets"])
             for name, board in committed().items()}
    assert {"Spend (selected range)", "Burn rate (USD/day)", "Spend by model", "Spend by provider",
            "Spend by feature", "Spend by tenant", "Top 10 users (selected range)", "Cost per request",
            "Cost per successful outcome", "Unpriced calls"} <= titles["llmmeter-cost.json"]
    assert 'llmmeter_success="true"' in exprs["llmmeter-cost.json"]
    assert 'llmmeter_priced="false"' in exprs["llmmeter-cost.json"]
    assert "offset 1w" in exprs["llmmeter-tokens.json"]
    assert "gen_ai_client_token_usage_bucket" in exprs["llmmeter-tokens.json"]
    assert 'llmmeter_estimated="true"' in exprs["llmmeter-tokens.json"]
    for metric in ("llmmeter_agent_runs_total", "llmmeter_agent_run_cost_USD_bucket",
                   "llmmeter_agent_run_llm_calls_bucket", "llmmeter_loop_guard_trips_total",
                   "llmmeter_budget_spend_ratio", "llmmeter_budget_crossings_total"):
        assert metric in exprs["llmmeter-agents.json"], metric
