"""The distro, the configurator and the post-instrument hook: one llmmeter processor, whoever set up the SDK."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from llmmeter import config, distro
from llmmeter.config import ConfigError
from llmmeter.distro import LLMMeterConfigurator, LLMMeterDistro, attach_to_global_providers, validate_settings
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.util._importlib_metadata import entry_points
from startup_runs import instrumented_run
from test_pipeline import fresh_otel_globals, llm_span, llmmeter_processors

__all__ = ["fresh_otel_globals"]  # the fixture, imported for this module's tests



def test_entry_points_are_registered() -> None:
    def loaded(group: str, name: str) -> object:
        (entry_point,) = [ep for ep in entry_points(group=group) if ep.name == name]
        return entry_point.load()

    assert loaded("opentelemetry_distro", "llmmeter") is LLMMeterDistro
    assert loaded("opentelemetry_configurator", "llmmeter") is LLMMeterConfigurator
    assert loaded("opentelemetry_post_instrument", "llmmeter") is attach_to_global_providers


@pytest.fixture(autouse=True)
def in_process_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    """In this process a config error must fail the test, not exit pytest; and validate every time."""

    def fail(error: ConfigError) -> None:
        raise error

    monkeypatch.setattr(distro, "_fail_fast", fail)
    monkeypatch.setattr(distro, "_validated", False)


@pytest.fixture
def distro_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """A clean exporter environment."""
    for var in (
        "OTEL_TRACES_EXPORTER",
        "OTEL_METRICS_EXPORTER",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv(config.ENV_SUMMARY, "off")
    yield monkeypatch
    config.set_settings(None)


def test_distro_defaults_to_otlp_http_when_an_endpoint_is_set(distro_env: pytest.MonkeyPatch) -> None:
    distro_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    distro_env.setenv("OTEL_METRICS_EXPORTER", "prometheus")
    LLMMeterDistro().configure()
    assert os.environ["OTEL_TRACES_EXPORTER"] == "otlp"
    assert os.environ["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
    assert os.environ["OTEL_METRICS_EXPORTER"] == "prometheus"  # the user's choice is kept


def test_distro_exports_nothing_without_an_endpoint(distro_env: pytest.MonkeyPatch) -> None:
    """No endpoint: the exit summary is the output; OTLP to an absent localhost would only add errors."""
    LLMMeterDistro().configure()
    assert os.environ["OTEL_TRACES_EXPORTER"] == "none"
    assert os.environ["OTEL_METRICS_EXPORTER"] == "none"


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("LLMMETER_SUMMARY", "sometimes"),
        ("LLMMETER_MAX_VALUES_PER_LABEL", "lots"),
        ("LLMMETER_LABEL_KEYS", "tenant,bad key!"),
        ("LLMMETER_STREAM_INCLUDE_USAGE", "perhaps"),
    ],
)
def test_validate_settings_names_variable_and_value(monkeypatch: pytest.MonkeyPatch, var: str, value: str) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as raised:
        validate_settings()
    config.set_settings(None)
    assert var in str(raised.value)
    assert repr(value) in str(raised.value) or repr(value.split(",")[-1]) in str(raised.value)


def test_configurator_sets_up_the_sdk_with_one_processor(
    fresh_otel_globals: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER", "OTEL_LOGS_EXPORTER"):
        monkeypatch.setenv(var, "none")
    LLMMeterConfigurator().configure()
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    (processor,) = llmmeter_processors(provider)
    # The post-instrument hook runs next; it must find the configurator's processor, not add another.
    assert attach_to_global_providers() is processor
    assert llmmeter_processors(provider) == [processor]
    llm_span(provider, input_tokens=4)
    assert sum(row.calls for row in processor.tally.rows().values()) == 1


def test_post_instrument_hook_attaches_to_a_foreign_sdk_setup(fresh_otel_globals: None) -> None:
    """Another distro's configurator won (only the first configurator entry point runs)."""
    provider = TracerProvider()
    trace.set_tracer_provider(provider)
    processor = attach_to_global_providers()
    assert processor is not None
    assert attach_to_global_providers() is processor  # idempotent
    assert llmmeter_processors(provider) == [processor]
    llm_span(provider, input_tokens=8)
    (row,) = processor.tally.rows().values()
    assert (row.calls, row.input) == (1, 8)


def test_post_instrument_hook_without_an_sdk_does_nothing(fresh_otel_globals: None) -> None:
    assert attach_to_global_providers() is None
    assert not isinstance(trace.get_tracer_provider(), TracerProvider)


def _instrumented_run(env_extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return instrumented_run(env_extra)


def test_bad_env_value_fails_fast_under_opentelemetry_instrument() -> None:
    result = _instrumented_run({"LLMMETER_MAX_VALUES_PER_LABEL": "-5"})
    assert result.returncode == 2
    assert "app ran" not in result.stdout  # the app never started with a broken meter
    assert "LLMMETER_MAX_VALUES_PER_LABEL" in result.stderr and "'-5'" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_price_file_fails_fast_under_opentelemetry_instrument(tmp_path: Path) -> None:
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"my-model": {"input_cost_per_token": "cheap", "output_cost_per_token": 1e-6}}))
    result = _instrumented_run({"LLMMETER_PRICE_FILE": str(prices)})
    assert result.returncode == 2
    assert "app ran" not in result.stdout
    assert str(prices) in result.stderr and "input_cost_per_token" in result.stderr and "cheap" in result.stderr


def test_good_env_starts_the_app_under_opentelemetry_instrument() -> None:
    result = _instrumented_run({"LLMMETER_SUMMARY": "off"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "app ran"


def test_post_instrument_hook_validates_settings_when_another_distro_ran(
    fresh_otel_globals: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    trace.set_tracer_provider(TracerProvider())
    monkeypatch.setenv("LLMMETER_LABEL_KEYS", "tenant,user id")
    with pytest.raises(ConfigError, match="LLMMETER_LABEL_KEYS"):
        attach_to_global_providers()
