"""Price tables: loading, validating and looking up per-token USD prices.

The file format is LiteLLM's ``model_prices_and_context_window.json`` (USD per token, LiteLLM field
names), so that file loads as-is; llmmeter's own files add a top-level ``"_meta"`` object (``version``,
``zero_priced_providers``) and per-entry ``source`` / ``as_of``. A wrong price is worse than none (it
shows up on an invoice review weeks later), so malformed input fails at load time with a
:class:`~llmmeter.config.ConfigError` naming the file, model key, field and value.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from llmmeter.config import ConfigError
from llmmeter.pricing.discounts import DiscountRule, parse_discounts
from llmmeter.pricing.litellm_schema import CAPABILITY_PREFIX, LITELLM_FIELDS
from llmmeter.pricing.normalize import candidates, provider_key_prefixes

_log = logging.getLogger(__name__)

# LiteLLM field name -> PriceEntry attribute (the standard-tier rates, kept as attributes for readers).
PRICE_FIELDS: dict[str, str] = {
    "input_cost_per_token": "input",
    "output_cost_per_token": "output",
    "cache_read_input_token_cost": "cache_read",
    "cache_creation_input_token_cost": "cache_creation",
    "cache_creation_input_token_cost_above_1hr": "cache_creation_1h",
    "output_cost_per_reasoning_token": "reasoning",
    "input_cost_per_token_above_200k_tokens": "input_above_200k",
    "output_cost_per_token_above_200k_tokens": "output_above_200k",
    "cache_read_input_token_cost_above_200k_tokens": "cache_read_above_200k",
    "cache_creation_input_token_cost_above_200k_tokens": "cache_creation_above_200k",
    "cache_creation_input_token_cost_above_1hr_above_200k_tokens": "cache_creation_1h_above_200k",
    "output_cost_per_reasoning_token_above_200k_tokens": "reasoning_above_200k",
}
# Every per-token rate llmmeter prices by, in LiteLLM's names. Each may carry a long-context suffix
# ("_above_272k_tokens": the rate for a call whose input is above 272,000 tokens) and then a service-tier
# suffix ("_flex", "_priority", "_batches"), in that order, as LiteLLM spells them.
RATE_BASES: tuple[str, ...] = (
    "input_cost_per_token",
    "output_cost_per_token",
    "cache_read_input_token_cost",
    "cache_creation_input_token_cost",
    "cache_creation_input_token_cost_above_1hr",
    "output_cost_per_reasoning_token",
    "input_cost_per_audio_token",
    "output_cost_per_audio_token",
    "cache_read_input_audio_token_cost",
    "input_cost_per_image_token",
    "output_cost_per_image_token",
)
# Service tier (as providers report it) -> field suffix of its rates. Others ("default", "standard", "auto",
# "scale") bill at the standard rates.
SERVICE_TIER_SUFFIXES: dict[str, str] = {"flex": "_flex", "priority": "_priority", "batch": "_batches"}
_RATE_FIELD = re.compile(
    r"^(?P<base>" + "|".join(sorted(RATE_BASES, key=len, reverse=True)) + r")"
    r"(?:_above_(?P<k>[1-9]\d*)k_tokens)?(?P<svc>_flex|_priority|_batches)?$"
)
_TEXT_FIELDS = ("litellm_provider", "mode", "source", "as_of")
# More fields an llmmeter-format entry may have: provenance notes, an explicit "no price" reason, and the
# context window (bound_cost() uses max_output_tokens when a call sets no max_tokens).
_NOTE_FIELDS = ("verified_against", "note", "no_price")
_INT_FIELDS = ("max_tokens", "max_input_tokens", "max_output_tokens")
KNOWN_FIELDS: frozenset[str] = frozenset((*_TEXT_FIELDS, *_NOTE_FIELDS, *_INT_FIELDS))
SKIPPED_KEYS = frozenset({"sample_spec"})
META_KEY = "_meta"
META_FIELDS = frozenset({"version", "zero_priced_providers", "discounts", "format", "source", "fetched_at", "unit",
                         "notes", "cross_checked", "cross_checked_with"})
FORMAT_LITELLM = "litellm"
DEFAULT_ZERO_PRICED_PROVIDERS = frozenset({"ollama"})
TIER_THRESHOLD_TOKENS = 200_000
ZERO_PRICE_KEY_SUFFIX = "/*"  # price_key of a zero-priced provider's calls, e.g. "ollama/*"
MAX_CACHED_TARGETS = 4096  # (provider, model) answers kept per table; cleared when full


def is_rate_field(name: str) -> bool:
    """True for a per-token rate llmmeter prices by (any long-context / service-tier variant)."""
    return _RATE_FIELD.match(name) is not None


@dataclass(frozen=True, slots=True)
class PriceEntry:
    """One model's prices in USD per token (None: the table does not say; the formula falls back).

    ``rates`` holds every rate of the entry by its LiteLLM field name, tiers included; the attributes
    are the standard-tier ones, for readers. ``no_price`` is set on an explicit "no price" entry (a model
    known to have no per-token price): its calls are unpriced with that reason, without a warning.
    """

    key: str
    input: float | None = None
    output: float | None = None
    cache_read: float | None = None
    cache_creation: float | None = None
    cache_creation_1h: float | None = None
    reasoning: float | None = None
    input_above_200k: float | None = None
    output_above_200k: float | None = None
    cache_read_above_200k: float | None = None
    cache_creation_above_200k: float | None = None
    cache_creation_1h_above_200k: float | None = None
    reasoning_above_200k: float | None = None
    litellm_provider: str | None = None
    mode: str | None = None
    source: str | None = None
    as_of: str | None = None
    rates: Mapping[str, float] = field(default_factory=dict, compare=False)
    # Long-context thresholds in tokens (sorted), from the "_above_<N>k_tokens" fields.
    thresholds: tuple[int, ...] = ()
    max_output_tokens: int | None = None
    no_price: str | None = None
    # The formula's rates per (service tier, threshold) with every fallback applied, derived from the fields
    # above (which never change: the entry is frozen) and memoized here by llmmeter.pricing.formula.
    resolved_rates: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # An entry built from its attributes (PriceEntry("m", 1e-6, ...)) gets the same rates as one from a file.
        if not self.rates:
            rates = {name: value for name, attr in PRICE_FIELDS.items() if (value := getattr(self, attr)) is not None}
            if rates:
                object.__setattr__(self, "rates", rates)
                if not self.thresholds and any(name.endswith("_above_200k_tokens") for name in rates):
                    object.__setattr__(self, "thresholds", (TIER_THRESHOLD_TOKENS,))

    @property
    def has_tier(self) -> bool:
        return bool(self.thresholds)

    def to_dict(self) -> dict[str, Any]:
        """The entry in the file format (LiteLLM field names), without empty fields."""
        out: dict[str, Any] = dict(self.rates)
        for field_name, attr in PRICE_FIELDS.items():
            value = getattr(self, attr)
            if value is not None:
                out[field_name] = value
        for attr in _TEXT_FIELDS:
            value = getattr(self, attr)
            if value is not None:
                out[attr] = value
        if self.max_output_tokens is not None:
            out["max_output_tokens"] = self.max_output_tokens
        if self.no_price is not None:
            out["no_price"] = self.no_price
        return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _price(origin: str, key: str, field_name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ConfigError(
            f"price file {origin}: model {key!r}: field {field_name!r}: "
            f"expected a non-negative number (USD per token), got {_short(value)}"
        )
    return float(value)


def closest_field(name: str, litellm: bool = False) -> str | None:
    """The known field ``name`` is most likely a typo of (for error messages), or None."""
    known = [*(f"{b}{s}" for b in RATE_BASES for s in ("", "_flex", "_priority", "_batches")), *KNOWN_FIELDS,
             *PRICE_FIELDS]
    if litellm:
        known.extend(LITELLM_FIELDS)
    match = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
    return match[0] if match else None


def _unknown_field(origin: str, key: str, name: str, litellm: bool, unknown: list[str]) -> None:
    """An unknown field: an error in llmmeter's format; in LiteLLM's, an error when it is a near miss of a rate
    llmmeter prices by (it would price at $0), else remembered for one warning (LiteLLM adds fields)."""
    if litellm and (name in LITELLM_FIELDS or name.startswith(CAPABILITY_PREFIX)):
        return
    closest = closest_field(name, litellm)
    if not litellm or (closest is not None and is_rate_field(closest)):
        hint = f" (did you mean {closest!r}?)" if closest else ""
        raise ConfigError(f"price file {origin}: model {key!r}: unknown field {name!r}{hint}")
    unknown.append(f"{key}.{name}")


def _entry(origin: str, key: str, raw: Any, litellm: bool, unknown: list[str]) -> PriceEntry | None:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"price file {origin}: model {key!r}: expected an object of prices, got {_short(raw)}")
    values: dict[str, Any] = {}
    rates: dict[str, float] = {}
    thresholds: set[int] = set()
    for name, value in raw.items():
        match = _RATE_FIELD.match(name) if isinstance(name, str) else None
        if match is not None:
            if value is None:
                continue
            rates[name] = _price(origin, key, name, value)
            if match.group("k"):
                thresholds.add(int(match.group("k")) * 1000)
            attr = PRICE_FIELDS.get(name)
            if attr is not None:
                values[attr] = rates[name]
        elif name in _TEXT_FIELDS or name in _NOTE_FIELDS:
            if value is not None and not isinstance(value, str):
                raise ConfigError(
                    f"price file {origin}: model {key!r}: field {name!r}: expected a string, got {_short(value)}"
                )
            if value is not None and name in _TEXT_FIELDS:
                values[name] = value
            elif value is not None and name == "no_price":
                values["no_price"] = value
        elif name in _INT_FIELDS:
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
                if not litellm:  # LiteLLM's sample_spec-style strings are LiteLLM's business
                    raise ConfigError(f"price file {origin}: model {key!r}: field {name!r}: expected a "
                                      f"non-negative number of tokens, got {_short(value)}")
            elif value is not None and name == "max_output_tokens":
                values["max_output_tokens"] = int(value)
        else:
            _unknown_field(origin, key, str(name), litellm, unknown)
    if "input_cost_per_token" not in rates and "output_cost_per_token" not in rates:
        if values.get("no_price"):
            return PriceEntry(key=key, **values)
        if litellm and raw:
            return None  # LiteLLM's image/audio/rerank-only entries: nothing llmmeter can price per token
        raise ConfigError(
            f"price file {origin}: model {key!r}: no rate at all (expected 'input_cost_per_token' and/or "
            f"'output_cost_per_token' in USD per token, or \"no_price\": \"<why>\" for a model known to have none)"
        )
    if values.get("no_price"):
        raise ConfigError(f"price file {origin}: model {key!r}: field 'no_price' on an entry that has rates")
    return PriceEntry(key=key, rates=rates, thresholds=tuple(sorted(thresholds)), **values)


@dataclass(frozen=True)
class TableMeta:
    version: str | None = None
    zero_priced_providers: frozenset[str] = frozenset()
    discounts: tuple[DiscountRule, ...] = ()
    litellm: bool = False
    as_of: str | None = None  # ISO date (or date-time) of the prices, for the table-age metric


_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")


def _meta(origin: str, raw: Any) -> TableMeta:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"price file {origin}: field '_meta': expected an object, got {_short(raw)}")
    for name in raw:
        if name not in META_FIELDS:
            close = difflib.get_close_matches(str(name), META_FIELDS, n=1, cutoff=0.7)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"price file {origin}: field '_meta.{name}': unknown field{hint}")
    version = raw.get("version")
    if version is not None and not isinstance(version, str):
        raise ConfigError(f"price file {origin}: field '_meta.version': expected a string, got {_short(version)}")
    zero = raw.get("zero_priced_providers", [])
    if not isinstance(zero, list) or not all(isinstance(p, str) and p for p in zero):
        raise ConfigError(
            f"price file {origin}: field '_meta.zero_priced_providers': expected a list of provider names, "
            f"got {_short(zero)}"
        )
    discounts_raw = raw.get("discounts", {})
    if not isinstance(discounts_raw, Mapping):
        raise ConfigError(f"price file {origin}: field '_meta.discounts': expected an object such as "
                          f'{{"openai": 0.8}}, got {_short(discounts_raw)}')
    discounts = parse_discounts(discounts_raw, f"price file {origin}: field '_meta.discounts'")
    fetched = raw.get("fetched_at")
    as_of = next((v for v in (fetched, version) if isinstance(v, str) and _DATE.match(v)), None)
    return TableMeta(version=version, zero_priced_providers=frozenset(p.lower() for p in zero),
                     discounts=discounts, litellm=raw.get("format") == FORMAT_LITELLM, as_of=as_of)


class PriceTable(Mapping[str, PriceEntry]):
    """An immutable price table: entries by key, zero-priced providers, model aliases and a version.

    Lookups (:meth:`target`) are cached per table; a changed table is a new object (``merged``,
    ``with_aliases``), so no cache ever serves a stale price.
    """

    def __init__(
        self,
        entries: Mapping[str, PriceEntry],
        version: str,
        *,
        zero_priced_providers: frozenset[str] = DEFAULT_ZERO_PRICED_PROVIDERS,
        aliases: Mapping[str, str] | None = None,
        origins: tuple[str, ...] = (),
        discounts: tuple[DiscountRule, ...] = (),
        as_of: str | None = None,
    ) -> None:
        self._entries = dict(entries)
        self.version = version
        self.zero_priced_providers = frozenset(zero_priced_providers)
        self.aliases: Mapping[str, str] = dict(aliases or {})
        self.origins = origins
        self.discounts = discounts  # later rules win ties (see llmmeter.pricing.discounts)
        self.as_of = as_of  # ISO date of the newest layer's prices (None: unknown)
        self._targets: dict[tuple[Any, Any], tuple[str, PriceEntry | None] | None] = {}

    # Mapping protocol
    def __getitem__(self, key: str) -> PriceEntry:
        return self._entries[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"PriceTable(version={self.version!r}, entries={len(self)}, aliases={len(self.aliases)})"

    def is_zero_priced(self, provider: str | None, model: str | None) -> bool:
        """True for local runtimes (ollama): they cost nothing per token, which is a price, not a gap."""
        if provider and provider.lower() in self.zero_priced_providers:
            return True
        if model and "/" in model:
            head = model.split("/", 1)[0].lower()
            return head in self.zero_priced_providers or head.removesuffix("_chat") in self.zero_priced_providers
        return False

    def target(self, provider: str | None, model: str | None) -> tuple[str, PriceEntry | None] | None:
        """What prices a call to ``model``: ``(key, entry)``; ``(key, None)`` for a zero-priced provider
        (key ``<provider>/*``); None when nothing does. One dict lookup per call after the first: the
        answer depends only on this (immutable) table and the two names."""
        key = (provider, model)
        try:
            return self._targets[key]
        except KeyError:
            pass
        except TypeError:  # unhashable garbage for a model name: not priced, not cached
            return None
        found: tuple[str, PriceEntry | None] | None
        if self.is_zero_priced(provider, model):
            found = ((provider or (model or "").split("/", 1)[0]).lower() + ZERO_PRICE_KEY_SUFFIX, None)
        elif isinstance(model, str) and model.strip():
            found = self.resolve(provider, model)
        else:
            found = None
        if len(self._targets) >= MAX_CACHED_TARGETS:  # bounded: model names can come from responses
            self._targets.clear()
        self._targets[key] = found
        return found

    def resolve(self, provider: str | None, model: str) -> tuple[str, PriceEntry] | None:
        """The (key, entry) ``model`` is priced by, or None. Aliases first, then exact, then normalized names;
        at each name the provider's own key (``groq/<name>``) before the bare one. Not cached: calls are
        priced through :meth:`target`, which is."""
        provider = provider.lower() if provider else None
        names = list(candidates(model))
        for name in list(names):
            target = self.aliases.get(name)
            if target:
                names = list(candidates(target))
                break
        prefixes = provider_key_prefixes(provider)
        entries = self._entries
        for name in names:
            for prefix in prefixes:
                entry = entries.get(f"{prefix}/{name}")
                if entry is not None:
                    return entry.key, entry
            entry = entries.get(name)
            if entry is not None:
                return entry.key, entry
        return None

    def merged(self, other: PriceTable) -> PriceTable:
        """``other`` layered over this table: an entry in ``other`` replaces this table's entry with the same
        key as a whole (no field-by-field mix of two price lists); zero-priced providers and aliases add up."""
        entries = {**self._entries, **other._entries}
        return PriceTable(
            entries,
            f"{self.version}+{other.version}",
            zero_priced_providers=self.zero_priced_providers | other.zero_priced_providers,
            aliases={**self.aliases, **other.aliases},
            origins=self.origins + other.origins,
            discounts=other.discounts + self.discounts,
            as_of=max(filter(None, (self.as_of, other.as_of)), default=None),
        )

    def with_discounts(self, discounts: tuple[DiscountRule, ...]) -> PriceTable:
        """This table with more discount rules, which win over the table's own."""
        return PriceTable(self._entries, self.version, zero_priced_providers=self.zero_priced_providers,
                          aliases=self.aliases, origins=self.origins, discounts=discounts + self.discounts,
                          as_of=self.as_of)

    def with_aliases(self, aliases: Mapping[str, str]) -> PriceTable:
        """This table with extra model aliases (deployment name -> model name), which win over older ones."""
        return PriceTable(
            self._entries,
            self.version,
            zero_priced_providers=self.zero_priced_providers,
            aliases={**self.aliases, **{k.strip(): v.strip() for k, v in aliases.items()}},
            origins=self.origins,
            discounts=self.discounts,
            as_of=self.as_of,
        )


def parse_price_data(data: Any, origin: str, *, default_version: str | None = None) -> PriceTable:
    """Validate decoded price data (llmmeter or LiteLLM format) into a :class:`PriceTable`.

    ``origin`` names the file (or "<dict>") in error messages. Keys starting with ``_`` other than
    ``_meta`` are documentation, not models. A file is in LiteLLM's format when it has LiteLLM's
    ``sample_spec`` entry or ``"_meta": {"format": "litellm"}``: LiteLLM's own fields are then known
    (:mod:`llmmeter.pricing.litellm_schema`) and its entries without a per-token rate are skipped. In
    llmmeter's format every field must be one llmmeter knows, and every entry must have a rate (or say
    ``"no_price"``); an unknown field is an error naming the file, model and field, with the closest name.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"price file {origin}: expected a JSON object mapping model names to prices, got "
                          f"{type(data).__name__}")
    meta = _meta(origin, data[META_KEY]) if META_KEY in data else TableMeta()
    litellm = meta.litellm or "sample_spec" in data
    entries: dict[str, PriceEntry] = {}
    unknown: list[str] = []
    for key, raw in data.items():
        if not isinstance(key, str) or key in SKIPPED_KEYS or key.startswith("_"):
            continue
        entry = _entry(origin, key, raw, litellm, unknown)
        if entry is not None:
            entries[key] = entry
    if unknown:
        listed = ", ".join(unknown[:10]) + (" ..." if len(unknown) > 10 else "")
        _log.warning("llmmeter: price file %s: %d field(s) neither llmmeter nor LiteLLM's schema knows, not "
                     "priced by: %s", origin, len(unknown), listed)
    version = meta.version or default_version or "custom"
    zero = DEFAULT_ZERO_PRICED_PROVIDERS | meta.zero_priced_providers
    return PriceTable(entries, version, zero_priced_providers=zero, origins=(origin,), discounts=meta.discounts,
                      as_of=meta.as_of)


def load_price_table(path: str) -> PriceTable:
    """Read and validate a price file; a table without ``_meta.version`` is versioned by its content hash."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        raise ConfigError(f"price file {path}: cannot read it ({exc.strerror or exc})") from None
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        where = f" at line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise ConfigError(f"price file {path}: not valid JSON{where}: {exc}") from None
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()[:12]
    return parse_price_data(data, path, default_version=digest)
