"""The shipped price table covers what the SDKs really send (issue 12 item 2).

* Every call in the recorded provider traffic (tests/cassettes, and the wider openllmetry recordings listed in
  tests/fixtures/recorded_calls_shared.json by tests/recorded_models.py) resolves to a price or to an explicit,
  documented "no price" entry, exactly as llmmeter prices a call (the response's model, else the request's).
* The current models of every instrumented provider are priced under the names their SDKs send (snapshots,
  aliases, Bedrock ids and inference profiles, ARNs, Vertex ids), at the published per-token prices written out
  below by hand (USD per million tokens, from the providers' pricing pages as of 2026-11-28), not read from the
  table under test.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest
from llmmeter import pricing
from llmmeter.pricing import get_price_table, price_usage
from llmmeter.usage import Usage
from recorded_models import recorded_calls

TESTS = os.path.dirname(os.path.abspath(__file__))
SHARED = json.load(open(os.path.join(TESTS, "fixtures", "recorded_calls_shared.json"), encoding="utf-8"))["calls"]
LOCAL = recorded_calls(os.path.join(TESTS, "cassettes"))


@pytest.fixture(autouse=True)
def _shipped(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for var in ("LLMMETER_PRICE_FILE", "LLMMETER_MODEL_ALIASES", "LLMMETER_DISCOUNTS", "LLMMETER_PRICE_REFRESH"):
        monkeypatch.delenv(var, raising=False)
    pricing._reset_for_tests()
    yield
    pricing._reset_for_tests()


def test_recordings_were_found() -> None:
    assert len(LOCAL) >= 20 and len(SHARED) >= 50  # the scan itself works (a broken scan would pass vacuously)


@pytest.mark.parametrize("call", LOCAL + SHARED,
                         ids=[f"{c['provider']}:{c['response_model'] or c['request_model']}" for c in LOCAL + SHARED])
def test_every_recorded_call_has_a_price_or_an_explicit_no_price(call: dict) -> None:
    table = get_price_table()
    provider = call["provider"]
    found = (call["response_model"] and table.target(provider, call["response_model"])) or (
        call["request_model"] and table.target(provider, call["request_model"]))
    assert found, f"{call['cassette']}: {provider} {call['request_model']} -> {call['response_model']} has no entry"
    _key, entry = found
    if entry is not None and entry.no_price is not None:
        assert entry.source and len(entry.no_price) > 20  # documented: why, and where that is written
    cost = price_usage(provider, call["response_model"] or call["request_model"], Usage(input=100, output=10))
    assert cost.priced or cost.reason == "no_price" or call["response_model"] is None or \
        price_usage(provider, call["request_model"], Usage(input=100, output=10)).priced


# (provider as the SDK reports it, model as the SDK sends or receives it, USD per M input, USD per M output)
CURRENT: list[tuple[str, str, float, float]] = [
    # Anthropic API: Sonnet 4.5/4.6 $3/$15, Opus 4.5-4.8 $5/$25, Opus 4/4.1 $15/$75, Haiku 4.5 $1/$5
    ("anthropic", "claude-sonnet-4-6", 3, 15),
    ("anthropic", "claude-sonnet-4-5-20250929", 3, 15),
    ("anthropic", "claude-sonnet-4-5", 3, 15),
    ("anthropic", "claude-opus-4-6", 5, 25),
    ("anthropic", "claude-opus-4-7-20260416", 5, 25),
    ("anthropic", "claude-opus-4-5-20251101", 5, 25),
    ("anthropic", "claude-opus-4-1-20250805", 15, 75),
    ("anthropic", "claude-opus-4-20250514", 15, 75),
    ("anthropic", "claude-haiku-4-5-20251001", 1, 5),
    ("anthropic", "claude-haiku-4-5", 1, 5),
    # Bedrock: model ids, global profiles at the list price, regional (us./eu.) profiles +10 % for Claude 4.5+
    ("aws.bedrock", "anthropic.claude-sonnet-4-5-20250929-v1:0", 3, 15),
    ("aws.bedrock", "global.anthropic.claude-sonnet-4-6", 3, 15),
    ("aws.bedrock", "us.anthropic.claude-sonnet-4-6", 3.3, 16.5),
    ("aws.bedrock", "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-sonnet-4-6", 3.3,
     16.5),
    ("aws.bedrock", "us.anthropic.claude-haiku-4-5-20251001-v1:0", 1.1, 5.5),
    ("aws.bedrock", "global.anthropic.claude-opus-4-5-20251101-v1:0", 5, 25),
    # Vertex AI: "@" versions and "@default"
    ("gcp.vertex_ai", "claude-sonnet-4-6@default", 3, 15),
    ("gcp.vertex_ai", "claude-sonnet-4-5@20250929", 3, 15),
    ("gcp.vertex_ai", "claude-opus-4-6", 5, 25),
    # Gemini 2.5 and 3.x (Developer API and Vertex names, "models/" prefix as the SDK sends it)
    ("gcp.gemini", "gemini-2.5-pro", 1.25, 10),
    ("gcp.gemini", "gemini-2.5-flash", 0.30, 2.50),
    ("gcp.gemini", "models/gemini-2.5-flash-lite", 0.10, 0.40),
    ("gcp.gemini", "gemini-3-flash-preview", 0.50, 3),
    ("gcp.vertex_ai", "gemini-3.1-pro-preview", 2, 12),
    ("gcp.gemini", "gemini-3.1-flash-lite-preview", 0.25, 1.50),
    # OpenAI GPT-5.x and o-series, snapshots included
    ("openai", "gpt-5", 1.25, 10),
    ("openai", "gpt-5-mini-2025-08-07", 0.25, 2),
    ("openai", "gpt-5-nano", 0.05, 0.40),
    ("openai", "gpt-5.1", 1.25, 10),
    ("openai", "gpt-5.2-2025-12-11", 1.75, 14),
    ("openai", "gpt-5.4", 2.50, 15),
    ("openai", "gpt-5.4-mini-2026-03-17", 0.75, 4.50),
    ("openai", "o3", 2, 8),
    ("openai", "o4-mini-2025-04-16", 1.10, 4.40),
    ("azure.ai.openai", "gpt-5-nano-2025-08-07", 0.05, 0.40),
    # DeepSeek, Mistral, Cohere current names
    ("deepseek", "deepseek-chat", 0.28, 0.42),
    ("deepseek", "deepseek-reasoner", 0.28, 0.42),
    ("mistral_ai", "mistral-large-latest", 0.50, 1.50),
    ("mistral_ai", "mistral-medium-latest", 1.50, 7.50),  # Medium 3.5 since 2026-04-29
    ("mistral_ai", "mistral-medium-3.5", 1.50, 7.50),
    ("cohere", "command-a-03-2025", 2.50, 10),
    ("cohere", "command-r7b-12-2024", 0.0375, 0.15),
]


@pytest.mark.parametrize(("provider", "model", "input_per_m", "output_per_m"), CURRENT,
                         ids=[f"{p}:{m}" for p, m, _, _ in CURRENT])
def test_current_models_at_published_prices(provider: str, model: str, input_per_m: float,
                                            output_per_m: float) -> None:
    # 100k input tokens: under every long-context threshold (200k / 272k)
    cost_in = price_usage(provider, model, Usage(input=100_000, output=0))
    cost_out = price_usage(provider, model, Usage(input=0, output=1_000_000))
    assert cost_in.priced, (provider, model, cost_in.reason)
    assert cost_in.usd == pytest.approx(input_per_m / 10), cost_in.price_key
    assert cost_out.usd == pytest.approx(output_per_m), cost_out.price_key


# Service-tier and long-context rates of current models (published: GPT-5.4 flex $1.25/$7.50, priority $5/$30,
# >272k input $5/$22.50; GPT-5 batch $0.625/$5; Claude Sonnet 4.6 batch $1.50/$7.50; Gemini 2.5 Pro >200k $2.50/$15)
TIERS: list[tuple[str, str, str | None, int, float, float]] = [
    ("openai", "gpt-5.4", "flex", 100_000, 0.125, 7.50),
    ("openai", "gpt-5.4", "priority", 100_000, 0.5, 30),
    ("openai", "gpt-5.4", None, 300_000, 5 * 0.3, 22.50),
    ("openai", "gpt-5", "batch", 1_000_000, 0.625, 5),
    ("anthropic", "claude-sonnet-4-6", "batch", 100_000, 0.15, 7.50),
    ("gcp.gemini", "gemini-2.5-pro", None, 300_000, 2.50 * 0.3, 15),
]


@pytest.mark.parametrize(("provider", "model", "tier", "input_tokens", "input_usd", "output_per_m"), TIERS,
                         ids=[f"{m}:{t}:{n}" for _, m, t, n, _, _ in TIERS])
def test_current_models_tier_rates(provider: str, model: str, tier: str | None, input_tokens: int, input_usd: float,
                                   output_per_m: float) -> None:
    cost = price_usage(provider, model, Usage(input=input_tokens, output=1_000_000, service_tier=tier))
    assert cost.usd == pytest.approx(input_usd + output_per_m)
    assert cost.service_tier == (tier or "standard")
