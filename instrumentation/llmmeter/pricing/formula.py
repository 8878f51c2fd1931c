"""The one cost formula: a :class:`~llmmeter.usage.Usage` times a :class:`PriceEntry`.

Usage follows semconv (input INCLUDES cache reads and writes; reasoning is a subset of output), so
nothing is billed twice, whatever the provider's own usage shape was:

* uncached input (input - cache_read - cache_creation) at ``input_cost_per_token``;
* cache reads at ``cache_read_input_token_cost`` (else the input rate: an unknown discount is not assumed);
* 5-minute cache writes (cache_creation - cache_creation_1h) at ``cache_creation_input_token_cost``
  (else the input rate); 1-hour writes at ``cache_creation_input_token_cost_above_1hr`` (else the
  5-minute write rate);
* output at ``output_cost_per_token``; reasoning tokens, when the entry has
  ``output_cost_per_reasoning_token``, at that rate instead (else they are ordinary output);
* when input > 200,000 tokens and the entry has ``*_above_200k_tokens`` prices, those replace the base
  rates for the whole call (that is how Anthropic and Google bill long-context requests);
* embeddings (``mode == "embedding"``): input only.

Counts are sanitized first (negative, non-int or absurd values count as 0), so the result is never
negative and the function never raises.
"""

from __future__ import annotations

from typing import Any

from llmmeter.pricing.table import TIER_THRESHOLD_TOKENS, PriceEntry
from llmmeter.usage import Usage

_MAX_TOKENS = 10**12  # more tokens than any call can have: a corrupt count, not a bill


Rates = tuple[float, float, float, float, float, float | None]  # in, out, read, write, write_1h, reasoning


def _count(value: Any) -> int:
    if type(value) is int and 0 <= value <= _MAX_TOKENS:
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return 0
    return min(value, _MAX_TOKENS)


def _first(*rates: float | None) -> float:
    for rate in rates:
        if rate is not None:
            return rate
    return 0.0


def _resolve_rates(entry: PriceEntry) -> tuple[Rates, Rates | None]:
    """(base rates, rates above 200k input tokens or None), each with every fallback applied."""
    in_rate = _first(entry.input)
    out_rate = _first(entry.output)
    write_rate = _first(entry.cache_creation, in_rate)
    base: Rates = (
        in_rate,
        out_rate,
        _first(entry.cache_read, in_rate),
        write_rate,
        _first(entry.cache_creation_1h, write_rate),
        entry.reasoning,
    )
    if not entry.has_tier:
        return base, None
    in_rate = _first(entry.input_above_200k, entry.input)
    out_rate = _first(entry.output_above_200k, entry.output)
    write_rate = _first(entry.cache_creation_above_200k, entry.cache_creation, in_rate)
    tier: Rates = (
        in_rate,
        out_rate,
        _first(entry.cache_read_above_200k, entry.cache_read, in_rate),
        write_rate,
        _first(entry.cache_creation_1h_above_200k, entry.cache_creation_1h, write_rate),
        entry.reasoning_above_200k if entry.reasoning_above_200k is not None else entry.reasoning,
    )
    return base, tier


def _rates_of(entry: PriceEntry, tiered: bool) -> Rates:
    """The entry's rates, resolved once per entry (the fallbacks depend only on the entry's own fields)."""
    rates = entry.resolved_rates
    if rates is None:
        rates = _resolve_rates(entry)
        object.__setattr__(entry, "resolved_rates", rates)  # a memo on the frozen entry, not a price change
    base, tier = rates
    return tier if tiered and tier is not None else base


def compute(entry: PriceEntry, usage: Usage) -> tuple[float, dict[str, float]]:
    """USD for ``usage`` at ``entry``'s prices, and the breakdown by token type (USD per part)."""
    total_in = _count(usage.input)
    out = _count(usage.output)
    if entry.mode == "embedding":
        usd = total_in * _first(entry.input)
        return usd, {"input": usd}

    cache_read = min(_count(usage.cache_read), total_in)
    cache_creation = min(_count(usage.cache_creation), total_in - cache_read)
    cache_1h = min(_count(usage.cache_creation_1h), cache_creation)
    uncached = total_in - cache_read - cache_creation
    reasoning = min(_count(usage.reasoning), out)
    in_rate, out_rate, read_rate, write_rate, write_1h_rate, reasoning_rate = _rates_of(
        entry, total_in > TIER_THRESHOLD_TOKENS
    )
    breakdown = {
        "input": uncached * in_rate,
        "cache_read": cache_read * read_rate,
        "cache_creation": (cache_creation - cache_1h) * write_rate,
        "cache_creation_1h": cache_1h * write_1h_rate,
        # Reasoning tokens without a rate of their own are ordinary output (shown apart all the same).
        "output": (out - reasoning) * out_rate,
        "reasoning": reasoning * (out_rate if reasoning_rate is None else reasoning_rate),
    }
    return sum(breakdown.values()), breakdown
