"""``llmmeter prompts check``: template token footprint against a committed baseline, as a CLI and a pytest plugin.

Templates are " hello world" repeated: in both OpenAI vocabularies (o200k_base for gpt-4o-mini, cl100k_base for
gpt-3.5-turbo) " hello" and " world" are one token each, so N repeats are 2N tokens. Prices are the shipped
table's documented input rates (gpt-4o-mini: $0.15 per 1M input tokens).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from llmmeter import prompts

MINI_IN = 0.15e-6


def cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "llmmeter.cli", "prompts", "check", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "support.txt").write_text(" hello world" * 10)  # 20 tokens
    (tmp_path / "prompts" / "search.txt").write_text(" hello world" * 5)  # 10 tokens
    return tmp_path


def test_update_then_check_unchanged_passes(project: Path) -> None:
    result = cli(project, "prompts/*.txt", "--model", "gpt-4o-mini", "--model", "gpt-3.5-turbo", "--update")
    assert result.returncode == 0, result.stderr
    baseline = json.loads((project / ".llmmeter-prompts.json").read_text())
    assert baseline == {"version": 1, "prompts": {
        "prompts/search.txt": {"gpt-4o-mini": 10, "gpt-3.5-turbo": 10},
        "prompts/support.txt": {"gpt-4o-mini": 20, "gpt-3.5-turbo": 20}}}
    result = cli(project, "prompts/*.txt", "--model", "gpt-4o-mini", "--model", "gpt-3.5-turbo")
    assert result.returncode == 0, result.stderr


def test_growth_past_threshold_fails_with_its_cost(project: Path) -> None:
    assert cli(project, "prompts/*.txt", "--update").returncode == 0
    (project / "prompts" / "support.txt").write_text(" hello world" * 13)  # 26 tokens: +30 %
    (project / "prompts" / "search.txt").write_text(" hello world" * 6)  # 12 tokens: +20 %, not over 20 %
    result = cli(project, "prompts/*.txt", "--format", "json", "--calls-per-day", "10000")
    assert result.returncode == 1
    rows = {row["prompt"]: row for row in json.loads(result.stdout)}
    assert (rows["prompts/support.txt"]["baseline_tokens"], rows["prompts/support.txt"]["tokens"]) == (20, 26)
    assert rows["prompts/support.txt"]["change"] == pytest.approx(0.30)
    assert rows["prompts/support.txt"]["cost_per_day_usd"] == pytest.approx(26 * MINI_IN * 10000)
    assert rows["prompts/support.txt"]["change_per_day_usd"] == pytest.approx(6 * MINI_IN * 10000)
    assert rows["prompts/search.txt"]["change"] == pytest.approx(0.20)
    assert "prompts/support.txt" in result.stderr and "prompts/search.txt" not in result.stderr
    assert cli(project, "prompts/*.txt", "--threshold", "0.35").returncode == 0


def test_clear_errors(project: Path) -> None:
    result = cli(project, "prompts/*.txt")
    assert result.returncode == 2 and "no baseline file .llmmeter-prompts.json" in result.stderr
    assert cli(project, "prompts/*.txt", "--update").returncode == 0
    result = cli(project, "prompts/*.txt", "--model", "acme-unknown-9")
    assert result.returncode == 2 and "unknown model 'acme-unknown-9'" in result.stderr
    (project / "prompts" / "bad.txt").write_bytes(b"\xff\xfe\x00 not utf-8 \xc3")
    result = cli(project, "prompts/*.txt")
    assert result.returncode == 2 and "bad.txt" in result.stderr
    result = cli(project, "nothing/*.md")
    assert result.returncode == 2 and "'nothing/*.md'" in result.stderr
    (project / ".llmmeter-prompts.json").write_text('{"prompts": 3}')
    (project / "prompts" / "bad.txt").unlink()
    result = cli(project, "prompts/*.txt")
    assert result.returncode == 2 and ".llmmeter-prompts.json" in result.stderr


def test_registered_python_templates_are_counted() -> None:
    prompts.register("triage-system", " hello world" * 4)
    try:
        found = prompts.measure(prompts.templates([], "."), ["gpt-4o-mini"], {"python:triage-system": {
            "gpt-4o-mini": 4}})
    finally:
        prompts._registered.clear()
    assert [(f.prompt, f.tokens, f.baseline) for f in found] == [("python:triage-system", 8, 4)]
    assert prompts.over_threshold(found, 0.2) == found


def test_pytest_plugin_fails_the_session_on_growth(project: Path) -> None:
    (project / "test_app.py").write_text("def test_ok():\n    assert True\n")
    assert cli(project, "prompts/*.txt", "--update").returncode == 0
    args = [sys.executable, "-m", "pytest", "-q", "-p", "llmmeter.prompts_plugin", "-p", "no:randomly",
            "-p", "no:cacheprovider", "--llmmeter-prompts", "prompts/*.txt", "test_app.py"]
    ok = subprocess.run(args, cwd=project, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    (project / "prompts" / "support.txt").write_text(" hello world" * 13)
    grown = subprocess.run(args, cwd=project, capture_output=True, text=True, timeout=120)
    assert grown.returncode == 1 and "prompts/support.txt [gpt-4o-mini] grew 20 -> 26 tokens" in grown.stdout
