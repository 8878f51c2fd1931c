"""Billed (the provider's reports) against metered (llmmeter's figures), per UTC day × model.

Definitions (the README and the alert use the same ones):
- ``drift_ratio = (metered_usd - billed_usd) / billed_usd``: -0.2 means llmmeter shows 20 % less than the
  invoice, -1 traffic llmmeter never saw; ``None`` when the provider billed nothing (llmmeter metered spend the
  invoice does not have: +Inf in the exported gauge).
- effective discount = ``billed_usd / metered_usd`` per model over the window: what to put in
  ``LLMMETER_DISCOUNTS`` when the token counts agree (so the gap is the price, not missing traffic).
Both sides are keyed by :func:`canonical_model`; cost lines with no model (tool fees, image lines) are listed
apart: llmmeter does not meter them, so they do not count as drift.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from dataclasses import dataclass, field

from llmmeter.reconcile.report import ProviderReport, canonical_model
from llmmeter.reconcile.sources import Metered, MeteredByDay

JSON_FIELDS = ("day", "provider", "model", "billed_usd", "metered_usd", "drift_ratio")


def tidy(value: float) -> float:
    """Rounded to 9 decimals (sub-nano-dollar noise from summing floats), and never ``-0.0``."""
    return round(value, 9) + 0.0


def drift(billed: float, metered: float) -> float | None:
    return (metered - billed) / billed if billed > 0 else None


@dataclass(frozen=True, slots=True)
class Row:
    day: dt.date
    provider: str
    model: str
    billed_usd: float
    metered_usd: float
    drift_ratio: float | None
    billed_tokens: int | None  # input + output from the usage report; None when it had no row
    metered_tokens: int

    def to_json(self) -> dict[str, object]:
        """Exactly the documented JSON fields."""
        return {"day": self.day.isoformat(), "provider": self.provider, "model": self.model,
                "billed_usd": tidy(self.billed_usd), "metered_usd": tidy(self.metered_usd),
                "drift_ratio": None if self.drift_ratio is None else tidy(self.drift_ratio)}


@dataclass(frozen=True, slots=True)
class ModelSummary:
    """One model over the whole window."""

    model: str
    billed_usd: float
    metered_usd: float
    billed_tokens: int | None
    metered_tokens: int
    metered_as: tuple[str, ...] = ()  # the model names the app's calls carried (what a discount rule matches)

    @property
    def drift_ratio(self) -> float | None:
        return drift(self.billed_usd, self.metered_usd)

    @property
    def effective_discount(self) -> float | None:
        return self.billed_usd / self.metered_usd if self.billed_usd > 0 and self.metered_usd > 0 else None

    @property
    def token_drift(self) -> float | None:
        return (self.metered_tokens - self.billed_tokens) / self.billed_tokens if self.billed_tokens else None


@dataclass(frozen=True, slots=True)
class Unseen:
    """A model the provider billed on days llmmeter metered nothing for it, with who used it."""

    model: str
    days: tuple[dt.date, ...]
    billed_usd: float
    by_scope: tuple[tuple[str, float], ...]  # (project / workspace, USD), largest first
    by_api_key: tuple[tuple[str, str, int], ...]  # (api key id, scope, tokens), largest first


@dataclass
class Reconciliation:
    provider: str
    start: dt.date
    end: dt.date
    source: str
    scope_name: str
    rows: list[Row] = field(default_factory=list)
    models: list[ModelSummary] = field(default_factory=list)
    unseen: list[Unseen] = field(default_factory=list)
    non_model: list[tuple[str, float]] = field(default_factory=list)  # (line item, USD) llmmeter cannot meter
    by_scope: list[tuple[str, str, float]] = field(default_factory=list)  # (project/workspace, model, USD) billed

    @property
    def unpriced(self) -> list[ModelSummary]:
        """Models the provider billed and llmmeter counted tokens for, but priced at nothing: no price entry."""
        return [s for s in self.models if s.billed_usd > 0 and s.metered_usd == 0 and s.metered_tokens > 0]

    def exceeded(self, max_drift: float, min_usd: float) -> list[Row]:
        """Rows past ``max_drift`` (either way); rows where both sides are under ``min_usd`` are noise."""
        out = []
        for row in self.rows:
            if max(row.billed_usd, row.metered_usd) < min_usd:
                continue
            if row.drift_ratio is None or abs(row.drift_ratio) > max_drift:
                out.append(row)
        return out

    def discount_suggestions(self, max_drift: float) -> list[ModelSummary]:
        """Models whose dollars drift past ``max_drift`` while their tokens agree within it: the gap is the price
        (a negotiated discount when billed < metered, a wrong rate when billed > metered), not missing traffic."""
        out = []
        for summary in self.models:
            ratio, token_drift = summary.effective_discount, summary.token_drift
            if ratio is None or abs(ratio - 1) <= max_drift:
                continue
            if token_drift is not None and abs(token_drift) <= max_drift:
                out.append(summary)
        return out


def compare(report: ProviderReport, metered: MeteredByDay, source: str,
            scopes: frozenset[str] | None = None) -> Reconciliation:
    """Join the two sides per (day, canonical model). ``scopes``: keep only these projects / workspaces of the
    provider's side (when llmmeter meters only some of the organisation's apps)."""
    if scopes:
        report = ProviderReport(report.provider, report.start, report.end,
                                [c for c in report.costs if c.scope in scopes],
                                [u for u in report.usage if u.scope in scopes], report.scope_name)
    billed: dict[tuple[dt.date, str], float] = defaultdict(float)
    non_model: dict[str, float] = defaultdict(float)
    scope_usd: dict[tuple[str, str], float] = defaultdict(float)
    for cost in report.costs:
        if cost.model is None:
            non_model[cost.line_item] += cost.usd
            continue
        model = canonical_model(cost.model)
        billed[(cost.day, model)] += cost.usd
        scope_usd[(model, cost.scope or "(default)")] += cost.usd
    billed_tokens: dict[tuple[dt.date, str], int] = defaultdict(int)
    key_tokens: dict[tuple[str, str, str], int] = defaultdict(int)
    for usage in report.usage:
        model = canonical_model(usage.model)
        billed_tokens[(usage.day, model)] += usage.input_tokens + usage.output_tokens
        key_tokens[(model, usage.api_key_id or "(none)", usage.scope or "(default)")] += (
            usage.input_tokens + usage.output_tokens)
    seen: dict[tuple[dt.date, str], Metered] = defaultdict(Metered)
    metered_as: dict[str, set[str]] = defaultdict(set)
    for (day, raw_model), value in metered.items():
        if report.start <= day < report.end and raw_model:
            key = (day, canonical_model(raw_model))
            seen[key] = seen[key] + value
            if value != Metered():
                metered_as[key[1]].add(raw_model)

    result = Reconciliation(report.provider, report.start, report.end, source, report.scope_name)
    for day, model in sorted(set(billed) | set(seen)):
        got = seen.get((day, model), Metered())
        bill = billed.get((day, model), 0.0)
        tokens = billed_tokens.get((day, model))
        if bill == 0 and got == Metered() and not tokens:
            continue  # a series that existed but did not move that day: nothing to compare
        result.rows.append(Row(day, report.provider, model, bill, got.usd, drift(bill, got.usd), tokens,
                               got.input_tokens + got.output_tokens))
    for model in sorted({row.model for row in result.rows}):
        rows = [row for row in result.rows if row.model == model]
        known = [row.billed_tokens for row in rows if row.billed_tokens is not None]
        result.models.append(ModelSummary(model, math.fsum(r.billed_usd for r in rows),
                                          math.fsum(r.metered_usd for r in rows),
                                          sum(known) if known else None, sum(r.metered_tokens for r in rows),
                                          tuple(sorted(metered_as.get(model, ())))))
        unseen_rows = [r for r in rows if r.billed_usd > 0 and r.metered_usd == 0 and r.metered_tokens == 0]
        if unseen_rows:
            scopes = sorted(((s, usd) for (m, s), usd in scope_usd.items() if m == model), key=lambda x: -x[1])
            keys = sorted(((k, s, n) for (m, k, s), n in key_tokens.items() if m == model), key=lambda x: -x[2])
            result.unseen.append(Unseen(model, tuple(r.day for r in unseen_rows),
                                        math.fsum(r.billed_usd for r in unseen_rows), tuple(scopes), tuple(keys)))
    result.non_model = sorted(non_model.items(), key=lambda item: -item[1])
    result.by_scope = sorted(((scope, model, usd) for (model, scope), usd in scope_usd.items()),
                             key=lambda item: (item[0], -item[2], item[1]))
    return result
