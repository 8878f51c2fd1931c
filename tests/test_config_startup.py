"""Start-up configuration: typos are named, check-config agrees with start-up, and the warn switch.

Start-up and ``llmmeter check-config`` run as real subprocesses (``opentelemetry-instrument`` and the
``llmmeter`` script of this venv); the in-process tests reset every piece of global state they touch.
"""

from __future__ import annotations

import io
import json
import logging
import re
import subprocess
import tokenize
from collections.abc import Iterator
from pathlib import Path

import pytest
from llmmeter import _providers, budgets, config, names, pricing, startup, summary
from llmmeter.budgets.model import load_file, parse_env_list
from llmmeter.config import ConfigError
from llmmeter.usage import Usage
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from startup_runs import instrumented_run, llmmeter_cli

PACKAGE = Path(__file__).resolve().parents[1] / "instrumentation" / "llmmeter"


# --- 10: typos are named ---------------------------------------------------------------------------------


def test_budget_key_typo_in_the_variable_names_key_source_and_closest_name() -> None:
    with pytest.raises(ConfigError) as raised:
        parse_env_list("tennant=acme: $5/day hard", "LLMMETER_BUDGETS")
    message = str(raised.value)
    assert "environment variable LLMMETER_BUDGETS: item 0" in message
    assert "unknown key 'tennant'" in message and "did you mean 'tenant'?" in message


def test_budget_key_typo_in_a_file_names_file_and_entry(tmp_path: Path) -> None:
    path = tmp_path / "budgets.yaml"
    path.write_text("budgets:\n  - spec: 'user=*: 100 calls/day'\n  - match: featur=search\n"
                    "    limit: $5\n    window: day\n", encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        load_file(path)
    message = str(raised.value)
    assert f"budget file {path}" in message and "budgets[1].match" in message
    assert "'featur'" in message and "did you mean 'feature'?" in message


def test_configured_label_keys_and_model_are_budget_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config, "_settings", config.Settings(label_keys=("tenant", "region")))
    (region, model) = parse_env_list("region=eu: 10 calls/day; model=gpt-4o: $1/day", "LLMMETER_BUDGETS")
    assert (region.key, region.value, model.key) == ("region", "eu", "model")
    with pytest.raises(ConfigError, match="did you mean 'region'"):
        parse_env_list("regoin=eu: 10 calls/day", "LLMMETER_BUDGETS")


def test_misspelled_variable_gets_a_warning_with_the_closest_name() -> None:
    found = config.unknown_variables({"LLMMETER_SUMARY": "always", "LLMMETER_SUMMARY": "off", "PATH": "/bin",
                                      "LLMMETER_ZZZ": "1"})
    assert found == [("LLMMETER_SUMARY", "LLMMETER_SUMMARY"), ("LLMMETER_ZZZ", None)]
    assert "did you mean LLMMETER_SUMMARY?" in config.unknown_variable_message(*found[0])


def _variables_spelled_in(path: Path) -> set[str]:
    """Every ``LLMMETER_X`` inside a string literal (what ``os.environ`` could be asked for) of one module."""
    found: set[str] = set()
    with open(path, "rb") as handle:
        for token in tokenize.tokenize(handle.readline):
            if token.type == tokenize.STRING:
                # Not names.LLMMETER_X inside an f-string: an attribute-name constant, not a variable.
                found.update(re.findall(r"(?<![\w.])LLMMETER_[A-Z][A-Z0-9_]*[A-Z0-9]", token.string))
    return found


def test_every_llmmeter_variable_used_in_the_package_is_registered() -> None:
    used: dict[str, list[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        for name in _variables_spelled_in(path):
            used.setdefault(name, []).append(str(path.relative_to(PACKAGE)))
    # The scan sees the variables read through constants too (their values are string literals).
    assert {"LLMMETER_SUMMARY", "LLMMETER_BUDGET_STORE", "LLMMETER_ON_CONFIG_ERROR"} <= set(used)
    unregistered = {name: files for name, files in used.items() if name not in config.KNOWN_VARIABLES}
    assert unregistered == {}, "add these to config.KNOWN_VARIABLES"


def test_unknown_variable_is_warned_about_at_start_up() -> None:
    result = _instrumented_run({"LLMMETER_SUMARY": "always", "LLMMETER_SUMMARY": "off"})
    assert result.returncode == 0, result.stderr
    assert "LLMMETER_SUMARY is not an llmmeter setting" in result.stderr
    assert "did you mean LLMMETER_SUMMARY?" in result.stderr


# --- 11: check-config agrees with start-up -------------------------------------------------------------------


def _instrumented_run(extra: dict[str, str], code: str = "print('app ran')") -> subprocess.CompletedProcess[str]:
    return instrumented_run(extra, code)


def _check_config(extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return llmmeter_cli("check-config", extra=extra)


@pytest.fixture
def without_redis(tmp_path: Path) -> dict[str, str]:
    """An environment in which ``import redis`` fails, as in an install without the ``redis`` extra."""
    shadow = tmp_path / "shadow" / "redis"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError(\"No module named 'redis'\")\n", encoding="utf-8")
    return {"PYTHONPATH": str(shadow.parent)}


def test_redis_store_without_the_redis_package_fails_in_both_and_names_the_extra(
    without_redis: dict[str, str],
) -> None:
    env = {**without_redis, "LLMMETER_BUDGET_STORE": "redis://:s3cret@127.0.0.1:1/0"}
    checked, started = _check_config(env), _instrumented_run(env)
    assert (checked.returncode, started.returncode) == (2, 2)
    assert "app ran" not in started.stdout
    for output in (checked.stderr, started.stderr):
        assert "pip install 'llmmeter[redis]'" in output and "LLMMETER_BUDGET_STORE" in output
        assert "s3cret" not in output  # the URL may hold a password


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"LLMMETER_BUDGETS": "tennant=acme: $5/day hard"},
        {"LLMMETER_SUMMARY": "sometimes"},
        {"LLMMETER_BUDGET_STORE": "memcached://x"},
        {"LLMMETER_ON_CONFIG_ERROR": "warn", "LLMMETER_BUDGETS": "tennant=acme: $5/day hard"},
    ],
    ids=["good", "budget-key-typo", "bad-summary", "bad-store", "warn"],
)
def test_check_config_and_start_up_agree(extra: dict[str, str]) -> None:
    checked, started = _check_config(extra), _instrumented_run(extra)
    starts = started.returncode == 0 and "app ran" in started.stdout
    assert checked.returncode in (0, 1, 2)
    assert starts == (checked.returncode != 2), (checked.stderr, started.stderr)


def test_redis_extra_is_declared() -> None:
    import tomllib

    with open(PACKAGE.parents[1] / "pyproject.toml", "rb") as handle:
        extras = tomllib.load(handle)["project"]["optional-dependencies"]
    assert any(req.startswith("redis") for req in extras["redis"])


# --- 12: LLMMETER_ON_CONFIG_ERROR=warn -------------------------------------------------------------------------

def test_default_stops_on_a_bad_budget_and_warn_keeps_the_app_up_saying_so() -> None:
    bad = {"LLMMETER_BUDGETS": "tennant=acme: $5/day hard", "LLMMETER_SUMMARY": "always"}
    stopped = _instrumented_run(bad)
    assert stopped.returncode == 2 and "app ran" not in stopped.stdout
    assert "tennant" in stopped.stderr

    kept = _instrumented_run({**bad, "LLMMETER_ON_CONFIG_ERROR": "warn"})
    assert kept.returncode == 0, kept.stderr
    assert kept.stdout.strip() == "app ran"
    # The log line (at start-up) and the exit summary's line (at exit) both name the disabled part.
    log_line = "configuration error, kept running with LLMMETER_BUDGETS disabled"
    assert log_line in kept.stderr and "did you mean 'tenant'?" in kept.stderr
    assert kept.stderr.index(log_line) < kept.stderr.index("LLMMETER_BUDGETS DISABLED")


@pytest.fixture
def isolated_startup(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemoryMetricReader]:
    """startup/budgets/pricing/summary state reset before and after; guard metrics to an in-memory reader."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])

    def reset() -> None:
        startup._reset_for_tests()
        budgets.clear()
        budgets.configure(store=budgets.InMemoryStore(), on_store_error="open")
        monkeypatch.setattr(budgets, "_env_loaded", False)
        pricing._reset_for_tests()
        summary._problems.clear()
        config.set_settings(None)

    reset()
    _providers.use(meter_provider=provider)
    yield reader
    _providers.use()
    reset()
    provider.shutdown()


def _config_error_points(reader: InMemoryMetricReader) -> dict[str, int]:
    points: dict[str, int] = {}
    data = reader.get_metrics_data()
    for rm in data.resource_metrics if data else ():
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name == names.METRIC_CONFIG_ERRORS:
                    for point in metric.data.data_points:
                        points[point.attributes[names.LABEL_CONFIG_PART]] = point.value
    return points


def test_warn_disables_only_the_broken_parts_and_counts_them(
    isolated_startup: InMemoryMetricReader, tmp_path: Path, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    good_file = tmp_path / "budgets.yaml"
    good_file.write_text("- 'user=*: 100 calls/day hard'\n", encoding="utf-8")
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"x": {"input_cost_per_token": "cheap"}}), encoding="utf-8")
    environ = {
        "LLMMETER_ON_CONFIG_ERROR": "warn",
        "LLMMETER_BUDGETS_FILE": str(good_file),
        "LLMMETER_BUDGETS": "tennant=acme: $5/day hard",
        "LLMMETER_SUMMARY": "sometimes",
        "LLMMETER_PRICE_FILE": str(prices),
    }
    for name, value in environ.items():  # the price table reads os.environ itself
        monkeypatch.setenv(name, value)
    with caplog.at_level(logging.ERROR, logger="llmmeter.config"):
        settings = startup.run()
    assert settings.summary == "auto"  # the bad variable's default
    assert [b.spec for b in budgets.budgets()] == ["user=*: 100 calls/day hard"]  # the good file still applies
    assert pricing.price_usage("openai", "gpt-4o", Usage(input=1, output=0)).priced  # shipped prices
    assert _config_error_points(isolated_startup) == {
        "LLMMETER_BUDGETS": 1, "LLMMETER_SUMMARY": 1, "LLMMETER_PRICE_FILE": 1,
    }
    assert len([r for r in caplog.records if "kept running with" in r.getMessage()]) == 3
    out = io.StringIO()
    from rich.console import Console

    summary.render_problems(Console(file=out, width=200, color_system=None))
    assert sorted(line.split(" DISABLED")[0] for line in out.getvalue().splitlines()) == [
        "llmmeter: LLMMETER_BUDGETS", "llmmeter: LLMMETER_PRICE_FILE", "llmmeter: LLMMETER_SUMMARY",
    ]


def test_exit_policy_reports_every_problem_at_once(isolated_startup: InMemoryMetricReader) -> None:
    with pytest.raises(ConfigError) as raised:
        startup.run({"LLMMETER_BUDGETS": "tennant=acme: $5/day", "LLMMETER_SUMMARY": "sometimes"})
    assert "LLMMETER_BUDGETS" in str(raised.value) and "LLMMETER_SUMMARY" in str(raised.value)
    assert budgets.budgets() == () and _config_error_points(isolated_startup) == {}


def test_a_bad_policy_value_is_itself_an_error(isolated_startup: InMemoryMetricReader) -> None:
    with pytest.raises(ConfigError, match="LLMMETER_ON_CONFIG_ERROR"):
        startup.run({"LLMMETER_ON_CONFIG_ERROR": "ignore"})


@pytest.mark.parametrize(("variable", "value"), [("LLMMETER_EXPORT_TIMEOUT", "3ms"), ("LLMMETER_SUMMARY", "yes"),
                                                  ("LLMMETER_MAX_VALUES_PER_LABEL", "-1")])
def test_warn_keeps_the_default_of_every_kind_of_bad_variable(
    isolated_startup: InMemoryMetricReader, variable: str, value: str
) -> None:
    settings = startup.run({"LLMMETER_ON_CONFIG_ERROR": "warn", variable: value})
    assert settings == config.Settings()  # every field at its default
    assert _config_error_points(isolated_startup) == {variable: 1}
