"""``llmmeter prices update`` and the in-process refresh (issue 12 item 1), against tables served from a local
HTTP server on 127.0.0.1: nothing is fetched from the internet. Expected diff lines are worked out by hand from
the shipped table's gpt-4o entry ($2.50 / $10 per M, see prices.json) and the served table."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from llmmeter import pricing
from llmmeter.cli import app
from llmmeter.config import ConfigError
from llmmeter.pricing import price_usage, refresh
from llmmeter.usage import Usage
from replay_server import RecordedRequest, Reply, scripted
from typer.testing import CliRunner

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")

# A LiteLLM-format table as LiteLLM publishes it (sample_spec, its own extra fields): gpt-4o's input rate up
# 10 % ($2.50 -> $2.75 per M), one new OpenAI model, one image-only entry (skipped).
SERVED: dict[str, Any] = {
    "sample_spec": {"input_cost_per_token": 0.0, "litellm_provider": "one of ...", "mode": "one of ..."},
    "gpt-4o": {"input_cost_per_token": 2.75e-06, "output_cost_per_token": 1e-05,
               "cache_read_input_token_cost": 1.25e-06, "litellm_provider": "openai", "mode": "chat",
               "max_input_tokens": 128000, "max_output_tokens": 16384, "supports_vision": True},
    "acme-new-model": {"input_cost_per_token": 1e-06, "output_cost_per_token": 4e-06, "litellm_provider": "openai",
                       "mode": "chat", "supports_function_calling": True},
    "dall-e-9": {"output_cost_per_image": 0.04, "litellm_provider": "openai", "mode": "image_generation"},
}


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for var in ("LLMMETER_PRICE_FILE", "LLMMETER_MODEL_ALIASES", "LLMMETER_DISCOUNTS", "LLMMETER_PRICE_REFRESH",
                "LLMMETER_PRICE_REFRESH_FROM"):
        monkeypatch.delenv(var, raising=False)
    pricing._reset_for_tests()
    yield
    refresh.stop()
    pricing._reset_for_tests()


def serve(table: Any, status: int = 200):
    body = table if isinstance(table, bytes) else json.dumps(table).encode()
    return scripted(lambda request: Reply(status, [("Content-Type", "application/json")], body))


def run(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(app, ["prices", "update", *args], env=env, catch_exceptions=False)


def test_update_prints_the_diff_and_writes_atomically(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "prices.json"
    with serve(SERVED) as server:
        result = run("--from", server.base_url + "/model_prices_and_context_window.json", "-o", str(target))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "  ~ gpt-4o input_cost_per_token: 2.5e-06 -> 2.75e-06 (+10.0%)" in lines
    assert "  + acme-new-model" in lines
    assert "dall-e-9" not in result.output
    assert lines[0].startswith("1 added, 0 removed, 1 changed")
    assert os.listdir(tmp_path) == ["prices.json"]  # no temporary file left behind
    written = json.loads(target.read_text())
    assert written["_meta"]["source"].endswith("/model_prices_and_context_window.json")
    assert written["acme-new-model"] == {"input_cost_per_token": 1e-06, "output_cost_per_token": 4e-06,
                                         "litellm_provider": "openai", "mode": "chat"}
    # the override is in force through LLMMETER_PRICE_FILE: 1M input tokens of gpt-4o now cost $2.75
    monkeypatch.setenv("LLMMETER_PRICE_FILE", str(target))
    pricing._reset_for_tests()
    assert price_usage("openai", "gpt-4o", Usage(input=1_000_000, output=0)).usd == pytest.approx(2.75)


def test_removed_models_are_listed(tmp_path: Any) -> None:
    target = tmp_path / "prices.json"
    target.write_text(json.dumps({"old-model": {"input_cost_per_token": 1e-06, "output_cost_per_token": 1e-06}}))
    with serve(SERVED) as server:
        result = run("--from", server.base_url + "/t.json", env={"LLMMETER_PRICE_FILE": str(target)})
    assert result.exit_code == 0, result.output
    assert "  - old-model" in result.output.splitlines()
    assert "old-model" not in json.loads(target.read_text())


def test_check_exits_1_when_stale_and_0_once_updated(tmp_path: Any) -> None:
    target = tmp_path / "prices.json"
    with serve(SERVED) as server:
        url = server.base_url + "/t.json"
        stale = run("--from", url, "--check")
        assert stale.exit_code == 1, stale.output
        assert "missing: acme-new-model (openai)" in stale.output
        assert "changed: gpt-4o input_cost_per_token 2.5e-06 -> 2.75e-06" in stale.output
        assert not target.exists()  # --check writes nothing
        assert run("--from", url, "-o", str(target)).exit_code == 0
        pricing._reset_for_tests()  # a new process: the table in force now includes the override file
        fresh = run("--from", url, "--check", env={"LLMMETER_PRICE_FILE": str(target)})
    assert fresh.exit_code == 0, fresh.output
    assert fresh.output.startswith("up to date")


def test_source_with_a_typo_is_refused_and_nothing_written(tmp_path: Any) -> None:
    target = tmp_path / "prices.json"
    bad = {**SERVED, "acme-new-model": {"input_cost_per_tokn": 1e-06, "output_cost_per_token": 4e-06}}
    with serve(bad) as server:
        result = CliRunner().invoke(app, ["prices", "update", "--from", server.base_url + "/t.json",
                                                          "-o", str(target)])
    assert result.exit_code == 2
    assert "'acme-new-model'" in result.stderr and "'input_cost_per_tokn'" in result.stderr
    assert not target.exists()


@pytest.mark.parametrize(("status", "body"), [(500, b"oops"), (404, b"")])
def test_http_errors_are_reported(tmp_path: Any, status: int, body: bytes) -> None:
    with serve(body, status) as server:
        result = CliRunner().invoke(app, ["prices", "update", "--from", server.base_url + "/t.json",
                                                          "-o", str(tmp_path / "p.json")])
    assert result.exit_code == 2
    assert "cannot read it" in result.stderr and str(status) in result.stderr


def test_real_litellm_table_updates_from_a_file(tmp_path: Any) -> None:
    target = tmp_path / "prices.json"
    result = run("--from", os.path.join(FIXTURES, "litellm_1.110.2_subset.json"), "-o", str(target))
    assert result.exit_code == 0, result.output
    written = json.loads(target.read_text())
    assert written["gpt-5.4"]["input_cost_per_token_flex"] == 1.25e-06  # LiteLLM's tier rates are carried over


# --- in-process refresh ---------------------------------------------------------------------------

def test_refresh_once_installs_the_served_table() -> None:
    with serve(SERVED) as server:
        assert refresh.refresh_once(server.base_url + "/t.json") is True
    assert price_usage("openai", "gpt-4o", Usage(input=1_000_000, output=0)).usd == pytest.approx(2.75)
    assert price_usage("openai", "acme-new-model", Usage(input=1_000_000, output=0)).usd == pytest.approx(1.0)
    assert pricing.table_age_seconds() is not None and pricing.table_age_seconds() < 3600


def test_refresh_failure_keeps_the_bundled_table(caplog: pytest.LogCaptureFixture) -> None:
    with serve(b"{not json") as server, caplog.at_level(logging.WARNING, logger="llmmeter"):
        assert refresh.refresh_once(server.base_url + "/t.json") is False
    assert price_usage("openai", "gpt-4o", Usage(input=1_000_000, output=0)).usd == pytest.approx(2.5)
    assert any("keeping the table in force (bundled)" in r.getMessage() for r in caplog.records)


def test_price_file_still_wins_over_the_refreshed_table(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    own = tmp_path / "own.json"
    own.write_text(json.dumps({"gpt-4o": {"input_cost_per_token": 2e-06, "output_cost_per_token": 8e-06}}))
    monkeypatch.setenv("LLMMETER_PRICE_FILE", str(own))
    pricing._reset_for_tests()
    with serve(SERVED) as server:
        assert refresh.refresh_once(server.base_url + "/t.json")
    assert price_usage("openai", "gpt-4o", Usage(input=1_000_000, output=0)).usd == pytest.approx(2.0)


def test_refresh_thread_starts_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    fetched = threading.Event()

    def handler(request: RecordedRequest) -> Reply:
        fetched.set()
        return Reply.json(SERVED)

    with scripted(handler) as server:
        monkeypatch.setenv("LLMMETER_PRICE_REFRESH", "24h")
        monkeypatch.setenv("LLMMETER_PRICE_REFRESH_FROM", server.base_url + "/t.json")
        pricing._reset_for_tests()
        pricing.get_price_table()  # start-up: the table loads at once (bundled), the fetch runs on its thread
        assert fetched.wait(30)
        refresh.stop()
    assert price_usage("openai", "acme-new-model", Usage(input=1_000_000, output=0)).usd == pytest.approx(1.0)


@pytest.mark.parametrize("raw", ["24", "5s", "daily", "-1h"])
def test_bad_refresh_interval_fails_at_startup(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("LLMMETER_PRICE_REFRESH", raw)
    pricing._reset_for_tests()
    with pytest.raises(ConfigError, match="LLMMETER_PRICE_REFRESH"):
        pricing.get_price_table()


def test_table_age_of_the_shipped_table() -> None:
    pricing.get_price_table()
    now = datetime(2026, 11, 30, 12, 0, tzinfo=UTC).timestamp()
    assert pricing.table_age_seconds(now) == 2.5 * 86400  # published 2026-11-28T00:00Z
