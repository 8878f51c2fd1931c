"""Interim reader of a finished inference span into the CallRecord shape of ``llmmeter.span_reader``.

Used only while ``llmmeter.span_reader`` is not in the tree (see :func:`read_call`); it follows the span
processor's own reading rules (provider, tokens with their legacy spellings, status, cost).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry.trace import StatusCode, TraceFlags

from llmmeter import names
from llmmeter.usage import Usage, as_count


@dataclass(frozen=True, slots=True)
class CallRecord:
    trace_id: int
    span_id: int
    parent_span_id: int | None
    sampled: bool
    start_ns: int | None
    end_ns: int | None
    provider: str | None
    operation: str | None
    request_model: str | None
    response_model: str | None
    model: str | None
    input_tokens: int | None
    output_tokens: int | None
    cache_read: int
    cache_creation: int
    cache_creation_1h: int
    reasoning: int
    has_usage: bool
    estimated: bool
    estimate_reason: str | None
    status: str
    error_type: str | None
    cost_usd: float | None
    priced: bool
    cost_source: str | None
    time_to_first_chunk: float | None
    attributes: Mapping[str, Any]


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _cost(attrs: Mapping[str, Any], provider: str | None, models: tuple[str | None, ...], usage: Usage | None,
          ) -> tuple[float | None, str | None]:
    marked = attrs.get(names.LLMMETER_PRICED)
    value = attrs.get(names.COST_USD)
    if marked is not None:
        ok = marked is True and isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0
        return (float(value), "local") if ok else (None, None)
    if usage is None:
        return None, None
    try:
        from llmmeter.pricing import price_usage

        for model in dict.fromkeys(m for m in models if m):
            result = price_usage(provider, model, usage)
            if result.priced and result.usd is not None:
                return float(result.usd), "local"
    except Exception:
        pass
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value), "foreign"
    return None, None


def read_call(span: Any) -> CallRecord | None:
    attrs: Mapping[str, Any] = span.attributes or {}
    operation = attrs.get(names.OPERATION)
    if operation not in names.INFERENCE_OPERATIONS:
        return None
    get = attrs.get
    provider = _text(get(names.PROVIDER)) or _text(get(names.LEGACY_SYSTEM))
    request_model, response_model = _text(get(names.REQUEST_MODEL)), _text(get(names.RESPONSE_MODEL))
    input_tokens = as_count(get(names.USAGE_INPUT_TOKENS))
    if input_tokens is None:
        input_tokens = as_count(get(names.LEGACY_USAGE_PROMPT_TOKENS))
    output_tokens = as_count(get(names.USAGE_OUTPUT_TOKENS))
    if output_tokens is None:
        output_tokens = as_count(get(names.LEGACY_USAGE_COMPLETION_TOKENS))
    cache_read = as_count(get(names.USAGE_CACHE_READ_TOKENS)) or 0
    cache_creation = as_count(get(names.USAGE_CACHE_CREATION_TOKENS)) or 0
    cache_1h = as_count(get(names.LLMMETER_CACHE_WRITE_1H_TOKENS)) or 0
    reasoning = as_count(get(names.USAGE_REASONING_TOKENS)) or 0
    has_usage = input_tokens is not None or output_tokens is not None
    blocked = get(names.LLMMETER_BLOCKED) is True
    failed = get(names.ERROR_TYPE) is not None or (
        span.status is not None and span.status.status_code is StatusCode.ERROR
    )
    status = "blocked" if blocked else ("error" if failed else "ok")
    usage = Usage(input=input_tokens, output=output_tokens, cache_read=cache_read, cache_creation=cache_creation,
                  cache_creation_1h=cache_1h, reasoning=reasoning) if has_usage else None
    cost, source = _cost(attrs, provider, (response_model, request_model), usage)
    priced = cost is not None or (not has_usage and status != "ok")
    if cost is None and priced:
        cost = 0.0
    ttfc = get(names.TIME_TO_FIRST_CHUNK)
    context = span.context
    parent = span.parent
    return CallRecord(
        trace_id=context.trace_id if context is not None else 0,
        span_id=context.span_id if context is not None else 0,
        parent_span_id=parent.span_id if parent is not None else None,
        sampled=bool(context is not None and context.trace_flags & TraceFlags.SAMPLED),
        start_ns=span.start_time,
        end_ns=span.end_time,
        provider=provider,
        operation=operation,
        request_model=request_model,
        response_model=response_model,
        model=request_model or response_model,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read=cache_read,
        cache_creation=cache_creation,
        cache_creation_1h=cache_1h,
        reasoning=reasoning,
        has_usage=has_usage,
        estimated=get(names.LLMMETER_ESTIMATED) is True,
        estimate_reason=_text(get(names.LLMMETER_ESTIMATED_REASON)),
        status=status,
        error_type=_text(get(names.ERROR_TYPE)),
        cost_usd=cost,
        priced=priced,
        cost_source=source,
        time_to_first_chunk=float(ttfc) if isinstance(ttfc, (int, float)) and not isinstance(ttfc, bool) else None,
        attributes=attrs,
    )
