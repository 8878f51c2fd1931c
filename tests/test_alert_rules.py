"""The alert rules are generated from llmmeter.names, are valid, and every rule is unit-tested with
``promtool test rules`` (collector/rules/tests/*.yaml) on the real promtool."""

from __future__ import annotations

import importlib.util
import pathlib
import shutil
import subprocess
import sys
from types import ModuleType

import pytest
import yaml
from promtools import RULE_TESTS_DIR, RULES_FILE, require_binary

BUILD = RULES_FILE.parent / "build_rules.py"
EXPECTED_ALERTS = {
    "LLMSpendDailyBudget80", "LLMSpendDailyBudget100", "LLMSpendMonthlyBudget80", "LLMSpendMonthlyBudget100",
    "LLMSpendBurnRateHigh", "LLMBudgetNearlySpent", "LLMBudgetSpent", "LLMUserTokenRateHigh",
    "LLMSpendSpikeVsLastWeek", "LLMCacheHitRatioDrop", "LLMOutputVerbositySpike", "LLMUnpricedModelSeen",
    "LLMEstimatedTokenShareHigh", "LLMLoopGuardTripped", "LLMErrorRatioHigh",
    "LLMCostDriftFromInvoice",  # llmmeter reconcile
}
EXPECTED_ALERTS |= {"LLMPriceTableStale", "LLMCacheWritesNotPaying"}  # issue 12: prices
EXPECTED_ALERTS |= {"LLMAppCacheHitRateDrop"}  # the app's own caches (llmmeter.record_cache)


def load_build() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_rules", BUILD)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


def alerts(path: pathlib.Path = RULES_FILE) -> dict[str, dict]:
    doc = yaml.safe_load(path.read_text())
    return {rule["alert"]: rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule}


def test_committed_rules_are_what_the_generator_writes() -> None:
    assert RULES_FILE.read_text() == load_build().render(), "run `python collector/rules/build_rules.py`"


def test_every_promised_alert_exists_with_a_severity() -> None:
    rules = alerts()
    assert set(rules) == EXPECTED_ALERTS
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name


def test_thresholds_are_parameters(tmp_path: pathlib.Path) -> None:
    build = load_build()
    out = tmp_path / "rules.yaml"
    build.main(["--set", "daily_budget_usd=250", "--set", "user_tokens_per_hour=1000", "--out", str(out)])
    rules = alerts(out)
    assert rules["LLMSpendDailyBudget80"]["expr"].endswith(">= 0.8 * 250")
    assert rules["LLMUserTokenRateHigh"]["expr"].endswith("> 1000")
    with pytest.raises(SystemExit):
        build.parse_overrides(["daily_budget=5"])


def test_every_alert_has_a_promtool_unit_test() -> None:
    tested = set()
    for path in RULE_TESTS_DIR.glob("*.yaml"):
        doc = yaml.safe_load(path.read_text())
        for group in doc["tests"]:
            for case in group.get("alert_rule_test", []):
                if case.get("exp_alerts"):
                    tested.add(case["alertname"])
    assert tested == EXPECTED_ALERTS, f"alerts never shown firing in a unit test: {EXPECTED_ALERTS - tested}"


def test_promtool_checks_the_rules() -> None:
    promtool = require_binary("promtool")
    result = subprocess.run([promtool, "check", "rules", str(RULES_FILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(EXPECTED_ALERTS)} rules found" in result.stdout + result.stderr


def test_promtool_unit_tests_pass() -> None:
    promtool = require_binary("promtool")
    files = sorted(str(p) for p in RULE_TESTS_DIR.glob("*.yaml"))
    result = subprocess.run([promtool, "test", "rules", *files], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (result.stdout + result.stderr).count("SUCCESS") == len(files)


def test_promtool_unit_tests_catch_a_wrong_threshold(tmp_path: pathlib.Path) -> None:
    """The unit tests are sensitive: rules built with another daily budget must fail them."""
    promtool = require_binary("promtool")
    rules_dir = tmp_path / "rules"
    shutil.copytree(RULES_FILE.parent / "tests", rules_dir / "tests")
    load_build().main(["--set", "daily_budget_usd=1000", "--out", str(rules_dir / RULES_FILE.name)])
    result = subprocess.run([promtool, "test", "rules", str(rules_dir / "tests" / "budget.yaml")],
                            capture_output=True, text=True)
    assert result.returncode != 0
    assert "LLMSpendDailyBudget80" in result.stdout + result.stderr
