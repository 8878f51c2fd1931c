"""One ledger row from one counted call: the processor's CallRecord plus what only the span knows.

The CallRecord (:mod:`llmmeter.span_reader`) already normalised every instrumentor's spelling of tokens,
provider and cost; this adds the resource's ``service.name``, the price table's provenance, the agent-run
context and every ``llmmeter.attr.*`` attribution key, and lays it out in :data:`schema.COLUMN_NAMES` order.
It runs on the processor's deferred (counting) path, never on the app's call.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from llmmeter import names
from llmmeter.ledger import schema

_ATTR_PREFIX = names.ATTRIBUTION_SPAN_PREFIX
_PREFIX_LEN = len(_ATTR_PREFIX)
_KNOWN = schema.ATTRIBUTION_COLUMNS


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _hex(value: int | None, width: int) -> str | None:
    return format(value, f"0{width}x") if value else None


def row(record: Any, service: str | None) -> tuple[Any, ...]:
    """The INSERT tuple for one call. ``record`` is a CallRecord; ``service`` the resource's service.name."""
    attrs: Mapping[str, Any] = record.attributes or {}
    attribution: dict[str, str] = {}
    for key, value in attrs.items():
        if key.startswith(_ATTR_PREFIX) and isinstance(value, str):
            attribution[key[_PREFIX_LEN:]] = value
    get = attrs.get
    return (
        record.start_ns,
        record.end_ns,
        _hex(record.trace_id, 32),
        _hex(record.span_id, 16),
        _hex(record.parent_span_id, 16),
        1 if record.sampled else 0,
        service,
        record.provider,
        record.operation,
        record.request_model,
        record.response_model,
        record.model,
        record.input_tokens,
        record.output_tokens,
        record.cache_read,
        record.cache_creation,
        record.cache_creation_1h,
        record.reasoning,
        1 if record.has_usage else 0,
        1 if record.estimated else 0,
        record.estimate_reason,
        record.cost_usd,
        1 if record.priced else 0,
        record.cost_source,
        _text(get(names.LLMMETER_PRICE_TABLE_VERSION)),
        _text(get(names.LLMMETER_PRICE_MODEL)),
        _cache_saved(record),
        record.status,
        record.error_type,
        record.duration_s,
        record.time_to_first_chunk,
        _text(get(names.RUN_ID)),
        _text(get(names.AGENT_NAME)),
        _text(get(names.TOOL_NAME)),
        *(attribution.get(key) for key in _KNOWN),
        json.dumps(attribution, sort_keys=True, separators=(",", ":")) if attribution else None,
        schema.SCHEMA_VERSION,
    )


def _cache_saved(record: Any) -> float | None:
    """What the provider's prompt cache saved on this call: the cache-read tokens at the input price minus at the
    cache-read price (the shipped price table, as the call was priced). None without those two prices."""
    if not record.cache_read:
        return 0.0 if record.priced else None
    try:
        from llmmeter.pricing import get_price_table

        target = get_price_table().target(record.provider, record.model)
        entry = target[1] if target is not None else None
        if entry is None or entry.input is None or entry.cache_read is None:
            return None
        return record.cache_read * (entry.input - entry.cache_read)
    except Exception:
        return None


def service_of(span: Any) -> str | None:
    """The span's resource ``service.name`` (None for a span without a resource)."""
    resource = getattr(span, "resource", None)
    attributes = getattr(resource, "attributes", None)
    return _text(attributes.get(names.RESOURCE_SERVICE_NAME)) if attributes else None
