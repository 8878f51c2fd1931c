"""``llmmeter reconcile``: the providers' organisation reports against what llmmeter metered.

The provider side is served from 127.0.0.1 by :class:`reconcile_fixtures.AdminAPI`, shaped exactly as the
providers document their reports (the documents and the shapes are cited in ``tests/reconcile_fixtures.py``),
paginated two daily buckets per page, with 401 / 429 / 5xx injected where a test says so. The metered side is a
real Prometheus whose TSDB holds llmmeter's cost and token counters for the same days (backfilled with promtool).
Every expected figure is worked out by hand from the literals in ``reconcile_fixtures``.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator

import pytest
from llmmeter.reconcile import anthropic, openai
from llmmeter.reconcile.client import ReconcileError
from llmmeter.reconcile.report import canonical_model
from promtools import RULES_FILE, free_port, prometheus_server, require_binary, wait_until
from reconcile_fixtures import ANTHROPIC_KEY, D1, D2, D3, OPENAI_KEY, UNTIL, AdminAPI, prometheus_with_metered
from replay_server import Reply, scripted

ROOT = pathlib.Path(__file__).resolve().parents[1]


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``llmmeter reconcile ...`` as a user runs it: a separate process, its exit code, stdout and stderr."""
    clean = {k: v for k, v in os.environ.items() if k not in ("OPENAI_ADMIN_KEY", "ANTHROPIC_ADMIN_KEY")}
    clean["COLUMNS"] = "200"
    return subprocess.run([sys.executable, "-m", "llmmeter.cli", "reconcile", *args], capture_output=True,
                          text=True, env={**clean, **(env or {})}, timeout=120)


@pytest.fixture(scope="module")
def prometheus_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    prometheus, promtool = require_binary("prometheus"), require_binary("promtool")
    with prometheus_with_metered(prometheus, promtool, tmp_path_factory.mktemp("reconcile-prom")) as url:
        yield url


def window_args(server_url: str, prometheus_url: str) -> list[str]:
    return ["--since", "3d", "--until", UNTIL.isoformat(), "--base-url", server_url, "--prometheus", prometheus_url]


# --- reading the reports ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("line_item", "model"), [
    ("gpt-4o-mini-2024-07-18, input", "gpt-4o-mini-2024-07-18"),
    ("gpt-4o-mini-2024-07-18, cached input", "gpt-4o-mini-2024-07-18"),
    ("ft:gpt-4o-mini-2024-07-18:acme::abc123, output", "ft:gpt-4o-mini-2024-07-18:acme::abc123"),
    ("Image models", None),
    (None, None),
])
def test_openai_line_item_names_the_model(line_item: str | None, model: str | None) -> None:
    """The Costs API groups by line item, not model: the model is the text before the last ", "."""
    assert openai.model_of_line_item(line_item) == model


def test_openai_reports_are_read_across_pages() -> None:
    """Costs by line item and project, and usage by model/project/key, summed per day × model as written by hand;
    every page is requested with the previous `next_page`; the request parameters are the documented ones."""
    api = AdminAPI("openai")
    with scripted(api) as server:
        report = openai.fetch(openai.client(OPENAI_KEY, server.base_url, sleep=pytest.fail), D1, UNTIL)
    billed: dict[tuple, float] = defaultdict(float)
    for cost in report.costs:
        billed[(cost.day, cost.model and canonical_model(cost.model), cost.line_item if not cost.model else "")] += (
            cost.usd)
    assert billed == pytest.approx({
        (D1, "gpt-4o-mini", ""): 1.20 + 0.05 + 2.75, (D1, "gpt-4o", ""): 8.00, (D1, None, "Image models"): 0.40,
        (D2, "gpt-4o-mini", ""): 5.00, (D2, "gpt-4o", ""): 8.00, (D2, "o3-mini", ""): 2.00,
        (D3, "gpt-4o-mini", ""): 4.00, (D3, "gpt-4o", ""): 8.00,
    })
    assert {c.scope for c in report.costs if c.model and c.model.startswith("o3")} == {"proj_batch"}
    o3 = [u for u in report.usage if u.model.startswith("o3")]
    assert [(u.day, u.input_tokens, u.output_tokens, u.scope, u.api_key_id) for u in o3] == [
        (D2, 600_000, 250_000, "proj_batch", "key_batch")]
    paths = [(r.path, r.query) for r in api.seen]
    assert [p for p, _ in paths] == ["/v1/organization/costs"] * 2 + ["/v1/organization/usage/completions"] * 2
    assert "page=" not in paths[0][1] and "page=page_" in paths[1][1]  # the second page asked for by cursor
    assert "group_by=line_item&group_by=project_id" in paths[0][1] and "bucket_width=1d" in paths[0][1]
    assert "limit=3" in paths[0][1]


def test_anthropic_amounts_are_cents_and_input_includes_cache() -> None:
    """cost_report amounts are cents as decimal strings ("123.45" is $1.2345); usage input = uncached + cache
    read + both cache-write TTLs (1,000,000 + 1,000,000 + 200,000 + 50,000 on D1)."""
    api = AdminAPI("anthropic")
    with scripted(api) as server:
        report = anthropic.fetch(anthropic.client(ANTHROPIC_KEY, server.base_url, sleep=pytest.fail), D1, UNTIL)
    billed: dict[tuple, float] = defaultdict(float)
    for cost in report.costs:
        billed[(cost.day, cost.model and canonical_model(cost.model))] += cost.usd
    assert billed == pytest.approx({(D1, "claude-sonnet-4-5"): 7.80, (D1, None): 0.20, (D2, "claude-sonnet-4-5"): 7.80,
                                    (D2, "claude-haiku-4-5"): 1.2345 + 0.20, (D3, "claude-sonnet-4-5"): 7.80})
    d1 = next(u for u in report.usage if u.day == D1)
    assert (d1.input_tokens, d1.output_tokens, d1.scope, d1.api_key_id) == (2_250_000, 300_000, "wrkspc_app",
                                                                           "apikey_app")
    assert all(r.headers.get("anthropic-version") == anthropic.API_VERSION for r in api.seen)
    assert "group_by%5B%5D=workspace_id&group_by%5B%5D=description" in api.seen[0].query
    assert len(api.seen) == 4  # 3 days at 2 buckets per page, two reports


# --- errors ----------------------------------------------------------------------------------------------------
def test_429_waits_what_retry_after_says() -> None:
    sleeps: list[float] = []
    api = AdminAPI("openai", faults=[Reply(429, [("retry-after", "7"), ("Content-Type", "application/json")],
                                           b'{"error": {"message": "Rate limit reached", "type": "requests"}}')])
    with scripted(api) as server:
        report = openai.fetch(openai.client(OPENAI_KEY, server.base_url, sleep=sleeps.append), D1, UNTIL)
    assert sleeps == [7.0]
    assert api.seen[0].query == api.seen[1].query  # the same request, sent again
    assert len(report.costs) == 16


def test_429_wait_is_bounded() -> None:
    """A retry-after of an hour is capped at max_wait_s (60 s by default)."""
    sleeps: list[float] = []
    api = AdminAPI("anthropic", faults=[Reply(429, [("retry-after", "3600")], b"")])
    with scripted(api) as server:
        anthropic.fetch(anthropic.client(ANTHROPIC_KEY, server.base_url, sleep=sleeps.append), D1, UNTIL)
    assert sleeps == [60.0]


def test_5xx_is_retried_a_bounded_number_of_times_then_named() -> None:
    """4 attempts with 0.5 s, 1 s, 2 s back-off in between, then an error that says what happened."""
    sleeps: list[float] = []
    api = AdminAPI("openai", faults=[Reply.json({"error": {"message": "upstream overloaded"}}, status=503)] * 10)
    with scripted(api) as server, pytest.raises(ReconcileError) as raised:
        openai.fetch(openai.client(OPENAI_KEY, server.base_url, sleep=sleeps.append), D1, UNTIL)
    assert sleeps == [0.5, 1.0, 2.0]
    assert len(api.seen) == 4
    assert "gave up after 4 attempts" in str(raised.value) and "HTTP 503 (upstream overloaded)" in str(raised.value)


def test_one_5xx_then_success() -> None:
    sleeps: list[float] = []
    api = AdminAPI("anthropic", faults=[Reply(502, [], b"<html>bad gateway</html>")])
    with scripted(api) as server:
        report = anthropic.fetch(anthropic.client(ANTHROPIC_KEY, server.base_url, sleep=sleeps.append), D1, UNTIL)
    assert sleeps == [0.5] and len(report.costs) == 10


def test_401_names_the_variable_never_the_key(prometheus_url: str) -> None:
    """The provider's 401 body quotes the key it got; the CLI names OPENAI_ADMIN_KEY and prints no part of it."""
    wrong = "sk-admin-WRONG-5555aaaa7777"
    refusal = Reply.json({"error": {"message": f"Incorrect API key provided: {wrong}.",
                                    "type": "invalid_request_error", "code": "invalid_api_key"}}, status=401)
    with scripted(AdminAPI("openai", faults=[refusal])) as server:
        result = run_cli("openai", *window_args(server.base_url, prometheus_url), env={"OPENAI_ADMIN_KEY": wrong})
    assert result.returncode == 2
    assert "OPENAI_ADMIN_KEY" in result.stderr and "invalid_api_key" in result.stderr
    assert "WRONG" not in result.stderr + result.stdout


def test_a_missing_key_is_named() -> None:
    result = run_cli("anthropic", "--prometheus", "http://127.0.0.1:9", "--since", "1d")
    assert result.returncode == 2 and "ANTHROPIC_ADMIN_KEY is not set" in result.stderr


def test_exactly_one_metered_source() -> None:
    result = run_cli("openai", "--since", "1d", env={"OPENAI_ADMIN_KEY": OPENAI_KEY})
    assert result.returncode == 2 and "--prometheus URL or --ledger PATH" in result.stderr


def test_a_repeated_cursor_is_an_error_not_a_loop() -> None:
    page = Reply.json({"object": "page", "data": [], "has_more": True, "next_page": "page_same"})
    with scripted(lambda request: page) as server, pytest.raises(ReconcileError, match="twice"):
        openai.fetch(openai.client(OPENAI_KEY, server.base_url, sleep=pytest.fail), D1, UNTIL)


# --- the comparison, end to end --------------------------------------------------------------------------------
# By hand, from reconcile_fixtures (billed = the OpenAI line items summed per day and model; metered = METERED):
OPENAI_ROWS = [
    # day, model, billed, metered, drift = (metered - billed) / billed
    (D1, "gpt-4o", 8.00, 10.00, 0.25),
    (D1, "gpt-4o-mini", 4.00, 4.00, 0.0),
    (D2, "gpt-4o", 8.00, 10.00, 0.25),
    (D2, "gpt-4o-mini", 5.00, 5.10, 0.02),  # 5.10 across a counter reset at noon
    (D2, "o3-mini", 2.00, 0.0, -1.0),  # billed, never metered
    (D3, "gpt-4.1-nano", 0.0, 0.30, None),  # metered, never billed
    (D3, "gpt-4o", 8.00, 10.00, 0.25),
    (D3, "gpt-4o-mini", 4.00, 4.00, 0.0),
]


def assert_rows(printed: str, provider: str, expected: list[tuple]) -> None:
    rows = json.loads(printed)
    assert all(list(row) == ["day", "provider", "model", "billed_usd", "metered_usd", "drift_ratio"] for row in rows)
    got = [(row["day"], row["provider"], row["model"], row["billed_usd"], row["metered_usd"], row["drift_ratio"])
           for row in rows]
    want = [(day.isoformat(), provider, model, pytest.approx(billed, abs=1e-6), pytest.approx(metered, abs=1e-6),
             None if drift is None else pytest.approx(drift, abs=1e-6))
            for day, model, billed, metered, drift in expected]
    assert got == want


def test_openai_json_drift_per_day_and_model(prometheus_url: str) -> None:
    with scripted(AdminAPI("openai")) as server:
        result = run_cli("openai", *window_args(server.base_url, prometheus_url), "--format", "json",
                         env={"OPENAI_ADMIN_KEY": OPENAI_KEY})
    assert result.returncode == 1, result.stderr  # gpt-4o +25 %, o3-mini -100 %, gpt-4.1-nano unbilled
    assert_rows(result.stdout, "openai", OPENAI_ROWS)


def test_anthropic_within_drift_exits_0(prometheus_url: str) -> None:
    with scripted(AdminAPI("anthropic")) as server:
        result = run_cli("anthropic", *window_args(server.base_url, prometheus_url), "--format", "json",
                         env={"ANTHROPIC_ADMIN_KEY": ANTHROPIC_KEY})
    assert result.returncode == 0, result.stdout + result.stderr
    assert_rows(result.stdout, "anthropic", [
        (D1, "claude-sonnet-4-5", 7.80, 7.80, 0.0),
        (D2, "claude-haiku-4-5", 1.4345, 1.4345, 0.0),  # 0.20 of it from a series born that day
        (D2, "claude-sonnet-4-5", 7.80, 7.80, 0.0),
        (D3, "claude-sonnet-4-5", 7.80, 7.60, (7.60 - 7.80) / 7.80),  # -2.56 %
    ])


def test_max_drift_is_the_threshold(prometheus_url: str) -> None:
    """The same data past a 2 % threshold: D3's -2.56 % now fails the run."""
    with scripted(AdminAPI("anthropic")) as server:
        result = run_cli("anthropic", *window_args(server.base_url, prometheus_url), "--max-drift", "0.02",
                         env={"ANTHROPIC_ADMIN_KEY": ANTHROPIC_KEY})
    assert result.returncode == 1
    assert "1 day × model row(s) drift more than 2.0%" in result.stdout


def test_table_names_unseen_traffic_and_the_effective_discount(prometheus_url: str) -> None:
    with scripted(AdminAPI("openai")) as server:
        result = run_cli("openai", *window_args(server.base_url, prometheus_url), env={"OPENAI_ADMIN_KEY": OPENAI_KEY})
    out = result.stdout
    assert result.returncode == 1
    # o3-mini: $2.00 billed on D2 in project proj_batch through key_batch (600,000 + 250,000 tokens), never metered.
    assert "billed but never metered: o3-mini: $2.0000 on 2026-11-02" in out
    assert "project proj_batch: $2.0000 over the window" in out
    assert "api key key_batch (project proj_batch): 850,000 tokens over the window" in out
    # gpt-4o: tokens agree to the token, dollars are 24 billed / 30 metered = 0.8 -> a 20 % discount.
    assert 'LLMMETER_DISCOUNTS="openai/gpt-4o=0.8"' in out
    assert "Image models: $0.4000" in out  # billed, but no model: listed, not counted as drift
    # The bill per project: proj_batch only o3-mini ($2.00); proj_web gpt-4o 24.00 and gpt-4o-mini 13.00.
    assert "│ proj_batch │ o3-mini     │  $2.0000 │" in out
    assert "│ proj_web   │ gpt-4o      │ $24.0000 │" in out and "│ proj_web   │ gpt-4o-mini │ $13.0000 │" in out
    assert "+25.0%" in out and "-100.0%" in out
    assert OPENAI_KEY not in out + result.stderr


def test_drift_gauge_textfile_for_node_exporter(prometheus_url: str, tmp_path: pathlib.Path) -> None:
    """The .prom file passes `promtool check metrics` and holds, per model over the window, (metered - billed) /
    billed: gpt-4o (30 - 24) / 24, gpt-4o-mini (13.10 - 13) / 13, o3-mini -1, gpt-4.1-nano +Inf (never billed)."""
    path = tmp_path / "llmmeter-reconcile-openai.prom"
    with scripted(AdminAPI("openai")) as server:
        run_cli("openai", *window_args(server.base_url, prometheus_url), "--prometheus-textfile", str(path),
                env={"OPENAI_ADMIN_KEY": OPENAI_KEY})
    text = path.read_text()
    check = subprocess.run([require_binary("promtool"), "check", "metrics"], input=text, capture_output=True,
                           text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    values = {}
    for line in text.splitlines():
        if line.startswith("llmmeter_reconcile_drift_ratio{"):
            labels, value = line.rsplit(" ", 1)
            assert 'gen_ai_provider_name="openai"' in labels
            values[labels.split('gen_ai_request_model="')[1].split('"')[0]] = float(value)
    assert values == {"gpt-4o": pytest.approx(0.25), "gpt-4o-mini": pytest.approx(0.1 / 13),
                      "o3-mini": -1.0, "gpt-4.1-nano": math.inf}
    assert not list(tmp_path.glob(".*"))  # the temporary file was renamed into place


def test_retry_after_honoured_by_the_cli(prometheus_url: str) -> None:
    """The whole command survives a 429 (retry-after: 1) and a 500 on the way, and still finds the same drift."""
    faults = [Reply(429, [("retry-after", "1")], b""), Reply.json({"error": {"message": "oops"}}, status=500)]
    api = AdminAPI("openai", faults=faults)
    with scripted(api) as server:
        result = run_cli("openai", *window_args(server.base_url, prometheus_url), "--format", "json",
                         env={"OPENAI_ADMIN_KEY": OPENAI_KEY})
    assert result.returncode == 1
    assert_rows(result.stdout, "openai", OPENAI_ROWS)
    assert len(api.seen) == 2 + 4  # the two faults, then 2 pages of costs and 2 of usage


def test_scope_keeps_only_that_project(prometheus_url: str) -> None:
    """--scope proj_web: o3-mini (billed only in proj_batch) is no longer the bill's; the other rows are unchanged."""
    with scripted(AdminAPI("openai")) as server:
        result = run_cli("openai", *window_args(server.base_url, prometheus_url), "--scope", "proj_web",
                         "--format", "json", env={"OPENAI_ADMIN_KEY": OPENAI_KEY})
    assert_rows(result.stdout, "openai", [row for row in OPENAI_ROWS if row[1] != "o3-mini"])


def test_discount_rules_name_what_the_app_called_and_a_surcharge_is_not_a_discount() -> None:
    """compare() on hand-made reports: gpt-4o billed 16 vs metered 20 with equal tokens -> 0.8, one rule per name
    the app's calls carried (a discount pattern matches those); o1 billed 12 vs 10 with equal tokens -> not a
    discount (multipliers are <= 1) but a rate to check; o3's tokens differ by 50 % -> no suggestion at all; a
    fine-tune llmmeter counted but could not price is named as unpriced, not as unseen traffic."""
    from io import StringIO

    from llmmeter.reconcile.compare import compare
    from llmmeter.reconcile.render import render
    from llmmeter.reconcile.report import BilledCost, BilledUsage, ProviderReport
    from llmmeter.reconcile.sources import Metered
    from rich.console import Console

    report = ProviderReport("openai", D1, D2, [BilledCost(D1, "gpt-4o-2024-08-06", 16.0, "gpt-4o-2024-08-06, input"),
                                               BilledCost(D1, "o1", 12.0, "o1, output"),
                                               BilledCost(D1, "o3", 10.0, "o3, output"),
                                               BilledCost(D1, "ft:gpt-4o:acme::x1", 3.0, "ft:gpt-4o:acme::x1, input")],
                            [BilledUsage(D1, "gpt-4o-2024-08-06", 1000, 500), BilledUsage(D1, "o1", 100, 100),
                             BilledUsage(D1, "o3", 100, 100)])
    metered = {(D1, "gpt-4o"): Metered(10.0, 500, 250), (D1, "gpt-4o-2024-08-06"): Metered(10.0, 500, 250),
               (D1, "o1"): Metered(10.0, 100, 100), (D1, "o3"): Metered(5.0, 150, 150),
               (D1, "ft:gpt-4o:acme::x1"): Metered(0.0, 4000, 0)}  # counted, but llmmeter has no price for it
    result = compare(report, metered, "hand")
    assert [(s.model, s.effective_discount) for s in result.discount_suggestions(0.05)] == [
        ("gpt-4o", pytest.approx(0.8)), ("o1", pytest.approx(1.2))]
    out = StringIO()
    render(result, Console(file=out, width=200), 0.05, 0.01)
    text = out.getvalue()
    assert 'LLMMETER_DISCOUNTS="openai/gpt-4o=0.8,openai/gpt-4o-2024-08-06=0.8"' in text
    assert "llmmeter priced o1 below the bill (billed/metered 1.200)" in text
    assert not [line for line in text.splitlines() if line.startswith("tokens agree") and "o3" in line]
    # (fine-tunes are compared under their base, as the price lookup's normalization names them)
    assert ("metered without a price: ft:gpt-4o: llmmeter counted 4,000 tokens but has no price for it; the provider "
            "billed $3.0000. Add it to the price table (llmmeter prices show ft:gpt-4o:acme::x1)") in text
    assert "billed but never metered: ft:gpt-4o" not in text  # it was seen, just not priced


def test_a_report_not_shaped_as_documented_is_a_clear_error(prometheus_url: str) -> None:
    """A bucket without `start_time`: exit 2 naming the problem, no traceback, nothing compared."""
    odd = Reply.json({"object": "page", "data": [{"object": "bucket", "results": []}], "has_more": False,
                      "next_page": None})
    with scripted(lambda request: odd) as server:
        result = run_cli("openai", *window_args(server.base_url, prometheus_url), env={"OPENAI_ADMIN_KEY": OPENAI_KEY})
    assert result.returncode == 2
    assert "not shaped as documented (KeyError: 'start_time')" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unreachable_prometheus_is_named() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with scripted(AdminAPI("anthropic")) as server:
        result = run_cli("anthropic", *window_args(server.base_url, url), env={"ANTHROPIC_ADMIN_KEY": ANTHROPIC_KEY})
    assert result.returncode == 2 and f"cannot read Prometheus at {url}" in result.stderr


def test_the_alert_fires_from_the_textfile_on_a_real_prometheus(prometheus_url: str, tmp_path: pathlib.Path) -> None:
    """The .prom file re-served over HTTP as node_exporter's textfile collector does, scraped by a real Prometheus
    loaded with collector/rules/llmmeter-alerts.yaml: LLMCostDriftFromInvoice fires for gpt-4o (+25 %), o3-mini
    (-100 %) and gpt-4.1-nano (+Inf), not for gpt-4o-mini (+0.77 %, under 5 %)."""
    path = tmp_path / "llmmeter-reconcile-openai.prom"
    with scripted(AdminAPI("openai")) as server:
        run_cli("openai", *window_args(server.base_url, prometheus_url), "--prometheus-textfile", str(path),
                env={"OPENAI_ADMIN_KEY": OPENAI_KEY})
    exposition = Reply(200, [("Content-Type", "text/plain; version=0.0.4")], path.read_bytes())
    with scripted(lambda request: exposition) as node:
        with prometheus_server(require_binary("prometheus"), tmp_path, {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES_FILE)],
            "scrape_configs": [{"job_name": "node", "static_configs": [{"targets": [node.base_url.split("//")[1]]}]}],
        }) as api:
            firing = 'ALERTS{alertname="LLMCostDriftFromInvoice", alertstate="firing"}'
            alerts = wait_until(lambda: len(api.vector(firing)) == 3 and api.vector(firing), 30, "three alerts firing")
    assert {labels["gen_ai_request_model"] for labels, _ in alerts} == {"gpt-4o", "o3-mini", "gpt-4.1-nano"}
    assert {labels["gen_ai_provider_name"] for labels, _ in alerts} == {"openai"}
