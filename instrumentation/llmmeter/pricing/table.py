"""Price tables: loading, validating and looking up per-token USD prices.

The file format is LiteLLM's ``model_prices_and_context_window.json`` (USD per token, LiteLLM field
names), so that file loads as-is; llmmeter's own files add a top-level ``"_meta"`` object (``version``,
``zero_priced_providers``) and per-entry ``source`` / ``as_of``. A wrong price is worse than none (it
shows up on an invoice review weeks later), so malformed input fails at load time with a
:class:`~llmmeter.config.ConfigError` naming the file, model key, field and value.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from llmmeter.config import ConfigError
from llmmeter.pricing.normalize import candidates, provider_key_prefixes

# LiteLLM field name -> PriceEntry attribute. Only these are validated; every other field is ignored.
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
_TEXT_FIELDS = ("litellm_provider", "mode", "source", "as_of")
SKIPPED_KEYS = frozenset({"sample_spec"})
META_KEY = "_meta"
DEFAULT_ZERO_PRICED_PROVIDERS = frozenset({"ollama"})
TIER_THRESHOLD_TOKENS = 200_000
ZERO_PRICE_KEY_SUFFIX = "/*"  # price_key of a zero-priced provider's calls, e.g. "ollama/*"
MAX_CACHED_TARGETS = 4096  # (provider, model) answers kept per table; cleared when full


@dataclass(frozen=True, slots=True)
class PriceEntry:
    """One model's prices in USD per token (None: the table does not say; the formula falls back)."""

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
    # The formula's rates with every fallback applied, derived from the fields above (which never change:
    # the entry is frozen) and memoized here by llmmeter.pricing.formula on first use.
    resolved_rates: Any = field(default=None, init=False, repr=False, compare=False)

    @property
    def has_tier(self) -> bool:
        return self.input_above_200k is not None or self.output_above_200k is not None

    def to_dict(self) -> dict[str, Any]:
        """The entry in the file format (LiteLLM field names), without empty fields."""
        out: dict[str, Any] = {}
        for field_name, attr in PRICE_FIELDS.items():
            value = getattr(self, attr)
            if value is not None:
                out[field_name] = value
        for attr in _TEXT_FIELDS:
            value = getattr(self, attr)
            if value is not None:
                out[attr] = value
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


def _entry(origin: str, key: str, raw: Any) -> PriceEntry | None:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"price file {origin}: model {key!r}: expected an object of prices, got {_short(raw)}")
    values: dict[str, Any] = {}
    for field_name, attr in PRICE_FIELDS.items():
        if field_name in raw and raw[field_name] is not None:
            values[attr] = _price(origin, key, field_name, raw[field_name])
    for attr in _TEXT_FIELDS:
        value = raw.get(attr)
        if value is not None and not isinstance(value, str):
            raise ConfigError(
                f"price file {origin}: model {key!r}: field {attr!r}: expected a string, got {_short(value)}"
            )
        if value is not None:
            values[attr] = value
    if "input" not in values and "output" not in values:
        return None  # image/audio/rerank-only entries: nothing llmmeter can price per token
    return PriceEntry(key=key, **values)


@dataclass(frozen=True)
class TableMeta:
    version: str | None = None
    zero_priced_providers: frozenset[str] = frozenset()


def _meta(origin: str, raw: Any) -> TableMeta:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"price file {origin}: field '_meta': expected an object, got {_short(raw)}")
    version = raw.get("version")
    if version is not None and not isinstance(version, str):
        raise ConfigError(f"price file {origin}: field '_meta.version': expected a string, got {_short(version)}")
    zero = raw.get("zero_priced_providers", [])
    if not isinstance(zero, list) or not all(isinstance(p, str) and p for p in zero):
        raise ConfigError(
            f"price file {origin}: field '_meta.zero_priced_providers': expected a list of provider names, "
            f"got {_short(zero)}"
        )
    return TableMeta(version=version, zero_priced_providers=frozenset(p.lower() for p in zero))


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
    ) -> None:
        self._entries = dict(entries)
        self.version = version
        self.zero_priced_providers = frozenset(zero_priced_providers)
        self.aliases: Mapping[str, str] = dict(aliases or {})
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
        )

    def with_aliases(self, aliases: Mapping[str, str]) -> PriceTable:
        """This table with extra model aliases (deployment name -> model name), which win over older ones."""
        return PriceTable(
            self._entries,
            self.version,
            zero_priced_providers=self.zero_priced_providers,
            aliases={**self.aliases, **{k.strip(): v.strip() for k, v in aliases.items()}},
        )


def parse_price_data(data: Any, origin: str, *, default_version: str | None = None) -> PriceTable:
    """Validate decoded price data (llmmeter or LiteLLM format) into a :class:`PriceTable`.

    ``origin`` names the file (or "<dict>") in error messages. Keys starting with ``_`` other than
    ``_meta`` and LiteLLM's ``sample_spec`` are documentation, not models.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"price file {origin}: expected a JSON object mapping model names to prices, got "
                          f"{type(data).__name__}")
    meta = _meta(origin, data[META_KEY]) if META_KEY in data else TableMeta()
    entries: dict[str, PriceEntry] = {}
    for key, raw in data.items():
        if not isinstance(key, str) or key in SKIPPED_KEYS or key.startswith("_"):
            continue
        entry = _entry(origin, key, raw)
        if entry is not None:
            entries[key] = entry
    version = meta.version or default_version or "custom"
    zero = DEFAULT_ZERO_PRICED_PROVIDERS | meta.zero_priced_providers
    return PriceTable(entries, version, zero_priced_providers=zero)


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
