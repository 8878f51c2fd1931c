"""Budgets: declarations (API, env, YAML/JSON file), soft crossings, hard refusals before anything is
sent (proved by a server that counts requests), and no overshoot under threads and asyncio."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from datetime import datetime, timedelta, timezone

import llmmeter.attribution as attribution
import openai
import pytest
from guard_support import CountingServer, chat, guarded
from llmmeter import budgets, names
from llmmeter.config import ConfigError
from llmmeter.errors import BudgetExceeded
from llmmeter.hooks import GuardError

PROMPT, COMPLETION = 10, 5  # what CountingServer reports for every call


@pytest.fixture
def tel(telemetry):
    with guarded(telemetry):
        yield telemetry


# gpt-4o-mini as published (https://platform.openai.com/docs/pricing, and the shipped prices.json):
# $0.15 per million input tokens, $0.60 per million output tokens.
GPT_4O_MINI_IN_PER_M, GPT_4O_MINI_OUT_PER_M = 0.15, 0.60


def call_cost() -> float:
    """One CountingServer call, by hand: 10 x $0.15/M + 5 x $0.60/M = $0.0000015 + $0.000003 = $0.0000045."""
    cost = (PROMPT * GPT_4O_MINI_IN_PER_M + COMPLETION * GPT_4O_MINI_OUT_PER_M) / 1_000_000
    assert cost == pytest.approx(0.0000045)
    return cost


# --- declarations ----------------------------------------------------------------------------------


def test_one_line_specs_cover_the_documented_examples():
    acme = budgets.parse_spec("tenant=acme: $50/day hard")
    assert (acme.key, acme.value, acme.limit, acme.unit, acme.window_seconds, acme.mode) == (
        "tenant", "acme", 50.0, "usd", 86400, "hard")
    users = budgets.parse_spec("user=*: 200k tokens/hour")
    assert (users.key, users.value, users.limit, users.unit, users.window_seconds, users.mode) == (
        "user", "*", 200_000.0, "tokens", 3600, "soft")
    assert users.wildcard and not acme.wildcard
    summarize = budgets.parse_spec("feature=summarize: $5/hour")
    assert summarize.limit == 5.0 and summarize.window_seconds == 3600
    assert budgets.parse_spec(acme.spec) == acme  # the spec round-trips


def test_api_add_accepts_spec_mapping_and_keywords(tel):
    a = budgets.add("tenant=acme: $50/day", mode="hard")
    b = budgets.add(match="feature=summarize", limit=5, unit="usd", window="hour")
    c = budgets.add({"match": {"user": "*"}, "limit": "200k tokens", "window": "1h", "name": "per-user"})
    assert a.mode == "hard" and b.unit == "usd" and c.name == "per-user" and c.limit == 200_000
    assert budgets.budgets() == (a, b, c)
    with pytest.raises(ConfigError, match=r"budget\.window.*'fortnight'"):
        budgets.add(match="tenant=x", limit=1, unit="usd", window="fortnight")


def test_budget_file_yaml_and_json(tmp_path, tel):
    yaml_file = tmp_path / "budgets.yaml"
    yaml_file.write_text(
        "budgets:\n"
        "  - tenant=acme: $50/day hard\n"
        "  - match: user=*\n    limit: 200k tokens\n    window: hour\n"
        "  - {match: {feature: summarize}, limit: 5, unit: usd, window: 1h, thresholds: [0.5, 0.9]}\n"
    )
    loaded = budgets.load(yaml_file)
    assert [b.spec for b in loaded] == [
        "tenant=acme: $50/day hard", "user=*: 200000 tokens/hour soft", "feature=summarize: $5/hour soft"]
    assert loaded[2].thresholds == (0.5, 0.9)
    json_file = tmp_path / "budgets.json"
    json_file.write_text(json.dumps([{"spec": "model=gpt-4o: 1000 calls/day", "mode": "hard"}]))
    [model_budget] = budgets.load_file(json_file)
    assert (model_budget.key, model_budget.unit, model_budget.mode) == ("model", "calls", "hard")


@pytest.mark.parametrize(("body", "expected"), [
    ("- match: tenant=acme\n  limit: 50 euros\n  window: day\n",
     r"budgets\[0\]\.limit: unknown unit 'euros'.*'50 euros'"),
    ("- match: tenant=acme\n  limit: 50\n  window: day\n", r"budgets\[0\]\.limit: no unit.*50"),
    ("- match: tenant=acme\n  limit: $5\n  window: day\n  mode: strict\n", r"budgets\[0\]\.mode: .*'strict'"),
    ("- match: tenant=acme\n  window: day\n", r"budgets\[0\]\.limit: missing required field"),
    ("- {match: tenant=acme, limit: $5, window: day, colour: red}\n", r"budgets\[0\]\.colour: unknown field.*'red'"),
    ("- 'tenant acme: $5/day'\n", r"budgets\[0\]: spec match: expected 'key=value'.*'tenant acme'"),
    ("- match: tenant=acme\n  limit: $5\n  window: 0\n", r"budgets\[0\]\.window: .*0"),
    ("budgets: [unclosed\n", r"not valid YAML"),
    ("budgets: 3\n", r"budgets: expected a list, got 3"),
])
def test_malformed_budget_file_names_file_field_and_value(tmp_path, body, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(body)
    with pytest.raises(ConfigError, match=expected) as info:
        budgets.load(path)
    assert str(path) in str(info.value)
    assert budgets.budgets() == ()  # nothing half-loaded


def test_env_configuration(tmp_path, tel):
    path = tmp_path / "b.yaml"
    path.write_text("- tenant=acme: $50/day hard\n")
    found = budgets.configure_from_env({
        budgets.ENV_BUDGETS_FILE: str(path),
        budgets.ENV_BUDGETS: "user=*: 200k tokens/hour; feature=summarize: $5/hour",
        budgets.ENV_BUDGET_STORE_ON_ERROR: "closed",
    })
    assert [b.key for b in found] == ["tenant", "user", "feature"]
    assert budgets.enforcer().on_store_error == "closed"
    with pytest.raises(ConfigError, match=r"LLMMETER_BUDGETS: item 1: spec window.*'forever'"):
        budgets.configure_from_env({budgets.ENV_BUDGETS: "tenant=a: $1/day; tenant=b: $1/forever"})
    with pytest.raises(ConfigError, match="LLMMETER_BUDGET_STORE_ON_ERROR"):
        budgets.configure_from_env({budgets.ENV_BUDGET_STORE_ON_ERROR: "sometimes"})
    with pytest.raises(ConfigError, match=rf"budget file {tmp_path / 'missing.yaml'}: cannot read"):
        budgets.configure_from_env({budgets.ENV_BUDGETS_FILE: str(tmp_path / "missing.yaml")})


# --- soft mode ---------------------------------------------------------------------------------------


def test_soft_budget_reports_80_and_100_percent_once_and_never_blocks(tel, caplog):
    budget = budgets.add("tenant=acme: 100 tokens/day")  # each call: 15 tokens
    caplog.set_level(logging.WARNING, logger="llmmeter.budgets")
    with CountingServer(PROMPT, COMPLETION) as server, attribution.attributes(tenant="acme"):
        client = server.client()
        for _ in range(8):
            chat(client)
        assert server.requests == 8  # soft: nothing refused past 100%

    spans = tel.llm_spans()
    crossings = [(i, e.attributes[names.LABEL_THRESHOLD]) for i, s in enumerate(spans) for e in s.events
                 if e.name == names.EVENT_BUDGET_THRESHOLD]
    assert crossings == [(5, "0.8"), (6, "1")]  # 90 tokens after call 6, 105 after call 7
    event = next(e for e in spans[6].events if e.name == names.EVENT_BUDGET_THRESHOLD)
    assert event.attributes[names.BUDGET_VALUE] == "acme" and event.attributes[names.BUDGET_SPENT] == 105
    assert event.attributes[names.LABEL_BUDGET] == budget.name
    assert tel.metric_total(names.METRIC_BUDGET_CROSSINGS, **{names.LABEL_THRESHOLD: "0.8"}) == 1
    assert tel.metric_total(names.METRIC_BUDGET_CROSSINGS, **{names.LABEL_THRESHOLD: "1"}) == 1
    assert [r for r in caplog.records if "crossed 80%" in r.getMessage()]
    assert [r for r in caplog.records if "crossed 100%" in r.getMessage()]
    [gauge] = tel.metric_points(names.METRIC_BUDGET_SPEND)
    assert gauge.value == pytest.approx(120 / 100)
    assert budgets.spent(budget, "acme") == 120


def test_calls_outside_a_budgets_scope_are_not_counted(tel):
    budgets.add("tenant=acme: 1 calls/day hard")
    with CountingServer() as server:
        client = server.client()
        with attribution.attributes(tenant="globex"):
            chat(client)
            chat(client)
        chat(client)  # no tenant at all
        assert server.requests == 3


# --- hard mode ---------------------------------------------------------------------------------------


def test_hard_budget_refuses_before_sending_and_says_why(tel):
    cost = call_cost()
    budget = budgets.add(match="tenant=acme", limit=2.5 * cost, unit="usd", window="day", mode="hard")
    with CountingServer(PROMPT, COMPLETION) as server, attribution.attributes(tenant="acme"):
        client = server.client()
        for _ in range(3):
            chat(client)
        with pytest.raises(BudgetExceeded) as info:
            chat(client)
        with pytest.raises(GuardError):  # and it stays refused
            chat(client)
        assert server.requests == 3  # zero requests after the limit

    error = info.value
    assert error.budget == budget and error.value == "acme" and error.unit == "usd"
    assert error.spent == pytest.approx(3 * cost) and error.limit == pytest.approx(2.5 * cost)
    now = datetime.now(timezone.utc)
    assert now < error.resets_at <= now + timedelta(days=1)
    assert (error.resets_at.hour, error.resets_at.minute, error.resets_at.second) == (0, 0, 0)  # UTC midnight
    assert "tenant=acme" in str(error) and "resets at" in str(error)

    blocked = tel.llm_spans()[3]
    assert blocked.attributes[names.LLMMETER_BLOCKED] is True
    assert blocked.attributes[names.ERROR_TYPE] == "llmmeter.errors.BudgetExceeded"
    [event] = [e for e in blocked.events if e.name == names.EVENT_BUDGET_EXCEEDED]
    assert event.attributes[names.BUDGET_LIMIT] == pytest.approx(2.5 * cost)
    assert tel.metric_total(names.METRIC_BUDGET_BLOCKED, **{names.LABEL_BUDGET: budget.name}) == 2
    assert tel.metric_total(names.METRIC_REQUESTS, **{names.LABEL_STATUS: "blocked"}) == 2


def test_wildcard_budget_counts_each_value_separately(tel):
    budgets.add("user=*: 2 calls/hour hard")
    with CountingServer() as server:
        client = server.client()
        with attribution.attributes(user="alice"):
            chat(client)
            chat(client)
            with pytest.raises(BudgetExceeded) as info:
                chat(client)
        with attribution.attributes(user="bob"):
            chat(client)
        assert server.requests == 3
    assert info.value.value == "alice"


def test_failed_call_releases_its_reservation(tel):
    """A token budget's reservation is given back when the call fails without output."""
    budget = budgets.add("tenant=acme: 100 tokens/day hard")
    with attribution.attributes(tenant="acme"):
        client = openai.OpenAI(base_url="http://127.0.0.1:9/v1", api_key="k", max_retries=0)  # nothing listens
        with pytest.raises(openai.APIConnectionError):
            chat(client, max_tokens=50)
    assert budgets.enforcer().store.spent(f"{budget.name}|acme|{budget.window(datetime.now().timestamp())[0]}") == (
        0.0, 0.0)


# --- concurrency ---------------------------------------------------------------------------------------


def test_threads_never_send_more_than_the_limit(tel):
    """20 threads call at once while the server holds every admitted call open. A check of "spent <
    limit" would let all 20 through (nothing is spent until a call returns); reservations admit 5."""
    budgets.add("tenant=acme: 5 calls/day hard")
    outcomes: list[str] = []
    with CountingServer() as server, attribution.attributes(tenant="acme"):
        server.gate = threading.Event()
        client = server.client()

        def worker():
            with attribution.attributes(tenant="acme"):  # threads do not inherit the caller's context
                try:
                    chat(client)
                    outcomes.append("sent")
                except BudgetExceeded:
                    with server.changed:
                        outcomes.append("refused")
                        server.changed.notify_all()

        threads = [threading.Thread(target=worker) for _ in range(20)]
        for t in threads:
            t.start()
        with server.changed:  # wait until every caller is either held open at the server or refused
            assert server.changed.wait_for(lambda: server.requests + outcomes.count("refused") >= 20, timeout=60)
        sent_while_held = server.requests
        server.gate.set()
        for t in threads:
            t.join()
        assert sent_while_held == 5 and server.requests == 5
    assert outcomes.count("sent") == 5 and outcomes.count("refused") == 15


def test_asyncio_dollar_budget_is_not_overshot(tel):
    """USD budget, AsyncOpenAI, 20 concurrent tasks: admitted calls' expected cost fits the limit."""
    cost = call_cost()
    budgets.add(match="tenant=acme", limit=4.5 * cost, unit="usd", window="day", mode="hard")

    async def main(server):
        client = server.client(openai.AsyncOpenAI)
        await chat(client)  # one finished call: spent = cost, and the expected cost is learned
        server.arrived.acquire()  # that call's arrival
        server.gate = threading.Event()

        async def one():
            try:
                await chat(client)
                return "sent"
            except BudgetExceeded:
                return "refused"

        tasks = [asyncio.ensure_future(one()) for _ in range(20)]
        for _ in range(4):  # four calls held open at the server...
            await asyncio.to_thread(server.arrived.acquire)
        await asyncio.sleep(0)  # ...and every other task has run its first step (refused or waiting)
        server.gate.set()
        return await asyncio.gather(*tasks)

    with CountingServer(PROMPT, COMPLETION) as server, attribution.attributes(tenant="acme"):
        results = asyncio.run(main(server))
        # 1 warm-up + 4 admitted: c + 4c = 5c >= 4.5c; the 5th concurrent call would have been refused.
        assert server.requests == 5
    assert results.count("sent") == 4 and results.count("refused") == 16
