"""What a provider's organisation reports say, normalized: billed dollars and billed tokens per UTC day.

Both providers report in daily UTC buckets; each provider module turns its documented response shapes into
these records, so :mod:`llmmeter.reconcile.compare` never knows which provider it is comparing.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from llmmeter.pricing.normalize import candidates


def canonical_model(name: str) -> str:
    """The name both sides are compared under: the most generic spelling of the model (provider prefixes,
    dated snapshot suffixes and ``-latest`` stripped), so the invoice's ``gpt-4o-mini-2024-07-18`` meets the
    ``gpt-4o-mini`` the app asked for. Fine-tuned models keep their own name (:func:`normalize.candidates`)."""
    found = candidates(name)
    return found[-1] if found else name


@dataclass(frozen=True, slots=True)
class BilledCost:
    """One cost line of one day: ``usd`` billed for ``model`` (None for a non-model line item such as a
    tool fee), in ``scope`` (OpenAI project / Anthropic workspace, when the report groups by it)."""

    day: dt.date
    model: str | None
    usd: float
    line_item: str
    scope: str | None = None


@dataclass(frozen=True, slots=True)
class BilledUsage:
    """Tokens the provider counted for one day × model × scope × API key. ``input_tokens`` has the semconv
    meaning (cache reads and writes included), like llmmeter's."""

    day: dt.date
    model: str
    input_tokens: int
    output_tokens: int
    requests: int | None = None
    scope: str | None = None
    api_key_id: str | None = None


@dataclass
class ProviderReport:
    """Everything read from one provider for ``[start, end)`` (UTC midnights)."""

    provider: str
    start: dt.date
    end: dt.date
    costs: list[BilledCost] = field(default_factory=list)
    usage: list[BilledUsage] = field(default_factory=list)
    scope_name: str = "project"  # what `scope` means for this provider


def day_of(value: int | float | str) -> dt.date:
    """A bucket's UTC day from a Unix timestamp (OpenAI) or an RFC 3339 string (Anthropic)."""
    if isinstance(value, (int, float)):
        return dt.datetime.fromtimestamp(value, tz=dt.timezone.utc).date()
    text = value.strip().replace("Z", "+00:00")
    parsed = dt.datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return parsed.astimezone(dt.timezone.utc).date()


def midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc)
