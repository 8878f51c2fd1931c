"""Strict price files (issue 12 item 4, issue 9 item 10): a typo is an error naming file, model and field (with
the closest known name), an entry without a rate is an error, and LiteLLM's own table still loads as it is."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from typing import Any

import pytest
from llmmeter import pricing
from llmmeter.config import ConfigError
from llmmeter.pricing import load_price_table, price_usage, set_price_table
from llmmeter.usage import Usage

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
LITELLM_SUBSET = os.path.join(FIXTURES, "litellm_1.110.2_subset.json")


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for var in ("LLMMETER_PRICE_FILE", "LLMMETER_MODEL_ALIASES", "LLMMETER_DISCOUNTS"):
        monkeypatch.delenv(var, raising=False)
    pricing._reset_for_tests()
    yield
    pricing._reset_for_tests()


def write(tmp_path: Any, data: Any) -> str:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps(data))
    return str(path)


def test_typo_in_a_rate_is_an_error_naming_file_model_field_and_closest(tmp_path: Any) -> None:
    # the new user's file from the issue: accepted before, and input priced at $0
    path = write(tmp_path, {"my-model": {"input_cost_per_tokn": 1e-6, "output_cost_per_token": 2e-6}})
    with pytest.raises(ConfigError) as info:
        load_price_table(path)
    message = str(info.value)
    for fragment in (path, "'my-model'", "'input_cost_per_tokn'", "did you mean 'input_cost_per_token'"):
        assert fragment in message, (fragment, message)


def test_typo_fails_at_startup_through_the_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    path = write(tmp_path, {"m": {"input_cost_per_token": 1e-6, "cache_read_input_token_costs": 1e-7}})
    monkeypatch.setenv("LLMMETER_PRICE_FILE", path)
    pricing._reset_for_tests()
    with pytest.raises(ConfigError, match=r"'cache_read_input_token_costs'.*'cache_read_input_token_cost'"):
        pricing.get_price_table()


@pytest.mark.parametrize("entry", [{}, {"mode": "chat"}, {"source": "https://x.invalid", "as_of": "2026-01-01"}])
def test_entry_without_any_rate_is_an_error(tmp_path: Any, entry: dict[str, Any]) -> None:
    path = write(tmp_path, {"ok": {"input_cost_per_token": 1e-6}, "empty": entry})
    with pytest.raises(ConfigError, match=r"'empty': no rate at all") as info:
        load_price_table(path)
    assert path in str(info.value)


def test_unknown_meta_field_is_an_error(tmp_path: Any) -> None:
    path = write(tmp_path, {"_meta": {"verison": "x"}, "m": {"input_cost_per_token": 1e-6}})
    with pytest.raises(ConfigError, match=r"'_meta.verison'.*did you mean 'version'"):
        load_price_table(path)


def test_no_price_with_rates_is_an_error(tmp_path: Any) -> None:
    path = write(tmp_path, {"m": {"input_cost_per_token": 1e-6, "no_price": "free"}})
    with pytest.raises(ConfigError, match="'no_price' on an entry that has rates"):
        load_price_table(path)


def test_litellm_table_loads_as_it_is() -> None:
    # Real entries of LiteLLM's table (see tests/fixtures/NOTICE.md), covering every field it uses.
    table = load_price_table(LITELLM_SUBSET)
    assert "gpt-5.4" in table and "claude-sonnet-4-6" in table
    assert "dall-e-3" not in table  # per-image prices only: skipped, not an error
    set_price_table(table)
    # gpt-5.4 in LiteLLM's table: $2.50 / $15 per M, flex $1.25 / $7.50, >272k $5 / $22.50
    assert price_usage("openai", "gpt-5.4", Usage(input=1000, output=100)).usd == pytest.approx(0.0025 + 0.0015)
    flex = price_usage("openai", "gpt-5.4", Usage(input=1000, output=100, service_tier="flex"))
    assert flex.usd == pytest.approx(0.00125 + 0.00075)
    long = price_usage("openai", "gpt-5.4", Usage(input=300_000, output=100))
    assert long.usd == pytest.approx(1.5 + 100 * 2.25e-05)


def test_litellm_format_near_miss_of_a_priced_field_is_still_an_error(tmp_path: Any) -> None:
    path = write(tmp_path, {"sample_spec": {}, "m": {"input_cost_per_tokn": 1e-6, "output_cost_per_token": 2e-6}})
    with pytest.raises(ConfigError, match=r"'m'.*'input_cost_per_tokn'.*'input_cost_per_token'"):
        load_price_table(path)


def test_litellm_format_new_field_is_named_in_a_warning(tmp_path: Any, caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path, {"sample_spec": {}, "m": {"input_cost_per_token": 1e-6, "brand_new_litellm_flag": 1}})
    with caplog.at_level(logging.WARNING, logger="llmmeter"):
        table = load_price_table(path)
    assert "m" in table
    assert any("m.brand_new_litellm_flag" in r.getMessage() and path in r.getMessage() for r in caplog.records)


def test_litellm_fields_are_not_accepted_in_llmmeter_format(tmp_path: Any) -> None:
    # supports_vision is LiteLLM's: known only in a file in LiteLLM's format
    path = write(tmp_path, {"m": {"input_cost_per_token": 1e-6, "supports_vision": True}})
    with pytest.raises(ConfigError, match="'supports_vision'"):
        load_price_table(path)
    path = write(tmp_path, {"_meta": {"format": "litellm"}, "m": {"input_cost_per_token": 1e-6,
                                                                  "supports_vision": True}})
    assert "m" in load_price_table(path)


def test_shipped_table_is_strict_clean() -> None:
    # the shipped file is in llmmeter's format: it loads under the strict rules with no warning
    assert len(pricing.get_price_table()) > 200
