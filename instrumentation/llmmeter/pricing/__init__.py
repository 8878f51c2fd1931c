"""What an LLM call cost in USD: ``price_usage(provider, model, usage) -> Cost``.

The process-wide price table is built once, lazily, on first use (or at start-up via
:func:`get_price_table`, which is where a bad price file should fail):

1. the shipped ``prices.json`` (USD per token, LiteLLM field names, every figure with its source);
2. the file named by ``LLMMETER_PRICE_FILE`` (llmmeter's format or LiteLLM's
   ``model_prices_and_context_window.json`` as-is), whose entries replace shipped ones key by key;
3. anything added with :func:`extend` (a file path or a dict in the same format);
4. negotiated discounts from ``LLMMETER_DISCOUNTS`` (``"openai=0.8,anthropic/claude-opus-4*=0.75"``) and
   ``_meta.discounts`` in price files (:mod:`llmmeter.pricing.discounts`);
5. model aliases from ``LLMMETER_MODEL_ALIASES`` (``"my-gpt4o-deploy=gpt-4o,other=claude-sonnet-4-5"``)
   and :func:`add_aliases`, for Azure deployment names and other private spellings.

An unknown model is never priced at 0 (that would hide spend): its Cost is ``usd=None, priced=False``
and one warning per (provider, model) is logged. Local runtimes (provider ``ollama``) are priced 0
explicitly: they are free per token, which is a known price. Usage that is not a count (a float, a bool,
a negative number, more than 10**12 tokens) is never priced: ``reason="invalid_usage"``.

:func:`bound_cost` is the most a call can cost before it is sent (input tokens and ``max_tokens``), for hard
dollar budgets.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from llmmeter.config import ENV_DISCOUNTS, ENV_MODEL_ALIASES, ENV_PRICE_FILE, ConfigError
from llmmeter.pricing.discounts import find_discount, parse_discounts
from llmmeter.pricing.formula import STANDARD_TIER, compute_priced, rates_for
from llmmeter.pricing.normalize import candidates
from llmmeter.pricing.table import (
    ZERO_PRICE_KEY_SUFFIX,
    PriceEntry,
    PriceTable,
    load_price_table,
    parse_price_data,
)
from llmmeter.usage import MAX_COUNT, Usage, usage_problem

__all__ = [
    "Cost",
    "PriceEntry",
    "PriceResult",
    "PriceTable",
    "add_aliases",
    "bound_cost",
    "candidates",
    "describe",
    "extend",
    "get_price_table",
    "load_price_table",
    "parse_aliases",
    "price_usage",
    "set_price_table",
]

logger = logging.getLogger(__name__)

SHIPPED_FILE = "prices.json"
MAX_WARNED_MODELS = 1000  # unknown-model warnings remembered; past this, warnings stop (bounded memory)


@dataclass(frozen=True)
class Cost:
    """The price of one call.

    ``usd`` is None exactly when ``priced`` is False: either the model has no price (``reason`` is
    ``"unknown_model"``) or the call reported no token counts at all (``"no_usage"``). ``price_key`` is
    the table key the price came from, ``table_version`` the table's version (always set), and
    ``breakdown`` the USD per token type (input, cache_read, cache_creation, cache_creation_1h, output,
    reasoning, and input_audio/input_image/output_audio/output_image when the call had such tokens) when
    priced locally, before any discount.

    ``reason`` when unpriced: ``unknown_model``, ``no_usage``, ``no_price`` (an explicit "no price" entry),
    ``invalid_usage`` (counts that are not ints in [0, 10**12]), ``no_table``, ``error``.
    ``source`` is ``"local"`` (the price table) or ``"provider"`` (the provider reported the cost);
    ``service_tier`` the rate tier used (``standard``, ``flex``, ``priority``, ``batch``);
    ``long_context_threshold`` the input-token threshold whose rates applied (None: base rates);
    ``discount`` the negotiated multiplier applied (None: list price); ``cache_savings`` and
    ``cache_write_premium`` the USD cache reads saved and cache writes cost against the uncached input rate.
    """

    usd: float | None
    priced: bool
    price_key: str | None
    table_version: str
    breakdown: Mapping[str, float] | None = field(default=None, compare=False)
    reason: str | None = field(default=None, compare=False)
    source: str | None = field(default=None, compare=False)
    service_tier: str | None = field(default=None, compare=False)
    long_context_threshold: int | None = field(default=None, compare=False)
    discount: float | None = field(default=None, compare=False)
    cache_savings: float | None = field(default=None, compare=False)
    cache_write_premium: float | None = field(default=None, compare=False)


PriceResult = Cost  # the richer name; Cost stays for existing callers

SOURCE_LOCAL = "local"
SOURCE_PROVIDER = "provider"


# --- the process-wide table -------------------------------------------------------------------

_lock = threading.RLock()
_table: PriceTable | None = None
_extensions: list[PriceTable] = []
_extra_aliases: dict[str, str] = {}
_load_failed: ConfigError | None = None
_refreshed: PriceTable | None = None  # the in-process refresh's latest table (llmmeter.pricing.refresh)
_warned: set[tuple[str | None, str | None]] = set()


def _shipped_table() -> PriceTable:
    ref = resources.files(__name__).joinpath(SHIPPED_FILE)
    with resources.as_file(ref) as path:
        return load_price_table(str(path))


def parse_aliases(raw: str, origin: str = ENV_MODEL_ALIASES) -> dict[str, str]:
    """``"deploy-a=gpt-4o, deploy-b=claude-sonnet-4-5"`` -> ``{"deploy-a": "gpt-4o", ...}``.

    Raises ConfigError naming ``origin`` and the bad item, so a typo fails at start-up.
    """
    aliases: dict[str, str] = {}
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, target = item.partition("=")
        name, target = name.strip(), target.strip()
        if not sep or not name or not target or "=" in target:
            raise ConfigError(f"environment variable {origin}: item {item!r}: expected name=model")
        aliases[name] = target
    return aliases


def _build(replace: tuple[str, PriceTable | None] | None = None) -> PriceTable:
    """Shipped table, then the in-process refresh's table, the price files, extensions, discounts and aliases.
    ``replace=(path, table)`` builds the table as it would be with ``path``'s file replaced by ``table``
    (``llmmeter prices update`` shows that diff before writing)."""
    table = _shipped_table()
    if _refreshed is not None:
        table = table.merged(_refreshed)
    price_files = os.environ.get(ENV_PRICE_FILE, "").strip()
    paths = [p.strip() for p in price_files.split(os.pathsep) if p.strip()]
    replaced = False
    for path in paths:
        if replace is not None and os.path.abspath(path) == os.path.abspath(replace[0]):
            replaced = True
            if replace[1] is not None:
                table = table.merged(replace[1])
            continue
        if not os.path.isfile(path):
            raise ConfigError(f"environment variable {ENV_PRICE_FILE}: price file {path!r} does not exist")
        table = table.merged(load_price_table(path))
    if replace is not None and not replaced and replace[1] is not None:
        table = table.merged(replace[1])
    for extension in _extensions:
        table = table.merged(extension)
    discounts = parse_discounts(os.environ.get(ENV_DISCOUNTS, ""), f"environment variable {ENV_DISCOUNTS}")
    if discounts:
        table = table.with_discounts(discounts)
    aliases = parse_aliases(os.environ.get(ENV_MODEL_ALIASES, ""))
    aliases.update(_extra_aliases)
    return table.with_aliases(aliases) if aliases else table


def table_with(path: str, table: PriceTable | None) -> PriceTable:
    """The table that would be in force with the price file ``path`` holding ``table`` (None: without it)."""
    with _lock:
        return _build((path, table))


def install_refreshed(table: PriceTable | None) -> PriceTable:
    """Layer a freshly fetched table over the shipped one (under the price files), atomically: a call priced
    meanwhile sees the old table or the new one. None drops the layer. Used by :mod:`llmmeter.pricing.refresh`."""
    global _refreshed, _table
    with _lock:
        previous = _refreshed
        _refreshed = table
        try:
            _table = _build()
        except ConfigError:
            _refreshed = previous  # a broken price file is start-up's business; keep what works
            raise
        return _table


def table_age_seconds(now: float | None = None) -> float | None:
    """Seconds since the prices in force were published (``_meta.version`` date) or fetched (``fetched_at``);
    None before the table is loaded or when no layer says. For the ``llmmeter.price_table.age`` gauge."""
    table = _table
    if table is None or not table.as_of:
        return None
    try:
        text = table.as_of.replace("Z", "+00:00")
        stamp = datetime.fromisoformat(text if "T" in text else text[:10] + "T00:00:00+00:00")
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=UTC)
    except ValueError:
        return None
    return max(0.0, (now if now is not None else time.time()) - stamp.timestamp())


def get_price_table() -> PriceTable:
    """The process-wide table, built on first call. Call it at start-up: a bad price file, price file
    variable or alias variable raises :class:`~llmmeter.config.ConfigError` here."""
    global _table, _load_failed
    table = _table
    if table is not None:
        return table
    with _lock:
        if _table is None:
            try:
                _table = _build()
            except ConfigError as exc:
                _load_failed = exc
                raise
            _load_failed = None
            start_refresh = True
        else:
            start_refresh = False
    if start_refresh:  # outside the lock: the refresh thread takes it to install a table
        from llmmeter.pricing import refresh

        try:
            refresh.maybe_start()
        except ConfigError as exc:
            _load_failed = exc
            raise
    return _table


def set_price_table(table: PriceTable | None) -> None:
    """Use ``table`` from now on (tests, programmatic setup). None: rebuild lazily from the shipped file,
    the environment and :func:`extend` / :func:`add_aliases` additions. Forgets which unknown models were
    already warned about."""
    global _table, _load_failed
    with _lock:
        _table = table
        _load_failed = None
        _warned.clear()


def extend(path_or_dict: str | os.PathLike[str] | Mapping[str, Any]) -> PriceTable:
    """Layer more prices over the current table (entries replace same-key entries as a whole).

    Accepts a file path or a dict in the price-file format; validates it immediately (ConfigError).
    Kept across :func:`set_price_table(None) <set_price_table>` rebuilds.
    """
    if isinstance(path_or_dict, Mapping):
        extension = parse_price_data(path_or_dict, "<dict>", default_version="custom")
    else:
        extension = load_price_table(os.fspath(path_or_dict))
    global _table
    with _lock:
        _extensions.append(extension)
        if _table is not None:
            _table = _table.merged(extension)  # keeps the current aliases
        return get_price_table()


def add_aliases(aliases: Mapping[str, str] | str) -> None:
    """Map private model names (Azure deployment names, gateway routes) to priced models, e.g.
    ``{"my-gpt4o-deploy": "gpt-4o"}`` or the ``LLMMETER_MODEL_ALIASES`` string form."""
    parsed = parse_aliases(aliases, "add_aliases()") if isinstance(aliases, str) else dict(aliases)
    for name, target in parsed.items():
        if not isinstance(name, str) or not isinstance(target, str) or not name.strip() or not target.strip():
            raise ConfigError(f"add_aliases(): alias {name!r} -> {target!r}: expected two non-empty model names")
    global _table
    with _lock:
        _extra_aliases.update(parsed)
        if _table is not None:
            _table = _table.with_aliases(parsed)


def _reset_for_tests() -> None:
    """Drop every runtime addition (extensions, aliases, refreshed layer, table). Tests only."""
    global _refreshed
    with _lock:
        _extensions.clear()
        _extra_aliases.clear()
        _refreshed = None
    set_price_table(None)


# --- pricing ----------------------------------------------------------------------------------

def _warn_unknown(provider: str | None, model: str | None, version: str) -> None:
    key = (provider, model)
    if key in _warned:
        return
    with _lock:
        if key in _warned or len(_warned) >= MAX_WARNED_MODELS:
            return
        _warned.add(key)
        full = len(_warned) >= MAX_WARNED_MODELS
    logger.warning(
        "llmmeter: no price for model %r (provider %r) in price table %s; its calls are reported as unpriced. "
        "Add it with LLMMETER_PRICE_FILE or map it with LLMMETER_MODEL_ALIASES.",
        model, provider, version,
    )
    if full:
        logger.warning("llmmeter: %d models without a price; not warning about more.", MAX_WARNED_MODELS)


def _table_or_none() -> PriceTable | None:
    table = _table
    if table is not None:
        return table
    if _load_failed is not None:
        return None  # already reported at start-up; don't re-read a broken file on every call
    try:
        return get_price_table()
    except ConfigError as exc:
        logger.error("llmmeter: price table unusable, calls are reported as unpriced: %s", exc)
        return None


def price_usage(provider: str | None, model: str | None, usage: Usage) -> Cost:
    """The cost of one call. Never raises (pricing is on every call's path).

    * provider in the zero-priced set (``ollama``), or a model named ``ollama/...``: ``usd=0.0, priced=True``,
      whatever the usage.
    * usage with neither input nor output count: ``usd=None, priced=False, reason="no_usage"`` (nothing to
      price; no warning, the model is not at fault). One side missing counts as 0 (embeddings have no output).
    * a count that is not an int in [0, 10**12]: ``reason="invalid_usage"`` (a corrupt report is not a bill).
    * ``usage.provider_cost`` set: that amount, ``source="provider"`` (never discounted again).
    * model without a price: ``usd=None, priced=False, reason="unknown_model"``, one warning per (provider, model);
      an explicit "no price" entry: ``reason="no_price"``, no warning.
    * otherwise the formula in :mod:`llmmeter.pricing.formula`, times the negotiated discount if one applies.
    """
    table = _table_or_none()
    if table is None:
        return Cost(None, False, None, "unavailable", reason="no_table")
    try:
        found = table.target(provider, model)
        if found is not None and found[1] is None:  # zero-priced provider
            return Cost(0.0, True, found[0], table.version, {}, None, SOURCE_LOCAL, STANDARD_TIER)
        if usage is None or (usage.input is None and usage.output is None and usage.provider_cost is None):
            return Cost(None, False, None, table.version, reason="no_usage")
        problem = usage_problem(usage)
        if problem is not None:
            logger.debug("llmmeter: not pricing %r: %s", model, problem)
            return Cost(None, False, None, table.version, reason="invalid_usage")
        if found is None or found[1].no_price is not None:
            if usage.provider_cost is not None:
                return Cost(float(usage.provider_cost), True, None, table.version, source=SOURCE_PROVIDER)
            if found is not None:
                return Cost(None, False, found[0], table.version, reason="no_price")
            _warn_unknown(provider, model, table.version)
            return Cost(None, False, None, table.version, reason="unknown_model")
        key, entry = found
        priced = compute_priced(entry, usage)
        rule = find_discount(table.discounts, provider, model, key) if table.discounts else None
        if usage.provider_cost is not None:
            return Cost(float(usage.provider_cost), True, key, table.version, priced.breakdown, None, SOURCE_PROVIDER,
                        priced.service_tier, priced.threshold, None, priced.cache_savings, priced.cache_write_premium)
        if rule is None:
            return Cost(priced.usd, True, key, table.version, priced.breakdown, None, SOURCE_LOCAL,
                        priced.service_tier, priced.threshold, None, priced.cache_savings, priced.cache_write_premium)
        m = rule.multiplier
        return Cost(priced.usd * m, True, key, table.version, priced.breakdown, None, SOURCE_LOCAL,
                    priced.service_tier, priced.threshold, m, priced.cache_savings * m, priced.cache_write_premium * m)
    except Exception:  # a pricing bug must cost the caller a number, never the call
        logger.debug("llmmeter: pricing failed for %r", model, exc_info=True)
        return Cost(None, False, None, table.version, reason="error")


def bound_cost(
    provider: str | None,
    model: str | None,
    input_tokens: int,
    max_output_tokens: int | None,
    *,
    service_tier: str | None = None,
) -> float | None:
    """The most a call can cost, in USD, before it is sent: for hard dollar budgets, which must never overshoot.

    ``input_tokens`` (an estimate of the prompt; pass an upper bound) are priced at the highest input-side rate
    the call could be billed (uncached input, cache writes incl. 1-hour, audio, image), ``max_output_tokens`` at
    the highest output-side rate (output, reasoning, audio, image), both at the long-context rates when
    ``input_tokens`` is above the entry's threshold and at ``service_tier``'s rates when given (the request's
    ``service_tier``; None: standard). Without ``max_output_tokens`` the entry's ``max_output_tokens`` bounds
    the output; when that is unknown too, or the model has no price, or a count is not an int in
    [0, 10**12], the result is None (no bound: the caller decides). Negotiated discounts apply. 0.0 for
    zero-priced providers. Never raises.
    """
    try:
        if type(input_tokens) is not int or not 0 <= input_tokens <= MAX_COUNT:
            return None
        if max_output_tokens is not None and (type(max_output_tokens) is not int
                                              or not 0 <= max_output_tokens <= MAX_COUNT):
            return None
        table = _table_or_none()
        if table is None:
            return None
        found = table.target(provider, model)
        if found is None:
            return None
        key, entry = found
        if entry is None:
            return 0.0
        if entry.no_price is not None:
            return None
        out_tokens = max_output_tokens if max_output_tokens is not None else entry.max_output_tokens
        if out_tokens is None:
            return None
        rates = rates_for(entry, input_tokens, service_tier)
        in_rate = max(rates.input, rates.cache_creation, rates.cache_creation_1h, rates.audio_input, rates.image_input)
        out_rate = max(rates.output, rates.reasoning or 0.0, rates.audio_output, rates.image_output)
        if entry.mode == "embedding":
            out_rate = 0.0
        usd = input_tokens * in_rate + out_tokens * out_rate
        rule = find_discount(table.discounts, provider, model, key) if table.discounts else None
        return usd * rule.multiplier if rule is not None else usd
    except Exception:
        logger.debug("llmmeter: bound_cost failed for %r", model, exc_info=True)
        return None


def describe(model: str, provider: str | None = None) -> dict[str, Any]:
    """The price entry ``model`` resolves to, for ``llmmeter prices show``; ``{}`` when it has none.

    Keys: ``model``, ``provider``, ``price_key``, ``table_version``, ``candidates`` (names tried) and the
    entry's fields (LiteLLM names, USD per token, plus ``source`` / ``as_of``).
    """
    table = get_price_table()
    base: dict[str, Any] = {"model": model, "provider": provider, "table_version": table.version}
    found = table.target(provider, model)
    if found is None:
        return {}
    key, entry = found
    if entry is None:  # a zero-priced provider
        return {**base, "price_key": key, "zero_priced_provider": key.removesuffix(ZERO_PRICE_KEY_SUFFIX),
                "input_cost_per_token": 0.0, "output_cost_per_token": 0.0}
    if entry.no_price is not None:
        return {**base, "price_key": key, "no_price": entry.no_price, "source": entry.source}
    alias = next((table.aliases[n] for n in candidates(model) if n in table.aliases), None)
    info = {**base, "price_key": key, "candidates": list(candidates(alias or model)), **entry.to_dict()}
    if alias:
        info["alias_of"] = alias
    return info
