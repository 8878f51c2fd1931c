"""Anthropic's Admin API cost and usage reports -> :class:`ProviderReport`.

Documented shapes (https://platform.claude.com/docs/en/api/admin/cost_report and
https://platform.claude.com/docs/en/api/admin/usage_report):

- ``GET /v1/organizations/cost_report?starting_at=<RFC 3339>&ending_at=...&bucket_width=1d&group_by[]=workspace_id
  &group_by[]=description`` returns ``{"data": [{"starting_at", "ending_at", "results": [...]}], "has_more": bool,
  "next_page": str|null}``; a result has ``amount`` -- **in the lowest currency unit (cents) as a decimal string**
  ("123.45" USD is $1.23) --, ``currency`` ("USD"), ``description``, ``cost_type`` (tokens / web_search /
  code_execution), ``model`` (null for non-token costs), ``token_type``, ``service_tier``, ``context_window`` and
  ``workspace_id`` (null for the default workspace). ``bucket_width`` is ``1d`` only; ``limit`` 1-31.
- ``GET /v1/organizations/usage_report/messages?...&group_by[]=model&group_by[]=workspace_id&group_by[]=api_key_id``
  returns the same envelope; a result has ``uncached_input_tokens``, ``cache_read_input_tokens``,
  ``cache_creation: {ephemeral_5m_input_tokens, ephemeral_1h_input_tokens}``, ``output_tokens``,
  ``server_tool_use``, ``model``, ``workspace_id``, ``api_key_id``, ``service_tier``, ``context_window``.

Auth: ``x-api-key: <admin key>`` and ``anthropic-version: 2023-06-01``. Limits: daily cost buckets only;
usage data appears within minutes but the current day is incomplete, so complete UTC days are compared.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation
from typing import Any

from llmmeter import names
from llmmeter.reconcile.client import ReconcileError, ReportClient
from llmmeter.reconcile.report import BilledCost, BilledUsage, ProviderReport, day_of, midnight

PROVIDER = names.PROVIDER_ANTHROPIC
KEY_ENV = "ANTHROPIC_ADMIN_KEY"
DEFAULT_BASE_URL = "https://api.anthropic.com"
API_VERSION = "2023-06-01"
COST_PATH = "/v1/organizations/cost_report"
USAGE_PATH = "/v1/organizations/usage_report/messages"
MAX_DAY_BUCKETS = 31  # both reports: limit up to 31 daily buckets per page


def client(key: str, base_url: str | None = None, **kwargs: Any) -> ReportClient:
    headers = {"x-api-key": key, "anthropic-version": API_VERSION}
    return ReportClient(base_url or DEFAULT_BASE_URL, headers, KEY_ENV, **kwargs)


def cents_to_usd(amount: Any) -> float:
    """``"123.45"`` (cents, decimal string) -> ``1.2345`` USD, exactly as decimal arithmetic gives it."""
    try:
        return float(Decimal(str(amount)) / 100)
    except (InvalidOperation, ValueError):
        raise ReconcileError(f"Anthropic cost_report amount {amount!r} is not a decimal string") from None


def _iso(day: dt.date) -> str:
    return midnight(day).strftime("%Y-%m-%dT%H:%M:%SZ")


def _buckets(doc: dict[str, Any]) -> list[dict[str, Any]]:
    data = doc.get("data")
    if not isinstance(data, list):
        raise ReconcileError(f"Anthropic report page without a `data` list: keys {sorted(doc)}")
    return [b for b in data if isinstance(b, dict)]


def _int(value: Any) -> int:
    return int(value or 0)


def input_tokens(result: dict[str, Any]) -> int:
    """Semconv input: uncached + cache reads + cache writes (both TTLs). ``cache_creation`` is documented nested;
    some derived schemas spell it flat (``cache_creation_5m_input_tokens``): both are read."""
    creation = result.get("cache_creation") or {}
    nested = _int(creation.get("ephemeral_5m_input_tokens")) + _int(creation.get("ephemeral_1h_input_tokens"))
    flat = _int(result.get("cache_creation_5m_input_tokens")) + _int(result.get("cache_creation_1h_input_tokens"))
    return _int(result.get("uncached_input_tokens")) + _int(result.get("cache_read_input_tokens")) + (nested or flat)


def fetch(api: ReportClient, start: dt.date, end: dt.date) -> ProviderReport:
    """Cost report (by workspace and description) and messages usage (by model, workspace, API key)."""
    report = ProviderReport(PROVIDER, start, end, scope_name="workspace")
    window = {"starting_at": _iso(start), "ending_at": _iso(end), "bucket_width": "1d",
              "limit": min(max((end - start).days, 1), MAX_DAY_BUCKETS)}
    for doc in api.pages(COST_PATH, {**window, "group_by[]": ["workspace_id", "description"]}):
        for bucket in _buckets(doc):
            day = day_of(bucket["starting_at"])
            for result in bucket.get("results") or []:
                currency = str(result.get("currency") or "USD").upper()
                if currency != "USD":
                    raise ReconcileError(f"Anthropic costs in {currency!r}: llmmeter compares USD only")
                model = result.get("model") or None
                label = result.get("description") or result.get("cost_type") or "(no description)"
                report.costs.append(BilledCost(day, model, cents_to_usd(result.get("amount", "0")), label,
                                               result.get("workspace_id")))
    for doc in api.pages(USAGE_PATH, {**window, "group_by[]": ["model", "workspace_id", "api_key_id"]}):
        for bucket in _buckets(doc):
            day = day_of(bucket["starting_at"])
            for result in bucket.get("results") or []:
                if not result.get("model"):
                    continue
                report.usage.append(BilledUsage(day, str(result["model"]), input_tokens(result),
                                                _int(result.get("output_tokens")), None,
                                                result.get("workspace_id"), result.get("api_key_id")))
    return report
