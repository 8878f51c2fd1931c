"""Negotiated discounts: a multiplier on the list price, per provider or per provider and model pattern.

``LLMMETER_DISCOUNTS="openai=0.8,anthropic/claude-opus-4*=0.75"`` (or ``"_meta": {"discounts": {...}}`` in a
price file) says the organisation pays 80 % of OpenAI's list prices and 75 % of Anthropic's for Claude Opus 4
models. The most specific rule wins: a rule with a model pattern beats the provider's plain rule, and a longer
pattern beats a shorter one. Patterns are shell-style (``fnmatch``), matched case-insensitively against the
model name the call reported and the price-table key it resolved to. A multiplier is in (0, 1]: a surcharge is a
different price, written as one in a price file.

Provider-reported costs (OpenRouter's ``usage.cost``) are what was billed and are never discounted again.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from llmmeter.config import ConfigError


@dataclass(frozen=True, slots=True)
class DiscountRule:
    provider: str
    pattern: str | None  # fnmatch pattern on the model name, lower case; None: every model of the provider
    multiplier: float

    @property
    def spelled(self) -> str:
        return f"{self.provider}/{self.pattern}" if self.pattern else self.provider


def _rule(origin: str, target: str, value: Any) -> DiscountRule:
    provider, _, pattern = target.strip().partition("/")
    provider, pattern = provider.strip().lower(), pattern.strip().lower()
    if not provider:
        raise ConfigError(f"{origin}: discount {target!r}: expected provider or provider/model-pattern")
    try:
        multiplier = float(value)
    except (TypeError, ValueError):
        multiplier = math.nan
    if isinstance(value, bool) or not math.isfinite(multiplier) or not 0 < multiplier <= 1:
        raise ConfigError(f"{origin}: discount {target!r}: expected a multiplier in (0, 1] such as 0.8, got {value!r}")
    return DiscountRule(provider, pattern or None, multiplier)


def parse_discounts(raw: str | Mapping[str, Any], origin: str) -> tuple[DiscountRule, ...]:
    """``"openai=0.8,anthropic/claude-opus-4*=0.75"`` or ``{"openai": 0.8, ...}`` -> rules.

    Raises ConfigError naming ``origin`` (the variable or file) and the bad item.
    """
    rules: list[DiscountRule] = []
    if isinstance(raw, Mapping):
        for target, value in raw.items():
            rules.append(_rule(origin, str(target), value))
        return tuple(rules)
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        target, sep, value = item.rpartition("=")
        if not sep or not target.strip():
            raise ConfigError(f"{origin}: item {item!r}: expected provider[/model-pattern]=multiplier")
        rules.append(_rule(origin, target, value.strip()))
    return tuple(rules)


def find_discount(
    rules: tuple[DiscountRule, ...], provider: str | None, model: str | None, price_key: str | None
) -> DiscountRule | None:
    """The most specific rule for this call, or None."""
    if not rules or not provider:
        return None
    provider = provider.lower()
    names = [n.lower() for n in (model, price_key) if isinstance(n, str) and n]
    best: DiscountRule | None = None
    for rule in rules:
        if rule.provider != provider:
            continue
        if rule.pattern is None:
            if best is None:
                best = rule
        elif any(fnmatchcase(n, rule.pattern) for n in names):
            if best is None or best.pattern is None or len(rule.pattern) > len(best.pattern):
                best = rule
    return best
