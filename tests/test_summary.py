"""The embedded default: a cost table on stderr at exit, bounded, honest about unpriced and estimated calls."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from llmmeter.summary import OTHER, Tally, render_summary, should_print
from rich.console import Console


def render(tally: Tally) -> str:
    out = io.StringIO()
    render_summary(tally, Console(file=out, width=200, color_system=None))
    return out.getvalue()


def test_table_has_rows_per_model_and_feature_and_a_total() -> None:
    tally = Tally()
    tally.record("gpt-4o", "search", input=1000, output=200, cache_read=800, reasoning=0, cost_usd=0.004)
    tally.record("gpt-4o", "search", input=500, output=100, cost_usd=0.002)
    tally.record("o3-mini", "agent", input=10, output=300, reasoning=250, cost_usd=0.0013)
    text = render(tally)
    lines = text.splitlines()
    (search,) = [line for line in lines if "search" in line]
    assert "gpt-4o" in search and "1,500" in search and "300" in search and "800" in search and "$0.006000" in search
    (agent,) = [line for line in lines if "agent" in line]
    assert "250" in agent and "$0.001300" in agent
    (total,) = [line for line in lines if "total" in line]
    assert "1,510" in total and "$0.007300" in total and " 3 " in total


def test_unpriced_is_marked_and_never_shown_as_zero_dollars() -> None:
    tally = Tally()
    tally.record("my-finetune", None, input=10, output=5, cost_usd=None)
    text = render(tally)
    (row,) = [line for line in text.splitlines() if "my-finetune" in line]
    assert "unpriced" in row and "$" not in row
    assert "LLMMETER_PRICE_FILE" in text


def test_partly_unpriced_and_estimated_rows() -> None:
    tally = Tally()
    tally.record("gpt-4o", "chat", input=10, output=5, cost_usd=0.01, estimated=True)
    tally.record("gpt-4o", "chat", input=10, output=5, cost_usd=None)
    (row,) = [line for line in render(tally).splitlines() if "chat" in line]
    assert "~$0.010000" in row and "+1 unpriced" in row


def test_nothing_printed_without_calls() -> None:
    out = io.StringIO()
    assert render_summary(Tally(), Console(file=out)) is False
    assert out.getvalue() == ""


def test_tally_is_bounded_and_folds_into_other() -> None:
    tally = Tally(max_rows=4)
    for i in range(100):
        tally.record(f"model-{i}", "f", input=1, output=1, cost_usd=0.01)
    rows = tally.rows()
    assert len(rows) == 4
    assert rows[(OTHER, OTHER)].calls == 97
    assert sum(r.calls for r in rows.values()) == 100
    assert sum(r.cost_usd for r in rows.values()) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("mode", "env", "expected"),
    [
        ("auto", {}, True),
        ("auto", {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, False),
        ("auto", {"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://c:4318/v1/metrics"}, False),
        ("auto", {"OTEL_EXPORTER_OTLP_ENDPOINT": "  "}, True),
        ("always", {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ("off", {}, False),
    ],
)
def test_should_print(mode: str, env: dict[str, str], expected: bool) -> None:
    assert should_print(mode, env) is expected


SCRIPT = textwrap.dedent(
    """
    import llmmeter
    from opentelemetry import trace
    from llmmeter import attribution, names

    llmmeter.configure(instrument=False)
    tracer = trace.get_tracer("llmmeter.script")
    with attribution.attributes(feature="triage"):
        span = tracer.start_span("chat gpt-4o-mini", attributes={
            names.OPERATION: "chat", names.PROVIDER: "openai", names.REQUEST_MODEL: "gpt-4o-mini"})
    span.set_attributes({names.USAGE_INPUT_TOKENS: 1234, names.USAGE_OUTPUT_TOKENS: 56,
                         names.LLMMETER_PRICED: True, names.COST_USD: 0.000219})
    span.end()
    print("done")
    """
)


def run_script(tmp_path: Path, env_extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMMETER_", "OTEL_"))}
    env.update(env_extra)
    env["COLUMNS"] = "200"
    return subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)


def test_summary_printed_at_exit_by_default(tmp_path: Path) -> None:
    result = run_script(tmp_path, {})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "done"  # the table goes to stderr, never into the app's output
    (row,) = [line for line in result.stderr.splitlines() if "triage" in line]
    assert "gpt-4o-mini" in row and "1,234" in row and "56" in row and "$0.000219" in row


@pytest.mark.parametrize(
    "env", [{"LLMMETER_SUMMARY": "off"}, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}]
)
def test_summary_silent_when_off_or_exporting(tmp_path: Path, env: dict[str, str]) -> None:
    result = run_script(tmp_path, env)
    assert result.returncode == 0, result.stderr
    assert "llmmeter" not in result.stderr and "triage" not in result.stderr
