"""Model-name normalization, table-driven: what each reported spelling is priced as."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from llmmeter import pricing
from llmmeter.pricing import price_usage, set_price_table
from llmmeter.pricing.normalize import candidates
from llmmeter.pricing.table import parse_price_data
from llmmeter.usage import Usage


@pytest.fixture(autouse=True)
def _clean_pricing(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("LLMMETER_PRICE_FILE", raising=False)
    monkeypatch.delenv("LLMMETER_MODEL_ALIASES", raising=False)
    pricing._reset_for_tests()
    yield
    pricing._reset_for_tests()


# (provider, reported model, expected price key in the SHIPPED table)
SHIPPED_CASES = [
    ("openai", "gpt-4o", "gpt-4o"),
    ("openai", "openai/gpt-4o", "gpt-4o"),
    ("openai", "GPT-4o", "gpt-4o"),
    ("openai", "gpt-4o-2024-08-06", "gpt-4o-2024-08-06"),
    ("openai", "gpt-4o-2099-12-31", "gpt-4o"),  # a future snapshot falls back to its family
    ("openai", "gpt-4o-2024-05-13", "gpt-4o-2024-05-13"),  # exact entry (other price) wins
    ("openai", "gpt-3.5-turbo-0125", "gpt-3.5-turbo-0125"),
    ("openai", "gpt-3.5-turbo-0999", "gpt-3.5-turbo"),
    ("openai", "gpt-4.1-mini-2025-04-14", "gpt-4.1-mini-2025-04-14"),
    ("openai", "gpt-5-nano-2099-01-01", "gpt-5-nano"),
    ("azure.ai.openai", "azure/gpt-4o", "gpt-4o"),
    ("azure.ai.openai", "gpt-35-turbo", "gpt-3.5-turbo"),
    ("anthropic", "anthropic/claude-3-5-sonnet-20240620", "claude-3-5-sonnet-20240620"),
    ("anthropic", "claude-3-5-sonnet-latest", "claude-3-5-sonnet-latest"),
    ("anthropic", "claude-3-7-sonnet-latest", "claude-3-7-sonnet-latest"),
    ("anthropic", "claude-sonnet-4-5-20991231", "claude-sonnet-4-5"),
    ("anthropic", "claude-opus-4-5-latest", "claude-opus-4-5"),
    ("gcp.vertex_ai", "claude-3-5-sonnet@20240620", "claude-3-5-sonnet-20240620"),
    # Vertex's own entry (the 2026-11-28 table has vertex_ai/ keys for Claude 4.5+)
    ("gcp.vertex_ai", "claude-sonnet-4-5@20250929", "vertex_ai/claude-sonnet-4-5@20250929"),
    ("gcp.vertex_ai", "publishers/anthropic/models/claude-3-5-haiku@20241022", "claude-3-5-haiku-20241022"),
    ("gcp.gemini", "models/gemini-2.5-flash", "gemini-2.5-flash"),
    ("gcp.gemini", "gemini-2.5-pro-preview-06-05", "gemini-2.5-pro"),
    ("gcp.vertex_ai", "gemini-1.5-pro-002", "gemini-1.5-pro-002"),
    ("gcp.vertex_ai", "gemini-2.0-flash-lite-009", "gemini-2.0-flash-lite"),
    ("aws.bedrock", "anthropic.claude-3-5-sonnet-20240620-v1:0", "anthropic.claude-3-5-sonnet-20240620-v1:0"),
    ("aws.bedrock", "us.anthropic.claude-3-5-sonnet-20240620-v1:0", "anthropic.claude-3-5-sonnet-20240620-v1:0"),
    ("aws.bedrock", "eu.anthropic.claude-3-7-sonnet-20250219-v1:0", "anthropic.claude-3-7-sonnet-20250219-v1:0"),
    ("aws.bedrock", "apac.amazon.nova-lite-v1:0", "amazon.nova-lite-v1:0"),
    # the global inference profile's own entry (regional profiles cost more for Claude 4.5+)
    ("aws.bedrock", "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
     "global.anthropic.claude-sonnet-4-5-20250929-v1:0"),
    ("aws.bedrock", "bedrock/anthropic.claude-3-haiku-20240307-v1:0", "anthropic.claude-3-haiku-20240307-v1:0"),
    ("aws.bedrock", "anthropic.claude-3-5-haiku-20241022-v1%3A0", "anthropic.claude-3-5-haiku-20241022-v1:0"),
    ("aws.bedrock", "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.amazon.nova-pro-v1:0",
     "amazon.nova-pro-v1:0"),
    # a Bedrock id the table lacks still finds the Anthropic-API entry of the same model
    ("aws.bedrock", "anthropic.claude-3-5-sonnet-20991231-v9:0", "claude-3-5-sonnet"),
    ("aws.bedrock", "anthropic.claude-3-sonnet-20240229-v1:0:200k", "anthropic.claude-3-sonnet-20240229-v1:0"),
    ("groq", "llama3-8b-8192", "groq/llama3-8b-8192"),
    ("groq", "groq/llama-3.1-8b-instant", "groq/llama-3.1-8b-instant"),
    ("groq", "openai/gpt-oss-120b", "groq/openai/gpt-oss-120b"),
    ("mistral_ai", "mistral-large-latest", "mistral-large-latest"),
    ("mistral_ai", "mistral/mistral-small-2409", "mistral-small"),
    ("cohere", "command-r-plus-08-2024", "command-r-plus-08-2024"),
]


@pytest.mark.parametrize(("provider", "model", "key"), SHIPPED_CASES)
def test_shipped_table_resolution(provider: str, model: str, key: str) -> None:
    cost = price_usage(provider, model, Usage(input=100, output=100))
    assert cost.priced, model
    assert cost.price_key == key


@pytest.mark.parametrize(
    "model",
    [
        "ft:gpt-4o-mini-2024-07-18:acme::abc123",  # fine-tunes cost more: never priced as the base model
        "gpt-4o-imaginary",
        "claude-99",
        "",
    ],
)
def test_not_guessed(model: str) -> None:
    assert price_usage("openai", model, Usage(input=100, output=100)).priced is False


def test_bedrock_id_finds_anthropic_style_key_when_table_has_only_that() -> None:
    set_price_table(parse_price_data(
        {"claude-3-5-sonnet-20240620": {"input_cost_per_token": 3e-6, "output_cost_per_token": 1.5e-5}}, "<t>"))
    cost = price_usage("aws.bedrock", "us.anthropic.claude-3-5-sonnet-20240620-v1:0", Usage(input=1, output=0))
    assert cost.price_key == "claude-3-5-sonnet-20240620"


def test_bedrock_key_found_when_table_has_only_that() -> None:
    set_price_table(parse_price_data(
        {"anthropic.claude-3-5-sonnet-20240620-v1:0": {"input_cost_per_token": 3e-6, "output_cost_per_token": 0}},
        "<t>"))
    cost = price_usage("aws.bedrock", "bedrock/us.anthropic.claude-3-5-sonnet-20240620-v1:0", Usage(input=1, output=0))
    assert cost.price_key == "anthropic.claude-3-5-sonnet-20240620-v1:0"


def test_provider_specific_key_wins_over_bare_name() -> None:
    set_price_table(parse_price_data({
        "llama-x": {"input_cost_per_token": 1e-6, "output_cost_per_token": 0},
        "groq/llama-x": {"input_cost_per_token": 2e-6, "output_cost_per_token": 0},
    }, "<t>"))
    assert price_usage("groq", "llama-x", Usage(input=1, output=0)).price_key == "groq/llama-x"
    assert price_usage("openai", "llama-x", Usage(input=1, output=0)).price_key == "llama-x"


def test_candidates_order_most_specific_first() -> None:
    assert candidates("us.anthropic.claude-3-5-sonnet-20240620-v1:0") == (
        "us.anthropic.claude-3-5-sonnet-20240620-v1:0",
        "anthropic.claude-3-5-sonnet-20240620-v1:0",
        "anthropic.claude-3-5-sonnet-20240620",
        "claude-3-5-sonnet-20240620",
        "claude-3-5-sonnet",
    )
    assert candidates("gpt-4o-2024-08-06") == ("gpt-4o-2024-08-06", "gpt-4o")


def test_candidates_are_cached() -> None:
    candidates.cache_clear()
    candidates("gpt-4o-mini-2024-07-18")
    candidates("gpt-4o-mini-2024-07-18")
    info = candidates.cache_info()
    assert info.hits >= 1 and info.maxsize == 1024
