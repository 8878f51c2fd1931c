"""Every way a provider bills (issue 12 item 3) and the usage bound (issue 9 item 4), with hand-computed values.

Rates in the test table are per token, written as "$X per million" in the comments; every expected figure is
tokens x rate worked out by hand next to the assertion, never by the code under test.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from llmmeter import pricing
from llmmeter.config import ConfigError
from llmmeter.pricing import bound_cost, price_usage, set_price_table
from llmmeter.pricing.table import parse_price_data
from llmmeter.usage import Usage

TABLE: dict[str, Any] = {
    "_meta": {"version": "billing-test"},
    # GPT-5.4-like: $2.50 / $15 per M, cache read $0.25; flex $1.25 / $7.50 (read $0.13); priority $5 / $30;
    # batch $1.25 / $7.50; above 272k input $5 / $22.50.
    "tiered-gpt": {
        "input_cost_per_token": 2.5e-06, "output_cost_per_token": 1.5e-05, "cache_read_input_token_cost": 2.5e-07,
        "input_cost_per_token_flex": 1.25e-06, "output_cost_per_token_flex": 7.5e-06,
        "cache_read_input_token_cost_flex": 1.3e-07,
        "input_cost_per_token_priority": 5e-06, "output_cost_per_token_priority": 3e-05,
        "input_cost_per_token_batches": 1.25e-06, "output_cost_per_token_batches": 7.5e-06,
        "input_cost_per_token_above_272k_tokens": 5e-06, "output_cost_per_token_above_272k_tokens": 2.25e-05,
        "max_output_tokens": 128000, "mode": "chat",
    },
    # Claude-Sonnet-like: $3 / $15, read $0.30, 5-minute write $3.75, 1-hour write $6; batch half.
    "claude-like": {
        "input_cost_per_token": 3e-06, "output_cost_per_token": 1.5e-05, "cache_read_input_token_cost": 3e-07,
        "cache_creation_input_token_cost": 3.75e-06, "cache_creation_input_token_cost_above_1hr": 6e-06,
        "input_cost_per_token_batches": 1.5e-06, "output_cost_per_token_batches": 7.5e-06, "mode": "chat",
    },
    # gpt-4o-audio-like: text $2.50 / $10, audio in $40, audio out $80.
    "audio-model": {
        "input_cost_per_token": 2.5e-06, "output_cost_per_token": 1e-05,
        "input_cost_per_audio_token": 4e-05, "output_cost_per_audio_token": 8e-05, "mode": "chat",
    },
    "preview-model": {"no_price": "free preview, not billed per token", "source": "https://example.invalid/p"},
}


@pytest.fixture(autouse=True)
def _table(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for var in ("LLMMETER_PRICE_FILE", "LLMMETER_MODEL_ALIASES", "LLMMETER_DISCOUNTS"):
        monkeypatch.delenv(var, raising=False)
    pricing._reset_for_tests()
    set_price_table(parse_price_data(TABLE, "<test>"))
    yield
    pricing._reset_for_tests()


# --- service tiers ------------------------------------------------------------------------------

def test_flex_tier_uses_flex_rates_and_says_so() -> None:
    cost = price_usage("openai", "tiered-gpt", Usage(input=1000, output=500, cache_read=200, service_tier="flex"))
    # 800 x $1.25/M + 200 x $0.13/M + 500 x $7.50/M = 0.001 + 0.000026 + 0.00375
    assert cost.usd == pytest.approx(0.004776)
    assert cost.service_tier == "flex" and cost.source == "local"


def test_priority_tier() -> None:
    cost = price_usage("openai", "tiered-gpt", Usage(input=1000, output=500, service_tier="priority"))
    assert cost.usd == pytest.approx(1000 * 5e-06 + 500 * 3e-05)  # 0.005 + 0.015
    assert cost.service_tier == "priority"


@pytest.mark.parametrize("tier", ["default", "auto", "scale", "standard", None])
def test_default_tiers_bill_standard(tier: str | None) -> None:
    cost = price_usage("openai", "tiered-gpt", Usage(input=1000, output=500, service_tier=tier))
    assert cost.usd == pytest.approx(0.0025 + 0.0075)  # 1000 x $2.50/M + 500 x $15/M
    assert cost.service_tier == "standard"


def test_batch_tier_for_anthropic() -> None:
    cost = price_usage("anthropic", "claude-like", Usage(input=2000, output=1000, service_tier="batch"))
    assert cost.usd == pytest.approx(2000 * 1.5e-06 + 1000 * 7.5e-06)  # 0.003 + 0.0075
    assert cost.service_tier == "batch"


def test_tier_without_rates_falls_back_to_standard_visibly() -> None:
    cost = price_usage("anthropic", "claude-like", Usage(input=1000, output=100, service_tier="priority"))
    assert cost.usd == pytest.approx(0.003 + 0.0015)
    assert cost.service_tier == "standard"  # the span shows the priority call was priced at standard rates


# --- long context -------------------------------------------------------------------------------

def test_long_context_threshold_272k() -> None:
    at = price_usage("openai", "tiered-gpt", Usage(input=272_000, output=1000))
    assert at.usd == pytest.approx(272_000 * 2.5e-06 + 1000 * 1.5e-05)  # 0.68 + 0.015: not above 272k
    assert at.long_context_threshold is None
    above = price_usage("openai", "tiered-gpt", Usage(input=300_000, output=1000))
    assert above.usd == pytest.approx(300_000 * 5e-06 + 1000 * 2.25e-05)  # 1.5 + 0.0225
    assert above.long_context_threshold == 272_000


# --- audio tokens -------------------------------------------------------------------------------

def test_audio_tokens_at_their_own_rates() -> None:
    usage = Usage(input=1000, output=600, audio_input=400, audio_output=500)
    cost = price_usage("openai", "audio-model", usage)
    # text in 600 x $2.50/M = 0.0015; audio in 400 x $40/M = 0.016; text out 100 x $10/M = 0.001;
    # audio out 500 x $80/M = 0.04
    assert cost.usd == pytest.approx(0.0585)
    assert cost.breakdown["input_audio"] == pytest.approx(0.016)
    assert cost.breakdown["output_audio"] == pytest.approx(0.04)


def test_audio_count_larger_than_input_is_clamped() -> None:
    cost = price_usage("openai", "audio-model", Usage(input=100, output=0, audio_input=400))
    assert cost.usd == pytest.approx(100 * 4e-05)  # all 100 input tokens audio, never more


# --- provider-reported cost ---------------------------------------------------------------------

def test_provider_cost_wins_and_is_marked() -> None:
    cost = price_usage("openrouter", "tiered-gpt", Usage(input=1000, output=500, provider_cost=0.0123))
    assert cost.usd == 0.0123 and cost.source == "provider" and cost.priced


def test_provider_cost_prices_a_model_the_table_lacks() -> None:
    cost = price_usage("openrouter", "some/unlisted-model", Usage(input=10, output=10, provider_cost=0.0004))
    assert (cost.usd, cost.priced, cost.source) == (0.0004, True, "provider")


# --- discounts ----------------------------------------------------------------------------------

def test_env_discounts_most_specific_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMMETER_DISCOUNTS", "openai=0.8, openai/tiered-*=0.5")
    extra = {"plain-gpt": {"input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06}}
    pricing._reset_for_tests()
    pricing.extend({**{k: v for k, v in TABLE.items() if k != "_meta"}, **extra})
    tiered = price_usage("openai", "tiered-gpt", Usage(input=1000, output=500))
    assert tiered.usd == pytest.approx((0.0025 + 0.0075) * 0.5) and tiered.discount == 0.5
    plain = price_usage("openai", "plain-gpt", Usage(input=1_000_000, output=0))
    assert plain.usd == pytest.approx(1.0 * 0.8) and plain.discount == 0.8
    # another provider's call to a model of the same name: list price
    other = price_usage("anthropic", "claude-like", Usage(input=1_000_000, output=0))
    assert other.usd == pytest.approx(3.0) and other.discount is None


def test_discount_in_price_file_meta() -> None:
    data = {**TABLE, "_meta": {"version": "x", "discounts": {"anthropic/claude-*": 0.75}}}
    set_price_table(parse_price_data(data, "<test>"))
    cost = price_usage("anthropic", "claude-like", Usage(input=1_000_000, output=0))
    assert cost.usd == pytest.approx(3.0 * 0.75) and cost.discount == 0.75


def test_provider_cost_is_not_discounted_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMMETER_DISCOUNTS", "openai=0.5")
    pricing._reset_for_tests()
    pricing.extend({k: v for k, v in TABLE.items() if k != "_meta"})
    assert price_usage("openai", "tiered-gpt", Usage(input=1, output=1, provider_cost=0.01)).usd == 0.01


@pytest.mark.parametrize("raw", ["openai=1.5", "openai=0", "openai=abc", "=0.5", "openai", "openai=nan"])
def test_bad_discount_variable_fails_at_startup(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("LLMMETER_DISCOUNTS", raw)
    pricing._reset_for_tests()
    with pytest.raises(ConfigError, match="LLMMETER_DISCOUNTS"):
        pricing.get_price_table()


# --- cache economics ----------------------------------------------------------------------------

def test_cache_savings_and_write_premium() -> None:
    usage = Usage(input=10_000, output=100, cache_read=6000, cache_creation=3000, cache_creation_1h=1000)
    cost = price_usage("anthropic", "claude-like", usage)
    # reads: 6000 x ($3 - $0.30)/M = 0.0162 saved
    assert cost.cache_savings == pytest.approx(0.0162)
    # writes: 2000 x ($3.75 - $3)/M + 1000 x ($6 - $3)/M = 0.0015 + 0.003 paid above uncached input
    assert cost.cache_write_premium == pytest.approx(0.0045)


# --- absurd usage is not priced (issue 9 item 4) --------------------------------------------------

@pytest.mark.parametrize("usage", [
    Usage(input=10**13, output=1),
    Usage(input=2.5e6, output=1),  # type: ignore[arg-type]
    Usage(input=True, output=1),  # type: ignore[arg-type]
    Usage(input=-1, output=1),
    Usage(input=10, output=10, cache_read=10**12 + 1),
    Usage(input=10, output=10, reasoning=1.5),  # type: ignore[arg-type]
    Usage(input=10, output="10"),  # type: ignore[arg-type]
    Usage(input=10, output=10, provider_cost=float("nan")),
])
def test_absurd_usage_is_unpriced_with_a_reason(usage: Usage) -> None:
    cost = price_usage("openai", "tiered-gpt", usage)
    assert (cost.usd, cost.priced, cost.reason) == (None, False, "invalid_usage")


def test_the_bound_itself_is_priced() -> None:
    cost = price_usage("openai", "audio-model", Usage(input=10**12, output=0))
    assert cost.priced and cost.usd == pytest.approx(10**12 * 2.5e-06)  # $2.5M: the documented maximum


# --- explicit "no price" ------------------------------------------------------------------------

def test_no_price_entry_is_unpriced_without_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="llmmeter"):
        cost = price_usage("google", "preview-model", Usage(input=10, output=10))
    assert (cost.priced, cost.reason, cost.price_key) == (False, "no_price", "preview-model")
    assert not caplog.records


# --- bound_cost ---------------------------------------------------------------------------------

def test_bound_cost_standard() -> None:
    assert bound_cost("openai", "tiered-gpt", 1000, 500) == pytest.approx(1000 * 2.5e-06 + 500 * 1.5e-05)  # 0.01


def test_bound_cost_covers_one_hour_cache_writes() -> None:
    # the highest input-side rate is the 1-hour write, $6/M: 1000 x $6/M + 500 x $15/M
    assert bound_cost("anthropic", "claude-like", 1000, 500) == pytest.approx(0.006 + 0.0075)
    actual = price_usage("anthropic", "claude-like", Usage(input=1000, output=500, cache_creation=1000,
                                                            cache_creation_1h=1000))
    assert actual.usd == pytest.approx(0.006 + 0.0075)  # the worst case is reached, never exceeded


def test_bound_cost_long_context_service_tier_and_default_output() -> None:
    assert bound_cost("openai", "tiered-gpt", 300_000, 100) == pytest.approx(1.5 + 100 * 2.25e-05)
    assert bound_cost("openai", "tiered-gpt", 1000, 500, service_tier="priority") == pytest.approx(0.005 + 0.015)
    # no max_tokens: the entry's max_output_tokens (128,000 x $15/M = 1.92) bounds the output
    assert bound_cost("openai", "tiered-gpt", 1000, None) == pytest.approx(0.0025 + 1.92)


def test_bound_cost_unknowns() -> None:
    assert bound_cost("openai", "no-such-model", 10, 10) is None
    assert bound_cost("anthropic", "claude-like", 10, None) is None  # no max_tokens, no max_output_tokens
    assert bound_cost("openai", "preview-model", 10, 10) is None
    assert bound_cost("openai", "tiered-gpt", 10**13, 10) is None
    assert bound_cost("openai", "tiered-gpt", 2.5, 10) is None  # type: ignore[arg-type]
    assert bound_cost("ollama", "llama3", 10_000, 10_000) == 0.0


def test_bound_cost_discounted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMMETER_DISCOUNTS", "openai=0.8")
    pricing._reset_for_tests()
    pricing.extend({k: v for k, v in TABLE.items() if k != "_meta"})
    assert bound_cost("openai", "tiered-gpt", 1000, 500) == pytest.approx(0.01 * 0.8)
