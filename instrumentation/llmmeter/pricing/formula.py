"""The one cost formula: a :class:`~llmmeter.usage.Usage` times a :class:`PriceEntry`.

Usage follows semconv (input INCLUDES cache reads and writes; reasoning is a subset of output), so
nothing is billed twice, whatever the provider's own usage shape was:

* uncached input (input - cache_read - cache_creation) at ``input_cost_per_token``; of it, audio and image
  tokens at ``input_cost_per_audio_token`` / ``input_cost_per_image_token`` (else the input rate);
* cache reads at ``cache_read_input_token_cost`` (else the input rate: an unknown discount is not assumed);
* 5-minute cache writes (cache_creation - cache_creation_1h) at ``cache_creation_input_token_cost``
  (else the input rate); 1-hour writes at ``cache_creation_input_token_cost_above_1hr`` (else the
  5-minute write rate);
* output at ``output_cost_per_token``; reasoning tokens, when the entry has
  ``output_cost_per_reasoning_token``, at that rate instead (else they are ordinary output); audio and
  image output at ``output_cost_per_audio_token`` / ``output_cost_per_image_token`` (else the output rate);
* long context: when input is above an entry's ``*_above_<N>k_tokens`` threshold (200k for Claude and Gemini
  2.5 Pro, 272k for GPT-5.4), those rates replace the base rates for the whole call, as Anthropic, Google and
  OpenAI bill long-context requests;
* service tiers: a call served at ``flex``, ``priority`` or ``batch`` is priced with the entry's ``*_flex`` /
  ``*_priority`` / ``*_batches`` rates when the entry has them (else at the standard rates, and the result
  says "standard": the span shows which rate was used);
* embeddings (``mode == "embedding"``): input only.

Counts must have passed :func:`llmmeter.usage.usage_problem` (ints in [0, 10**12]); the formula clamps
subsets to their totals, so the result is never negative.
"""

from __future__ import annotations

from typing import NamedTuple

from llmmeter.pricing.table import SERVICE_TIER_SUFFIXES, PriceEntry
from llmmeter.usage import Usage

STANDARD_TIER = "standard"
_TIER_NAMES = {suffix: tier for tier, suffix in SERVICE_TIER_SUFFIXES.items()}


class Rates(NamedTuple):
    """Every rate of one (service tier, long-context threshold), fallbacks applied; ``tier`` is the one used."""

    input: float
    output: float
    cache_read: float
    cache_creation: float
    cache_creation_1h: float
    reasoning: float | None
    audio_input: float
    image_input: float
    audio_output: float
    image_output: float
    tier: str
    threshold: int | None


class Priced(NamedTuple):
    usd: float
    breakdown: dict[str, float]
    service_tier: str
    threshold: int | None  # the long-context threshold whose rates applied, None: base rates
    cache_savings: float  # what the cache reads saved against the uncached input rate
    cache_write_premium: float  # what the cache writes cost above the uncached input rate


def _first(*rates: float | None) -> float:
    for rate in rates:
        if rate is not None:
            return rate
    return 0.0


def _resolve(entry: PriceEntry, suffix: str, threshold: int | None) -> Rates:
    rates = entry.rates
    if suffix and f"input_cost_per_token{suffix}" not in rates and f"output_cost_per_token{suffix}" not in rates:
        suffix = ""  # the entry has no rates for this tier: standard rates, and the result says so
    context = f"_above_{threshold // 1000}k_tokens" if threshold else ""
    if context and f"input_cost_per_token{context}{suffix}" not in rates and \
            f"output_cost_per_token{context}{suffix}" not in rates and f"input_cost_per_token{context}" not in rates:
        context, threshold = "", None

    def get(name: str) -> float | None:
        for candidate in (f"{name}{context}{suffix}", f"{name}{suffix}", f"{name}{context}" if suffix else ""):
            if candidate and candidate in rates:
                return rates[candidate]
        return None

    in_rate = _first(get("input_cost_per_token"), entry.input)
    out_rate = _first(get("output_cost_per_token"), entry.output)
    write_rate = _first(get("cache_creation_input_token_cost"), in_rate)
    return Rates(
        input=in_rate,
        output=out_rate,
        cache_read=_first(get("cache_read_input_token_cost"), in_rate),
        cache_creation=write_rate,
        cache_creation_1h=_first(get("cache_creation_input_token_cost_above_1hr"), write_rate),
        reasoning=get("output_cost_per_reasoning_token"),
        audio_input=_first(get("input_cost_per_audio_token"), in_rate),
        image_input=_first(get("input_cost_per_image_token"), in_rate),
        audio_output=_first(get("output_cost_per_audio_token"), out_rate),
        image_output=_first(get("output_cost_per_image_token"), out_rate),
        tier=_TIER_NAMES.get(suffix, STANDARD_TIER),
        threshold=threshold,
    )


def rates_for(entry: PriceEntry, total_input: int, service_tier: str | None = None) -> Rates:
    """The rates a call with ``total_input`` tokens at ``service_tier`` is billed at; memoized on the entry."""
    threshold = None
    for candidate in entry.thresholds:  # ascending: the highest threshold the input is above wins
        if total_input > candidate:
            threshold = candidate
    suffix = SERVICE_TIER_SUFFIXES.get(service_tier.lower(), "") if service_tier.__class__ is str else ""
    memo = entry.resolved_rates
    if memo is None:
        memo = {}
        object.__setattr__(entry, "resolved_rates", memo)  # a memo on the frozen entry, not a price change
    key = (suffix, threshold)
    rates = memo.get(key)
    if rates is None:
        rates = memo[key] = _resolve(entry, suffix, threshold)
    return rates


def compute_priced(entry: PriceEntry, usage: Usage) -> Priced:
    """USD for ``usage`` at ``entry``'s prices, with the breakdown by token type and the rates used."""
    total_in = usage.input or 0
    out = usage.output or 0
    rates = rates_for(entry, total_in, usage.service_tier)
    if entry.mode == "embedding":
        usd = total_in * rates.input
        return Priced(usd, {"input": usd}, rates.tier, rates.threshold, 0.0, 0.0)

    if not (usage.cache_read or usage.cache_creation or usage.reasoning or usage.audio_input or usage.image_input
            or usage.audio_output or usage.image_output):  # the common call: plain input and output
        in_usd, out_usd = total_in * rates.input, out * rates.output
        breakdown = {"input": in_usd, "cache_read": 0.0, "cache_creation": 0.0, "cache_creation_1h": 0.0,
                     "output": out_usd, "reasoning": 0.0}
        return Priced(in_usd + out_usd, breakdown, rates.tier, rates.threshold, 0.0, 0.0)
    cache_read = min(usage.cache_read, total_in)
    cache_creation = min(usage.cache_creation, total_in - cache_read)
    cache_1h = min(usage.cache_creation_1h, cache_creation)
    uncached = total_in - cache_read - cache_creation
    audio_in = min(usage.audio_input, uncached)
    image_in = min(usage.image_input, uncached - audio_in)
    reasoning = min(usage.reasoning, out)
    audio_out = min(usage.audio_output, out - reasoning)
    image_out = min(usage.image_output, out - reasoning - audio_out)
    breakdown = {
        "input": (uncached - audio_in - image_in) * rates.input,
        "cache_read": cache_read * rates.cache_read,
        "cache_creation": (cache_creation - cache_1h) * rates.cache_creation,
        "cache_creation_1h": cache_1h * rates.cache_creation_1h,
        # Reasoning tokens without a rate of their own are ordinary output (shown apart all the same).
        "output": (out - reasoning - audio_out - image_out) * rates.output,
        "reasoning": reasoning * (rates.output if rates.reasoning is None else rates.reasoning),
    }
    if audio_in or image_in or audio_out or image_out:
        breakdown["input_audio"] = audio_in * rates.audio_input
        breakdown["input_image"] = image_in * rates.image_input
        breakdown["output_audio"] = audio_out * rates.audio_output
        breakdown["output_image"] = image_out * rates.image_output
    savings = cache_read * rates.input - breakdown["cache_read"]
    premium = breakdown["cache_creation"] + breakdown["cache_creation_1h"] - cache_creation * rates.input
    return Priced(sum(breakdown.values()), breakdown, rates.tier, rates.threshold, savings, premium)


def compute(entry: PriceEntry, usage: Usage) -> tuple[float, dict[str, float]]:
    """USD for ``usage`` at ``entry``'s prices, and the breakdown by token type (USD per part)."""
    priced = compute_priced(entry, usage)
    return priced.usd, priced.breakdown
