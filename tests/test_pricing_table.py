"""Price files: the shipped table's integrity, LiteLLM's format as-is, and ConfigError on every malformed input."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from importlib import resources
from typing import Any

import pytest
from llmmeter import pricing
from llmmeter.config import ConfigError
from llmmeter.pricing import load_price_table, price_usage, set_price_table
from llmmeter.pricing.table import PRICE_FIELDS
from llmmeter.usage import Usage

FIXTURES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
SHIPPED = json.loads(resources.files("llmmeter.pricing").joinpath("prices.json").read_text())


@pytest.fixture(autouse=True)
def _clean_pricing(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("LLMMETER_PRICE_FILE", raising=False)
    monkeypatch.delenv("LLMMETER_MODEL_ALIASES", raising=False)
    pricing._reset_for_tests()
    yield
    pricing._reset_for_tests()


# --- the shipped table ---------------------------------------------------------------------------

def test_shipped_meta() -> None:
    assert SHIPPED["_meta"]["version"] == "2026-11-28"
    assert "ollama" in SHIPPED["_meta"]["zero_priced_providers"]
    assert pricing.get_price_table().version == "2026-11-28"


@pytest.mark.parametrize("key", sorted(k for k in SHIPPED if not k.startswith("_")))
def test_every_shipped_entry_has_source_as_of_and_sane_prices(key: str) -> None:
    entry = SHIPPED[key]
    assert re.fullmatch(r"https://[^\s]+", entry["source"]), entry.get("source")
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", entry["as_of"]), entry.get("as_of")
    if "no_price" in entry:  # an explicit "no price" entry: a reason, and no rate at all
        assert len(entry["no_price"]) > 20 and not [f for f in entry if "cost" in f]
        return
    assert entry["mode"] in {"chat", "completion", "embedding"}
    prices = {f: v for f, v in entry.items() if f in PRICE_FIELDS}
    assert "input_cost_per_token" in prices
    for field_name, value in prices.items():
        assert isinstance(value, float) and value >= 0, (field_name, value)
        # per TOKEN, not per 1K / 1M: nothing costs $1,000 per million tokens
        assert value < 1e-3, (field_name, value)
    if "cache_read_input_token_cost" in prices:
        assert prices["cache_read_input_token_cost"] <= prices["input_cost_per_token"]
    if "cache_creation_input_token_cost" in prices:
        assert prices["cache_creation_input_token_cost"] >= prices["input_cost_per_token"]
    if "cache_creation_input_token_cost_above_1hr" in prices:
        assert prices["cache_creation_input_token_cost_above_1hr"] >= prices["cache_creation_input_token_cost"]


REQUIRED = [
    ("openai", "gpt-4o"), ("openai", "gpt-4o-mini"), ("openai", "gpt-4.1"), ("openai", "gpt-4.1-mini"),
    ("openai", "gpt-4.1-nano"), ("openai", "o1"), ("openai", "o3"), ("openai", "o3-mini"), ("openai", "o4-mini"),
    ("openai", "gpt-5"), ("openai", "gpt-5-mini"), ("openai", "gpt-5-nano"), ("openai", "gpt-3.5-turbo"),
    ("openai", "gpt-3.5-turbo-instruct"), ("openai", "text-embedding-3-small"), ("openai", "text-embedding-3-large"),
    ("openai", "text-embedding-ada-002"),
    ("anthropic", "claude-3-haiku-20240307"), ("anthropic", "claude-3-opus-20240229"),
    ("anthropic", "claude-3-5-sonnet-20240620"), ("anthropic", "claude-3-5-sonnet-20241022"),
    ("anthropic", "claude-3-5-haiku-20241022"), ("anthropic", "claude-3-7-sonnet-20250219"),
    ("anthropic", "claude-sonnet-4-20250514"), ("anthropic", "claude-opus-4-20250514"),
    ("anthropic", "claude-opus-4-1-20250805"), ("anthropic", "claude-sonnet-4-5-20250929"),
    ("anthropic", "claude-haiku-4-5-20251001"), ("anthropic", "claude-opus-4-5-20251101"),
    ("gcp.gemini", "gemini-1.5-flash"), ("gcp.gemini", "gemini-1.5-pro"), ("gcp.gemini", "gemini-2.0-flash"),
    ("gcp.gemini", "gemini-2.5-flash"), ("gcp.gemini", "gemini-2.5-pro"),
    ("mistral_ai", "mistral-small-latest"), ("mistral_ai", "mistral-medium-latest"),
    ("mistral_ai", "mistral-large-latest"), ("mistral_ai", "codestral-latest"),
    ("cohere", "command-r"), ("cohere", "command-r-plus"), ("cohere", "command-a-03-2025"),
    ("groq", "llama-3.3-70b-versatile"), ("groq", "llama-3.1-8b-instant"),
    ("aws.bedrock", "anthropic.claude-3-5-sonnet-20240620-v1:0"), ("aws.bedrock", "amazon.titan-text-express-v1"),
    ("aws.bedrock", "amazon.nova-pro-v1:0"), ("aws.bedrock", "meta.llama3-1-70b-instruct-v1:0"),
    ("aws.bedrock", "mistral.mistral-large-2407-v1:0"), ("aws.bedrock", "cohere.command-r-plus-v1:0"),
]


@pytest.mark.parametrize(("provider", "model"), REQUIRED)
def test_required_models_are_priced(provider: str, model: str) -> None:
    cost = price_usage(provider, model, Usage(input=1000, output=1000))
    assert cost.priced and cost.usd is not None and cost.usd > 0


def test_groq_hosted_price_beats_bare_name() -> None:
    cost = price_usage("groq", "llama-3.3-70b-versatile", Usage(input=1_000_000, output=1_000_000))
    # groq: $0.59/M in + $0.79/M out = 1.38
    assert cost.price_key == "groq/llama-3.3-70b-versatile"
    assert cost.usd == pytest.approx(1.38)


# --- LiteLLM's format as-is ----------------------------------------------------------------------

def test_litellm_file_loads_as_is() -> None:
    table = load_price_table(os.path.join(FIXTURES_DIR, "litellm_prices_sample.json"))
    # sample_spec skipped, the image-only entry (no token price) skipped, unknown fields ignored
    assert sorted(table) == ["acme-chat-1", "acme-embed", "gpt-4o"]
    assert table.version.startswith("sha256:")
    set_price_table(table)
    cost = price_usage("openai", "acme-chat-1", Usage(input=1000, output=1000, cache_read=500))
    # 500 * $1/M + 500 * $0.10/M + 1000 * $4/M = 0.0005 + 0.00005 + 0.004 = 0.00455
    assert cost.usd == pytest.approx(0.00455)
    assert price_usage("openai", "acme-embed", Usage(input=1_000_000)).usd == pytest.approx(0.02)
    # a LiteLLM table still prices ollama at 0
    assert price_usage("ollama", "llama3", Usage(input=5, output=5)).usd == 0.0


def test_litellm_file_as_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMMETER_PRICE_FILE", os.path.join(FIXTURES_DIR, "litellm_prices_sample.json"))
    pricing._reset_for_tests()
    table = pricing.get_price_table()
    assert "acme-chat-1" in table and "claude-3-5-sonnet-20240620" in table
    assert table.version.startswith("2026-11-28+sha256:")


# --- malformed input -----------------------------------------------------------------------------

MALFORMED: list[tuple[str, str, list[str]]] = [
    # (id, file text, fragments the message must contain besides the path)
    ("not-json", "{not json", ["not valid JSON", "line 1"]),
    ("empty", "", ["not valid JSON"]),
    ("not-utf8", "\udcff", ["not valid JSON"]),
    ("top-level-list", "[1, 2]", ["expected a JSON object", "list"]),
    ("top-level-number", "3", ["expected a JSON object", "int"]),
    ("entry-not-object", '{"m": "cheap"}', ["'m'", "expected an object", "'cheap'"]),
    ("negative", '{"m": {"input_cost_per_token": -1e-6}}', ["'m'", "'input_cost_per_token'", "-1e-06"]),
    ("string-price", '{"m": {"output_cost_per_token": "0.001"}}', ["'m'", "'output_cost_per_token'", "'0.001'"]),
    ("bool-price", '{"m": {"input_cost_per_token": true}}', ["'m'", "'input_cost_per_token'", "True"]),
    ("nan", '{"m": {"input_cost_per_token": NaN}}', ["'m'", "'input_cost_per_token'", "nan"]),
    ("infinity", '{"m": {"input_cost_per_token": Infinity}}', ["'m'", "'input_cost_per_token'", "inf"]),
    ("list-price", '{"m": {"cache_read_input_token_cost": [1]}}', ["'m'", "'cache_read_input_token_cost'", "[1]"]),
    ("bad-tier", '{"m": {"input_cost_per_token": 1e-6, "input_cost_per_token_above_200k_tokens": -2}}',
     ["'m'", "'input_cost_per_token_above_200k_tokens'", "-2"]),
    ("bad-mode", '{"m": {"input_cost_per_token": 1e-6, "mode": 5}}', ["'m'", "'mode'", "5"]),
    ("bad-meta", '{"_meta": [], "m": {"input_cost_per_token": 1e-6}}', ["'_meta'", "[]"]),
    ("bad-meta-version", '{"_meta": {"version": 2}}', ["'_meta.version'", "2"]),
    ("bad-zero-providers", '{"_meta": {"zero_priced_providers": "ollama"}}', ["zero_priced_providers", "'ollama'"]),
]


@pytest.mark.parametrize(("text", "fragments"), [(t, f) for _, t, f in MALFORMED], ids=[i for i, _, _ in MALFORMED])
def test_malformed_file_raises_config_error_naming_file_field_value(
    tmp_path: Any, text: str, fragments: list[str]
) -> None:
    path = tmp_path / "prices.json"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    with pytest.raises(ConfigError) as info:
        load_price_table(str(path))
    message = str(info.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_missing_file_raises_config_error(tmp_path: Any) -> None:
    path = tmp_path / "absent.json"
    with pytest.raises(ConfigError, match="cannot read") as info:
        load_price_table(str(path))
    assert str(path) in str(info.value)


def test_malformed_override_fails_at_startup(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    path = tmp_path / "override.json"
    path.write_text('{"gpt-4o": {"input_cost_per_token": "2.5"}}')
    monkeypatch.setenv("LLMMETER_PRICE_FILE", str(path))
    pricing._reset_for_tests()
    with pytest.raises(ConfigError, match=r"'gpt-4o'.*'input_cost_per_token'.*'2\.5'"):
        pricing.get_price_table()


def test_extend_dict_is_validated() -> None:
    with pytest.raises(ConfigError, match=r"<dict>.*'x'.*'output_cost_per_token'.*-5"):
        pricing.extend({"x": {"input_cost_per_token": 0, "output_cost_per_token": -5}})


def test_entries_without_token_prices_are_skipped_not_errors(tmp_path: Any) -> None:
    # In LiteLLM's format (its sample_spec entry) per-second / per-query entries are LiteLLM's own: skipped.
    path = tmp_path / "p.json"
    path.write_text(json.dumps({
        "sample_spec": {"input_cost_per_token": 0.0},
        "tts": {"output_cost_per_second": 0.001, "mode": "audio_speech"},
        "rerank": {"input_cost_per_query": 0.002, "mode": "rerank"},
        "ok": {"output_cost_per_token": 1e-6},
    }))
    assert list(load_price_table(str(path))) == ["ok"]
