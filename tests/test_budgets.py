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
from guard_support import CountingServer, chat, guarded, wave
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
    """USD budget, AsyncOpenAI, 20 concurrent tasks with max_tokens: each call reserves its bound, priced at
    gpt-4o-mini's documented rates, and only the calls whose bounds fit beside the others are admitted."""
    bound = BOUND_INPUT * IN_RATE + 5 * OUT_RATE  # 25 tokens in (byte bound), max_tokens=5 out
    budgets.add(match="tenant=acme", limit=4.5 * bound, unit="usd", window="day", mode="hard")

    async def main(server):
        client = server.client(openai.AsyncOpenAI)
        server.gate = threading.Event()

        async def one():
            try:
                await chat(client, "hello world", max_tokens=5)
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
        # 4 bounds fit in 4.5 bounds; a 5th does not beside 4 in flight, nor does its tiktoken bound
        # (13 x $0.15/M + 5 x $0.60/M = 0.73 of a byte bound > the 0.5 left).
        assert server.requests == 4
    assert results.count("sent") == 4 and results.count("refused") == 16


# --- reservations under concurrency (50 callers) -------------------------------------------------------
# gpt-4o-mini's documented rates (https://platform.openai.com/docs/pricing): $0.15 / $0.60 per 1M tokens.
IN_RATE, OUT_RATE = 0.15 / 1e6, 0.60 / 1e6
# The prompt text llmmeter reads from [{"role": "user", "content": "hello world"}] is "user\nhello world":
# 16 UTF-8 bytes + 3 tokens per newline-separated piece (2) + 3 to prime the reply = 25 (the byte bound);
# tiktoken counts 4 tokens ("user", "\n", "hello", " world"), so its precise bound is 4 + 9 = 13.
BOUND_INPUT, PRECISE_INPUT = 25, 13


def acme_call(**kwargs):
    def call(client):
        with attribution.attributes(tenant="acme"):
            chat(client, "hello world", **kwargs)
    return call


def test_hard_token_budget_holds_with_50_concurrent_callers(tel):
    """A hard 1,000-token budget, waves of 50 threads at once, no max_tokens. The server reports 10 + 5
    tokens per call. Worked by hand from the documented rules (store.py, preflight.py):

    * waves 1-8: no output learned yet, so a call reserves 25 + 4096 tokens: more than the budget, so
      calls are admitted one at a time (nothing else in flight): 1 per wave;
    * then the largest of 8 learned outputs (5) is the output bound: a call reserves 25 + 5 = 30, or
      13 + 5 = 18 once tiktoken has counted its prompt (only when 30 does not fit beside the calls in flight).
      Spent 120, room 880: 29 x 30. Spent 555, room 445: 14 x 30 + 1 x 18. Spent 780, room 220: 7 x 30.
      Spent 885, room 115: 3 x 30 + 1 x 18. Spent 945, room 55: 1 x 30 + 1 x 18. Spent 975, room 25:
      nothing fits, nothing in flight: 1 call alone. Spent 990, room 10: 1 alone, the call that overruns.
      Spent 1,005; then every call is refused.
    """
    budget = budgets.add("tenant=acme: 1000 tokens/day hard")
    per_call = PROMPT + COMPLETION
    sent_per_wave = []
    with CountingServer(PROMPT, COMPLETION) as server:
        client = server.client()
        for _ in range(30):
            sent, refused = wave(server, client, 50, acme_call(), BudgetExceeded)
            assert sent + refused == 50
            sent_per_wave.append(sent)
            if sent == 0:
                break
        total = server.requests
    assert sent_per_wave == [1] * 8 + [29, 15, 7, 4, 2, 1, 1, 0]
    spent = budgets.spent(budget, "acme")
    assert spent == total * per_call == 1005
    assert 1000 <= spent <= 1000 + per_call  # the limit, plus at most one call's actual overrun


def test_hard_dollar_budget_holds_with_50_concurrent_callers(tel):
    """$0.0001 hard, waves of 50 threads with max_tokens=5: each call reserves its priced bound
    (25 x $0.15/M + 5 x $0.60/M = $6.75e-6; $4.95e-6 with its tiktoken count); it really costs
    10 x $0.15/M + 5 x $0.60/M = $4.5e-6. First wave: 14 byte bounds ($94.5e-6) + 1 tiktoken bound."""
    limit = 0.0001
    budget = budgets.add(match="tenant=acme", limit=limit, unit="usd", window="day", mode="hard")
    bound = BOUND_INPUT * IN_RATE + 5 * OUT_RATE
    actual = PROMPT * IN_RATE + COMPLETION * OUT_RATE
    sent_per_wave = []
    with CountingServer(PROMPT, COMPLETION) as server:
        client = server.client()
        for _ in range(30):
            sent, _ = wave(server, client, 50, acme_call(max_tokens=5), BudgetExceeded)
            sent_per_wave.append(sent)
            if sent == 0:
                break
        total = server.requests
    precise = PRECISE_INPUT * IN_RATE + 5 * OUT_RATE
    assert sent_per_wave[0] == int(limit // bound) + 1 == 15  # concurrent: as many bounds as fit
    assert 14 * bound + precise <= limit < 14 * bound + 2 * precise
    assert sent_per_wave[-1] == 0
    spent = budgets.spent(budget, "acme")
    assert spent == pytest.approx(total * actual)
    assert limit <= spent <= limit + actual  # the limit, plus at most one call's actual overrun


def test_preflight_tokenizes_only_when_the_decision_depends_on_it(tel, monkeypatch):
    """A 450,000-character prompt under hard token budgets: the byte bound decides (no tiktoken) when it
    fits, and when nothing is in flight; tiktoken runs once, for a call whose bound does not fit beside a
    call in flight and whose precise count does."""
    from llmmeter import estimate

    counted: list[int] = []
    real = estimate.count_tokens

    def counting(text, model):
        counted.append(len(text))
        return real(text, model)

    monkeypatch.setattr(estimate, "count_tokens", counting)
    huge = "word " * 90_000
    budgets.add("tenant=big: 1000000 tokens/day hard")  # bound 450,006 + output: fits
    budgets.add("tenant=small: 1000 tokens/day hard")  # bound does not fit, nothing in flight: alone
    budgets.add("tenant=tight: 100 tokens/day hard")
    with CountingServer(PROMPT, COMPLETION) as server:
        client = server.client()
        for tenant in ("big", "small"):
            with attribution.attributes(tenant=tenant):
                chat(client, huge, max_tokens=5)
                chat(client, huge, max_tokens=5)
        assert server.requests == 4 and counted == []
        assert budgets.enforcer().preflight_tokenizations == 0

        # One call held in flight reserving 25 + 5 = 30 of 100. The next prompt, "user\n" + "hello " x 20,
        # bounds at 125 + 9 + 5 = 139 (> 70 left): only its tiktoken count (about 25 + 9 + 5) can decide.
        server.gate = threading.Event()

        def first_call():
            with attribution.attributes(tenant="tight"):
                chat(client, "hello world", max_tokens=5)

        first = threading.Thread(target=first_call)
        first.start()
        with server.changed:
            assert server.changed.wait_for(lambda: server.requests == 5, timeout=60)
        errors = []

        def second():
            with attribution.attributes(tenant="tight"):
                try:
                    chat(client, "hello " * 20, max_tokens=5)
                except BudgetExceeded as exc:
                    errors.append(exc)

        t = threading.Thread(target=second)
        t.start()
        with server.changed:
            assert server.changed.wait_for(lambda: server.requests == 6 or errors, timeout=60)
        server.gate.set()
        first.join()
        t.join()
        assert not errors and server.requests == 6
    assert counted == [len("user\n" + "hello " * 20)]
    assert budgets.enforcer().preflight_tokenizations == 1


def test_reservation_bounds_by_hand():
    """The bound of one call, from its RequestInfo (the translator's output), worked by hand."""
    from llmmeter.budgets.preflight import DEFAULT_OUTPUT_TOKENS, OutputBounds, Preflight
    from llmmeter.call import RequestInfo

    def request(operation="chat", prompt="user\nhello world", **attrs):
        return RequestInfo(provider="openai", operation=operation, model="gpt-4o-mini", attributes=attrs,
                           prompt_text=lambda: prompt)

    outputs = OutputBounds()
    # No max_tokens, nothing learned: 25 + 4096.
    assert Preflight(request(), outputs).amount("tokens") == BOUND_INPUT + DEFAULT_OUTPUT_TOKENS == 25 + 4096
    # max_tokens=50 and n=3 choices: 25 + 150; in dollars at the documented rates.
    three = Preflight(request(**{names.REQUEST_MAX_TOKENS: 50, names.REQUEST_CHOICE_COUNT: 3}), outputs)
    assert three.amount("tokens") == 175
    assert three.amount("usd") == pytest.approx(25 * IN_RATE + 150 * OUT_RATE)
    assert three.amount("calls") == 1.0
    # An embedding has no output: its prompt's bound only ("hello world": 11 bytes + 3 + 3).
    assert Preflight(request("embeddings", "hello world"), outputs).amount("tokens") == 17
    # Non-ASCII counts UTF-8 bytes: "josé" is 5 bytes, + 3 + 3.
    assert Preflight(request("embeddings", "josé"), outputs).amount("tokens") == 11
    # Learned: 7 outputs are not enough; the 8th makes the largest of them the bound, per choice.
    for output in (3, 9, 4, 2, 5, 1, 6):
        outputs.observe("gpt-4o-mini", output)
    assert Preflight(request(), outputs).output == DEFAULT_OUTPUT_TOKENS
    outputs.observe("gpt-4o-mini", 14, choices=2)  # 7 per choice
    assert Preflight(request(), outputs).output == 9
    assert Preflight(request(**{names.REQUEST_CHOICE_COUNT: 2}), outputs).output == 18
    # The precise count is tiktoken's (4 tokens for "user\nhello world") + 9, never above the bound.
    call = Preflight(request(**{names.REQUEST_MAX_TOKENS: 5}), outputs)
    assert call.amount("tokens") == 30 and call.amount("tokens", precise=True) == PRECISE_INPUT + 5 == 18
    assert call.tokenized
    # The precise count is the estimate the span later sets beside the provider's count.
    assert call.request.estimated_input == PRECISE_INPUT


def test_dollar_reservation_prices_at_the_highest_rate_the_call_could_be_billed():
    """A hard $-budget reserves at the dearest input-side rate a call could be billed: for Claude Sonnet 4.5
    that is the 1-hour cache write ($6.00 per 1M, Anthropic's published price), not plain input ($3.00);
    output at $15.00 per 1M. OpenAI's priority tier doubles gpt-4o-mini's rates ($0.25/$1.00 per 1M vs
    $0.15/$0.60: OpenAI's published priority pricing)."""
    from llmmeter.budgets.preflight import OutputBounds, Preflight
    from llmmeter.call import RequestInfo

    prompt = "user\nhello world"  # 25 tokens at most (bytes + chat overhead, see BOUND_INPUT)
    claude = RequestInfo(provider="anthropic", operation="chat", model="claude-sonnet-4-5",
                         attributes={names.REQUEST_MAX_TOKENS: 100}, prompt_text=lambda: prompt)
    amount = Preflight(claude, OutputBounds()).amount("usd")
    assert amount == pytest.approx((BOUND_INPUT * 6.00 + 100 * 15.00) / 1e6)
    priority = RequestInfo(provider="openai", operation="chat", model="gpt-4o-mini", prompt_text=lambda: prompt,
                           attributes={names.REQUEST_MAX_TOKENS: 100, names.OPENAI_REQUEST_SERVICE_TIER: "priority"})
    assert Preflight(priority, OutputBounds()).amount("usd") == pytest.approx((BOUND_INPUT * 0.25 + 100 * 1.00) / 1e6)
