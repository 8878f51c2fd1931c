"""The cost formula and the public pricing API, checked against hand computations.

Prices below are written per MILLION tokens in comments and per token in the tables (the file unit),
so a 1000x unit slip (OpenLIT prices per 1K tokens, LiteLLM per token) cannot pass.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from llmmeter import pricing
from llmmeter.pricing import Cost, get_price_table, price_usage, set_price_table
from llmmeter.pricing.table import parse_price_data
from llmmeter.usage import Usage

FIXTURES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
PER_M = 1e-6  # USD per token for "1 USD per million tokens"

TEST_TABLE = {
    "_meta": {"version": "test-1"},
    # chat: $2/M in, $8/M out, cached read $0.50/M
    "chat-model": {"input_cost_per_token": 2 * PER_M, "output_cost_per_token": 8 * PER_M,
                   "cache_read_input_token_cost": 0.5 * PER_M, "mode": "chat"},
    # Anthropic-like: $3/M in, $15/M out, read $0.30/M, 5m write $3.75/M, 1h write $6/M, >200k tier $6/M & $22.50/M
    "claude-like": {"input_cost_per_token": 3 * PER_M, "output_cost_per_token": 15 * PER_M,
                    "cache_read_input_token_cost": 0.3 * PER_M, "cache_creation_input_token_cost": 3.75 * PER_M,
                    "cache_creation_input_token_cost_above_1hr": 6 * PER_M,
                    "input_cost_per_token_above_200k_tokens": 6 * PER_M,
                    "output_cost_per_token_above_200k_tokens": 22.5 * PER_M, "mode": "chat"},
    # reasoning priced apart: $1/M in, $4/M out, $10/M reasoning
    "reasoner": {"input_cost_per_token": 1 * PER_M, "output_cost_per_token": 4 * PER_M,
                 "output_cost_per_reasoning_token": 10 * PER_M, "mode": "chat"},
    # no cache prices at all: cached tokens fall back to the input rate
    "plain": {"input_cost_per_token": 1 * PER_M, "output_cost_per_token": 2 * PER_M},
    # embeddings: $0.10/M input; an output price must be ignored
    "embedder": {"input_cost_per_token": 0.1 * PER_M, "output_cost_per_token": 99 * PER_M, "mode": "embedding"},
}


@pytest.fixture(autouse=True)
def _clean_pricing(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("LLMMETER_PRICE_FILE", raising=False)
    monkeypatch.delenv("LLMMETER_MODEL_ALIASES", raising=False)
    pricing._reset_for_tests()
    yield
    pricing._reset_for_tests()


@pytest.fixture
def fixtures_dir() -> str:
    return FIXTURES_DIR


@pytest.fixture
def test_table() -> None:
    set_price_table(parse_price_data(TEST_TABLE, "<test>"))


def test_chat_call(test_table: None) -> None:
    cost = price_usage("openai", "chat-model", Usage(input=1000, output=500))
    # 1000 * $2/M + 500 * $8/M = 0.002 + 0.004 = 0.006
    assert cost == Cost(pytest.approx(0.006), True, "chat-model", "test-1")
    assert cost.breakdown == pytest.approx({"input": 0.002, "cache_read": 0.0, "cache_creation": 0.0,
                                            "cache_creation_1h": 0.0, "output": 0.004, "reasoning": 0.0})


def test_openai_cached_input_is_a_subset_of_input(test_table: None) -> None:
    # OpenAI semantics: prompt_tokens=1000 INCLUDES cached_tokens=800 -> 200 uncached.
    cost = price_usage("openai", "chat-model", Usage(input=1000, output=100, cache_read=800))
    # 200 * $2/M + 800 * $0.50/M + 100 * $8/M = 0.0004 + 0.0004 + 0.0008 = 0.0016
    assert cost.usd == pytest.approx(0.0016)
    assert cost.breakdown["cache_read"] == pytest.approx(0.0004)


def test_cached_tokens_without_cache_price_fall_back_to_input_rate(test_table: None) -> None:
    cost = price_usage(None, "plain", Usage(input=1000, output=0, cache_read=600, cache_creation=100))
    # every input token at $1/M whatever its cache state: 1000 * $1/M = 0.001
    assert cost.usd == pytest.approx(0.001)


def test_anthropic_cache_writes_5m_vs_1h(test_table: None) -> None:
    # Anthropic reported input_tokens=100 (uncached), cache_read=2000, cache_creation=3000 of which 1000 with
    # the 1-hour TTL; the translator adds cache back, so semconv input = 100 + 2000 + 3000 = 5100.
    usage = Usage(input=5100, output=200, cache_read=2000, cache_creation=3000, cache_creation_1h=1000)
    cost = price_usage("anthropic", "claude-like", usage)
    # uncached 100 * $3/M        = 0.0003
    # read     2000 * $0.30/M    = 0.0006
    # 5m write 2000 * $3.75/M    = 0.0075
    # 1h write 1000 * $6/M       = 0.006
    # output   200 * $15/M       = 0.003
    # total                      = 0.0174
    assert cost.usd == pytest.approx(0.0174)
    assert cost.breakdown["cache_creation"] == pytest.approx(0.0075)
    assert cost.breakdown["cache_creation_1h"] == pytest.approx(0.006)
    # The same writes all with a 5-minute TTL cost less: 3000 * $3.75/M = 0.01125 instead of 0.0135.
    cheaper = price_usage("anthropic", "claude-like", Usage(input=5100, output=200, cache_read=2000,
                                                             cache_creation=3000))
    assert cheaper.usd == pytest.approx(0.0174 - 0.0135 + 0.01125)


def test_reasoning_tokens_priced_at_their_own_rate(test_table: None) -> None:
    cost = price_usage("openai", "reasoner", Usage(input=1000, output=3000, reasoning=2000))
    # 1000 * $1/M + (3000 - 2000) * $4/M + 2000 * $10/M = 0.001 + 0.004 + 0.02 = 0.025
    assert cost.usd == pytest.approx(0.025)
    assert cost.breakdown["reasoning"] == pytest.approx(0.02)


def test_reasoning_without_own_rate_is_ordinary_output(test_table: None) -> None:
    cost = price_usage("openai", "chat-model", Usage(input=0, output=3000, reasoning=2000))
    # all 3000 output tokens at $8/M = 0.024 (reasoning is a subset of output, not added again)
    assert cost.usd == pytest.approx(0.024)


def test_above_200k_tier_applies_only_past_200k_input(test_table: None) -> None:
    at_limit = price_usage("anthropic", "claude-like", Usage(input=200_000, output=1000))
    # 200,000 * $3/M + 1000 * $15/M = 0.6 + 0.015 = 0.615 (not above 200k: base rates)
    assert at_limit.usd == pytest.approx(0.615)
    above = price_usage("anthropic", "claude-like", Usage(input=200_001, output=1000))
    # 200,001 * $6/M + 1000 * $22.50/M = 1.200006 + 0.0225 = 1.222506
    assert above.usd == pytest.approx(1.222506)


def test_above_200k_cache_reads_use_base_read_rate_when_no_tiered_one(test_table: None) -> None:
    cost = price_usage("anthropic", "claude-like", Usage(input=300_000, output=0, cache_read=100_000))
    # 200,000 * $6/M + 100,000 * $0.30/M = 1.2 + 0.03 = 1.23
    assert cost.usd == pytest.approx(1.23)


def test_embeddings_price_input_only(test_table: None) -> None:
    cost = price_usage("openai", "embedder", Usage(input=10_000, output=None))
    # 10,000 * $0.10/M = 0.001; the entry's output price is never used for an embedding
    assert cost.usd == pytest.approx(0.001)
    assert price_usage("openai", "embedder", Usage(input=10_000, output=50)).usd == pytest.approx(0.001)


def test_shipped_table_gpt_4o_per_token_unit() -> None:
    cost = price_usage("openai", "gpt-4o", Usage(input=1_000_000, output=1_000_000))
    # gpt-4o: $2.50/M in + $10/M out -> exactly 12.50 USD for a million of each (not 0.0125, not 12,500)
    assert cost.usd == pytest.approx(12.5)
    assert cost.price_key == "gpt-4o"
    assert cost.table_version == "2026-11-28"


def test_shipped_table_dated_snapshot_keeps_its_own_price() -> None:
    # gpt-4o-2024-05-13 is $5/$15 while gpt-4o is $2.50/$10: the exact entry must win over the stripped name.
    cost = price_usage("openai", "gpt-4o-2024-05-13", Usage(input=1_000_000, output=0))
    assert cost.usd == pytest.approx(5.0)
    newer = price_usage("openai", "gpt-4o-2099-01-01", Usage(input=1_000_000, output=0))
    assert newer.usd == pytest.approx(2.5)
    assert newer.price_key == "gpt-4o"


def test_unknown_model_is_unpriced_and_warned_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="llmmeter.pricing")
    for _ in range(50):
        cost = price_usage("openai", "no-such-model-xyz", Usage(input=10, output=10))
        assert cost == Cost(None, False, None, "2026-11-28")
        assert cost.reason == "unknown_model"
    warnings = [r for r in caplog.records if "no-such-model-xyz" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING
    # Another provider for the same name is another (provider, model) pair: one more warning.
    price_usage("groq", "no-such-model-xyz", Usage(input=1, output=1))
    assert len([r for r in caplog.records if "no-such-model-xyz" in r.getMessage()]) == 2


def test_unknown_model_warnings_are_bounded(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pricing, "MAX_WARNED_MODELS", 3)
    caplog.set_level(logging.WARNING, logger="llmmeter.pricing")
    for i in range(20):
        price_usage("openai", f"mystery-{i}", Usage(input=1, output=1))
    assert len(pricing._warned) == 3
    per_model = [r for r in caplog.records if "no price for model" in r.getMessage()]
    assert len(per_model) == 3


def test_ollama_is_priced_zero_not_unpriced() -> None:
    cost = price_usage("ollama", "llama3", Usage(input=5000, output=5000))
    assert cost.priced is True
    assert cost.usd == 0.0
    assert cost.price_key == "ollama/*"
    # a gateway-style name says the same
    assert price_usage(None, "ollama/gemma3:1b", Usage(input=1, output=1)).usd == 0.0


def test_no_usage_at_all_is_unpriced_without_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="llmmeter.pricing")
    cost = price_usage("openai", "gpt-4o", Usage())
    assert (cost.usd, cost.priced, cost.reason) == (None, False, "no_usage")
    assert not caplog.records


def test_missing_model_name_is_unpriced() -> None:
    assert price_usage("openai", None, Usage(input=1, output=1)).priced is False
    assert price_usage("openai", "  ", Usage(input=1, output=1)).priced is False


def test_cost_is_hashable_and_compares_without_breakdown(test_table: None) -> None:
    a = price_usage("openai", "chat-model", Usage(input=1, output=1))
    b = price_usage("openai", "chat-model", Usage(input=1, output=1))
    assert a == b and hash(a) == hash(b)


def test_override_file_wins_over_shipped(monkeypatch: pytest.MonkeyPatch, fixtures_dir: str) -> None:
    monkeypatch.setenv("LLMMETER_PRICE_FILE", f"{fixtures_dir}/price_override.json")
    pricing._reset_for_tests()
    cost = price_usage("openai", "gpt-4o", Usage(input=1_000_000, output=1_000_000))
    # override: $2/M in + $8/M out = 10.0 (shipped would be 12.5)
    assert cost.usd == pytest.approx(10.0)
    assert cost.table_version == "2026-11-28+acme-negotiated-2026-11"
    # a model only the override knows is priced; shipped models the override does not mention are untouched
    assert price_usage("openai", "acme-internal-model", Usage(input=1_000_000, output=0)).usd == pytest.approx(1.0)
    assert price_usage("openai", "gpt-4o-mini", Usage(input=1_000_000, output=0)).usd == pytest.approx(0.15)


def test_missing_override_file_fails_naming_the_variable(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    from llmmeter.config import ConfigError

    missing = tmp_path / "nope.json"
    monkeypatch.setenv("LLMMETER_PRICE_FILE", str(missing))
    pricing._reset_for_tests()
    with pytest.raises(ConfigError, match="LLMMETER_PRICE_FILE") as info:
        get_price_table()
    assert str(missing) in str(info.value)
    # the hot path never raises: it reports unpriced
    assert price_usage("openai", "gpt-4o", Usage(input=1, output=1)).priced is False


def test_extend_with_dict_and_path(fixtures_dir: str) -> None:
    get_price_table()  # already loaded: extend must still apply
    pricing.extend({"house-model": {"input_cost_per_token": 3 * PER_M, "output_cost_per_token": 0}})
    assert price_usage(None, "house-model", Usage(input=1_000_000, output=5)).usd == pytest.approx(3.0)
    pricing.extend(f"{fixtures_dir}/price_override.json")
    assert price_usage("openai", "gpt-4o", Usage(input=1_000_000, output=0)).usd == pytest.approx(2.0)
    # extensions survive a rebuild
    set_price_table(None)
    assert price_usage(None, "house-model", Usage(input=1_000_000, output=0)).usd == pytest.approx(3.0)


def test_aliases_from_env_map_azure_deployments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMMETER_MODEL_ALIASES", "my-gpt4o-deploy=gpt-4o, other=claude-sonnet-4-5")
    pricing._reset_for_tests()
    cost = price_usage("azure.ai.openai", "my-gpt4o-deploy", Usage(input=1_000_000, output=0))
    assert (cost.priced, cost.price_key, cost.usd) == (True, "gpt-4o", pytest.approx(2.5))
    assert price_usage("azure.ai.openai", "azure/other", Usage(input=1, output=1)).price_key == "claude-sonnet-4-5"


@pytest.mark.parametrize("raw", ["justaname", "a=", "=gpt-4o", "a=b=c"])
def test_malformed_alias_env_fails_naming_the_variable(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    from llmmeter.config import ConfigError

    monkeypatch.setenv("LLMMETER_MODEL_ALIASES", raw)
    pricing._reset_for_tests()
    with pytest.raises(ConfigError, match="LLMMETER_MODEL_ALIASES") as info:
        get_price_table()
    assert repr(raw.strip()) in str(info.value)


def test_add_aliases_api() -> None:
    pricing.add_aliases({"prod-chat": "gpt-4o-mini"})
    assert price_usage("azure.ai.openai", "prod-chat", Usage(input=1, output=0)).price_key == "gpt-4o-mini"
    pricing.add_aliases("prod-chat=gpt-4o")  # later aliases win
    assert price_usage("azure.ai.openai", "prod-chat", Usage(input=1, output=0)).price_key == "gpt-4o"


def test_describe() -> None:
    info = pricing.describe("us.anthropic.claude-3-5-sonnet-20240620-v1:0", provider="aws.bedrock")
    assert info["price_key"] == "anthropic.claude-3-5-sonnet-20240620-v1:0"
    assert info["input_cost_per_token"] == pytest.approx(3 * PER_M)
    assert info["source"].startswith("https://")
    assert info["table_version"] == "2026-11-28"
    assert pricing.describe("no-such-model") == {}
    local = pricing.describe("llama3.2", provider="ollama")
    assert (local["price_key"], local["zero_priced_provider"]) == ("ollama/*", "ollama")
    assert pricing.describe("llama3", provider="ollama")["output_cost_per_token"] == 0.0


MODELS = st.sampled_from(["chat-model", "claude-like", "reasoner", "plain", "embedder", "unknown-x", "gpt-4o"])
COUNTS = st.one_of(st.none(), st.integers(min_value=-(10**20), max_value=10**20))
SUBCOUNTS = st.integers(min_value=-(10**20), max_value=10**20)


@settings(max_examples=300, deadline=None)
@given(model=MODELS, provider=st.sampled_from([None, "openai", "ollama", "aws.bedrock"]), inp=COUNTS, out=COUNTS,
       cache_read=SUBCOUNTS, cache_creation=SUBCOUNTS, cache_1h=SUBCOUNTS, reasoning=SUBCOUNTS)
def test_cost_is_never_negative_and_never_raises(
    model: str, provider: str | None, inp: int | None, out: int | None,
    cache_read: int, cache_creation: int, cache_1h: int, reasoning: int,
) -> None:
    set_price_table(parse_price_data(TEST_TABLE, "<test>"))
    usage = Usage(input=inp, output=out, cache_read=cache_read, cache_creation=cache_creation,
                  cache_creation_1h=cache_1h, reasoning=reasoning)
    cost = price_usage(provider, model, usage)
    assert isinstance(cost, Cost)
    if cost.priced:
        assert cost.usd is not None and cost.usd >= 0 and math.isfinite(cost.usd)
    else:
        assert cost.usd is None


@settings(max_examples=200, deadline=None)
@given(model=st.text(max_size=60), provider=st.one_of(st.none(), st.text(max_size=20)))
def test_arbitrary_model_names_never_raise(model: str, provider: str | None) -> None:
    cost = price_usage(provider, model, Usage(input=10, output=10))
    assert cost.priced is (cost.usd is not None)
