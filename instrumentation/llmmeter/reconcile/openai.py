"""OpenAI's organisation Costs and Usage APIs -> :class:`ProviderReport`.

Documented shapes (https://platform.openai.com/docs/api-reference/usage, "Costs" and "Completions"):

- ``GET /v1/organization/costs?start_time=<unix>&end_time=<unix>&bucket_width=1d``
  ``&group_by=line_item&group_by=project_id`` returns ``{"object": "page", "data": [bucket...], "has_more": bool,
  "next_page": str|null}``; a bucket is
  ``{"object": "bucket", "start_time", "end_time", "results": [...]}`` (some renderings of the reference name the
  list ``result``: both are read); a result is ``{"object": "organization.costs.result", "amount": {"value": 0.06,
  "currency": "usd"}, "line_item": str|null, "project_id": str|null}``. ``bucket_width`` only supports ``1d``;
  ``limit`` is 1-180 buckets per page.
- ``GET /v1/organization/usage/completions?...&group_by=model&group_by=project_id&group_by=api_key_id`` returns
  buckets of ``{"object": "organization.usage.completions.result", "input_tokens" (cached included),
  "output_tokens", "input_cached_tokens", "num_model_requests", "project_id", "api_key_id", "model", ...}``.

The Costs API does not group by model: its ``line_item`` names the model and what was billed, e.g.
``"gpt-4o-mini-2024-07-18, input"`` / ``"..., cached input"`` / ``"..., output"``. The model is the text before the
last ", "; a line item without one (e.g. ``"Image models"``, tool fees) is kept as a non-model line.
Limits: daily buckets only, the current day is incomplete and costs can appear hours late (so ``llmmeter
reconcile`` compares complete UTC days before ``--until``, today excluded by default).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from llmmeter import names
from llmmeter.reconcile.client import ReconcileError, ReportClient
from llmmeter.reconcile.report import BilledCost, BilledUsage, ProviderReport, day_of, midnight

PROVIDER = names.PROVIDER_OPENAI
KEY_ENV = "OPENAI_ADMIN_KEY"
DEFAULT_BASE_URL = "https://api.openai.com"
COSTS_PATH = "/v1/organization/costs"
USAGE_PATH = "/v1/organization/usage/completions"
MAX_COST_BUCKETS = 180  # Costs API: limit 1-180 buckets per page
MAX_USAGE_BUCKETS = 31  # Usage API with bucket_width=1d: limit up to 31 buckets per page


def client(key: str, base_url: str | None = None, **kwargs: Any) -> ReportClient:
    return ReportClient(base_url or DEFAULT_BASE_URL, {"Authorization": f"Bearer {key}"}, KEY_ENV, **kwargs)


def model_of_line_item(line_item: str | None) -> str | None:
    """``"gpt-4o-mini-2024-07-18, cached input"`` -> ``"gpt-4o-mini-2024-07-18"``; no ", " -> None."""
    if not line_item or ", " not in line_item:
        return None
    model = line_item.rsplit(", ", 1)[0].strip()
    return model or None


def _buckets(doc: dict[str, Any]) -> list[dict[str, Any]]:
    data = doc.get("data")
    if not isinstance(data, list):
        raise ReconcileError(f"OpenAI report page without a `data` list: keys {sorted(doc)}")
    return [b for b in data if isinstance(b, dict)]


def _results(bucket: dict[str, Any]) -> list[dict[str, Any]]:
    results = bucket.get("results", bucket.get("result")) or []
    return [r for r in results if isinstance(r, dict)]


def fetch(api: ReportClient, start: dt.date, end: dt.date) -> ProviderReport:
    """Costs (by line item and project) and completions usage (by model, project, API key) for ``[start, end)``."""
    report = ProviderReport(PROVIDER, start, end, scope_name="project")
    window = {
        "start_time": int(midnight(start).timestamp()),
        "end_time": int(midnight(end).timestamp()),
        "bucket_width": "1d",
    }
    days = max((end - start).days, 1)
    cost_params = {**window, "limit": min(days, MAX_COST_BUCKETS), "group_by": ["line_item", "project_id"]}
    for doc in api.pages(COSTS_PATH, cost_params):
        for bucket in _buckets(doc):
            day = day_of(bucket["start_time"])
            for result in _results(bucket):
                amount = result.get("amount") or {}
                currency = str(amount.get("currency") or "usd").lower()
                if currency != "usd":
                    raise ReconcileError(f"OpenAI costs in {currency!r}: llmmeter compares USD only")
                line_item = result.get("line_item") or "(no line item)"
                report.costs.append(BilledCost(day, model_of_line_item(result.get("line_item")),
                                               float(amount.get("value") or 0.0), line_item,
                                               result.get("project_id")))
    usage_params = {**window, "limit": min(days, MAX_USAGE_BUCKETS), "group_by": ["model", "project_id", "api_key_id"]}
    for doc in api.pages(USAGE_PATH, usage_params):
        for bucket in _buckets(doc):
            day = day_of(bucket["start_time"])
            for result in _results(bucket):
                if not result.get("model"):
                    continue
                report.usage.append(BilledUsage(
                    day, str(result["model"]), int(result.get("input_tokens") or 0),
                    int(result.get("output_tokens") or 0), result.get("num_model_requests"),
                    result.get("project_id"), result.get("api_key_id")))
    return report
