"""Reconciliation with the invoice: llmmeter's figures against the provider's own cost and usage reports.

``llmmeter reconcile openai|anthropic`` reads the provider's organisation reports (:mod:`.openai`,
:mod:`.anthropic`, through :mod:`.client`), what llmmeter metered (:mod:`.sources`), joins them per UTC
day × model (:mod:`.compare`), prints the drift (:mod:`.render`) and can export it for an alert (:mod:`.export`).
Nothing here runs inside an instrumented app.
"""

from __future__ import annotations

import datetime as dt
import re
from types import ModuleType
from typing import Any

from llmmeter.reconcile import anthropic, openai
from llmmeter.reconcile.client import ReconcileError, ReportClient
from llmmeter.reconcile.compare import Reconciliation, Row, compare
from llmmeter.reconcile.sources import Metered, MeteredSource, PrometheusSource

PROVIDERS: dict[str, ModuleType] = {"openai": openai, "anthropic": anthropic}
_SINCE = re.compile(r"^\s*(\d+)\s*d\s*$")

__all__ = [
    "PROVIDERS",
    "Metered",
    "MeteredSource",
    "PrometheusSource",
    "ReconcileError",
    "Reconciliation",
    "ReportClient",
    "Row",
    "compare",
    "parse_since",
    "parse_until",
    "reconcile",
]


def parse_since(text: str) -> int:
    """``"7d"`` -> 7 (whole days: the reports only have daily buckets)."""
    match = _SINCE.match(text or "")
    if not match or int(match.group(1)) < 1:
        raise ReconcileError(f"--since {text!r}: expected a number of days such as 7d (reports are daily)")
    return int(match.group(1))


def parse_until(text: str | None, today: dt.date | None = None) -> dt.date:
    """The exclusive end day: ``--until YYYY-MM-DD``, default today (UTC), whose report is still incomplete."""
    if not text:
        return today or dt.datetime.now(dt.timezone.utc).date()
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ReconcileError(f"--until {text!r}: expected a date YYYY-MM-DD (exclusive, UTC)") from None


def reconcile(provider: str, key: str, source: MeteredSource, start: dt.date, end: dt.date,
              base_url: str | None = None, scopes: frozenset[str] | None = None,
              **client_kwargs: Any) -> Reconciliation:
    """Read ``provider``'s reports for ``[start, end)``, read ``source`` for the same days, compare."""
    module = PROVIDERS[provider]
    api = module.client(key, base_url, **client_kwargs)
    try:
        report = module.fetch(api, start, end)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ReconcileError(f"{provider}'s report is not shaped as documented ({type(exc).__name__}: {exc}); "
                             "nothing was compared") from None
    return compare(report, source.metered(module.PROVIDER, start, end), source.description, scopes)


def ledger_source(path: str) -> MeteredSource:
    """The cost ledger as a :class:`MeteredSource` (needs :mod:`llmmeter.ledger`)."""
    try:
        from llmmeter.reconcile.ledger_source import LedgerSource
    except ImportError:
        raise ReconcileError("--ledger: this llmmeter has no cost ledger reader yet; use --prometheus URL") from None
    return LedgerSource(path)
