"""One finished GenAI span -> one normalized :class:`CallRecord`, whatever instrumentor wrote it.

The span processor (metrics) and the ledger writer both start from a finished span, and both must read
it the same way, or the ledger and the dashboards disagree about what a call cost. This module is that one
reading. Spans come from llmmeter's own instrumentors, from the official ``opentelemetry-instrumentation-*``
GenAI packages, from OpenLLMetry (current and older releases) and from OpenInference (Arize/Phoenix), each
with its own attribute names for the same quantities; :data:`CONVENTIONS` is the one mapping table from
those names to the semconv meaning (v1.41: input tokens INCLUDE cache reads and writes, reasoning tokens
are part of output), first name found wins.

The reader never raises on what a span carries: a malformed count (a string, a negative number, a float
beyond any real call) is treated as absent, and the record says whether usage was there at all.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode, TraceFlags

from llmmeter import names
from llmmeter.usage import Usage, as_count

_log = logging.getLogger(__name__)

STATUS_OK = "ok"
STATUS_ERROR = "error"
STATUS_BLOCKED = "blocked"

COST_SOURCE_LOCAL = "local"  # priced from llmmeter's price table
COST_SOURCE_FOREIGN = "foreign"  # a cost another instrumentor put on the span (our table had no price)

# --- the conventions ------------------------------------------------------------------------------
# For each quantity, the attribute names that carry it, in the order they are tried. The first name is
# the one llmmeter writes (GenAI semconv v1.41); the others are read only.
CONVENTIONS: dict[str, tuple[str, ...]] = {
    "provider": (names.PROVIDER, names.LEGACY_SYSTEM, names.OI_LLM_PROVIDER, names.OI_LLM_SYSTEM),
    "request_model": (names.REQUEST_MODEL, names.OI_LLM_MODEL_NAME),
    "response_model": (names.RESPONSE_MODEL,),
    "input": (names.USAGE_INPUT_TOKENS, names.LEGACY_USAGE_PROMPT_TOKENS, names.OI_TOKEN_COUNT_PROMPT),
    "output": (names.USAGE_OUTPUT_TOKENS, names.LEGACY_USAGE_COMPLETION_TOKENS, names.OI_TOKEN_COUNT_COMPLETION),
    "cache_read": (
        names.USAGE_CACHE_READ_TOKENS,
        names.LEGACY_USAGE_CACHE_READ_TOKENS,
        names.OI_TOKEN_COUNT_CACHE_READ,
    ),
    "cache_creation": (
        names.USAGE_CACHE_CREATION_TOKENS,
        names.USAGE_CACHE_WRITE_TOKENS,
        names.LEGACY_USAGE_CACHE_CREATION_TOKENS,
        names.OI_TOKEN_COUNT_CACHE_WRITE,
    ),
    "reasoning": (
        names.USAGE_REASONING_TOKENS,
        names.LEGACY_USAGE_REASONING_TOKENS,
        names.OI_TOKEN_COUNT_REASONING,
    ),
    "foreign_cost": (names.COST_USD, names.OI_COST_TOTAL),
}

# Operation of a span that has no gen_ai.operation.name: OpenInference's span kind, OpenLLMetry's
# pre-semconv request type.
_OI_KIND_OPERATION = {"LLM": names.OP_CHAT, "EMBEDDING": names.OP_EMBEDDINGS}
_REQUEST_TYPE_OPERATION = {
    "chat": names.OP_CHAT,
    "completion": names.OP_TEXT_COMPLETION,
    "embedding": names.OP_EMBEDDINGS,
    "embeddings": names.OP_EMBEDDINGS,
}
# Provider spellings of older conventions -> the semconv value (lower-cased before the lookup).
_PROVIDER_ALIASES = {
    "azure": names.PROVIDER_AZURE_OPENAI,
    "azure_openai": names.PROVIDER_AZURE_OPENAI,
    "aws": names.PROVIDER_AWS_BEDROCK,
    "bedrock": names.PROVIDER_AWS_BEDROCK,
    "aws_bedrock": names.PROVIDER_AWS_BEDROCK,
    "google": names.PROVIDER_GCP_GEN_AI,
    "gemini": names.PROVIDER_GCP_GEMINI,
    "vertexai": names.PROVIDER_GCP_VERTEX_AI,
    "vertex_ai": names.PROVIDER_GCP_VERTEX_AI,
    "mistralai": names.PROVIDER_MISTRAL,
    "mistral": names.PROVIDER_MISTRAL,
    "xai": names.PROVIDER_XAI,
    "x.ai": names.PROVIDER_XAI,
}
_INFERENCE = names.INFERENCE_OPERATIONS


def operation_of(attrs: Mapping[str, Any]) -> str | None:
    """The semconv operation of a span's attributes, in any convention; None when it is not a GenAI span.

    One dict lookup for a span that carries ``gen_ai.operation.name``; three for a span of no GenAI kind
    (this runs in ``on_start``/``on_end`` of every span in the process)."""
    get = attrs.get
    operation = get(names.OPERATION)
    if operation is not None:
        return operation if operation.__class__ is str else None
    kind = get(names.OI_SPAN_KIND)
    if kind is not None:
        return _OI_KIND_OPERATION.get(kind)
    request_type = get(names.LEGACY_REQUEST_TYPE)
    if request_type is not None and request_type.__class__ is str:
        return _REQUEST_TYPE_OPERATION.get(request_type.lower())
    return None


def is_inference(attrs: Mapping[str, Any] | None) -> bool:
    """Whether a span's attributes describe one LLM call (chat, completion, embeddings), any convention."""
    return bool(attrs) and operation_of(attrs) in _INFERENCE  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One LLM call as read from its finished span: the single input of metrics and the ledger."""

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
    input_tokens: int | None  # semconv: includes cache_read and cache_creation
    output_tokens: int | None  # includes reasoning
    cache_read: int
    cache_creation: int
    cache_creation_1h: int
    reasoning: int
    estimated: bool
    estimate_reason: str | None
    status: str  # STATUS_OK | STATUS_ERROR | STATUS_BLOCKED
    error_type: str | None
    cost_usd: float | None  # None: unknown (see priced)
    priced: bool  # True: cost_usd is the call's cost (0.0 for a call that failed before any usage)
    cost_source: str | None  # COST_SOURCE_* or None when not priced
    time_to_first_chunk: float | None
    attributes: Mapping[str, Any]  # the span's attributes as they are (attribution: llmmeter.attr.<key>)
    # Cache economics (issue 12): USD the cache reads saved against the uncached input rate, and USD the cache
    # writes cost above it; 0.0 when not priced or unknown.
    cache_savings: float = 0.0
    cache_write_premium: float = 0.0

    @property
    def model(self) -> str | None:
        """The model label metrics use: the requested name (stable), else the one the response named."""
        return self.request_model or self.response_model

    @property
    def has_usage(self) -> bool:
        return self.input_tokens is not None or self.output_tokens is not None

    @property
    def duration_s(self) -> float | None:
        if self.start_ns is None or self.end_ns is None:
            return None
        return max(0.0, (self.end_ns - self.start_ns) / 1e9)


def label_value(value: Any) -> str | None:
    """A span attribute as a label value: strings as they are, other scalars as text, empty as None."""
    if value is None or value == "":
        return None
    return value if value.__class__ is str else str(value)


def plain_attributes(span: ReadableSpan) -> Mapping[str, Any]:
    """The finished span's attributes as a plain dict, for the dozen-odd lookups of :func:`read_call`.

    ``ReadableSpan.attributes`` is a MappingProxyType over the SDK's ``BoundedAttributes``, whose ``get()``
    is Python code that raises and catches KeyError for every absent key (~1 µs each; most of the keys
    asked for are absent). Its backing dict is read directly when it is there; otherwise (another SDK
    version, a hand-made ReadableSpan) the mapping is used as it is. The span has ended, so its attributes
    no longer change, and nothing here writes to them.
    """
    inner = getattr(getattr(span, "_attributes", None), "_dict", None)
    return inner if type(inner) is dict else (span.attributes or {})


def _first(get: Any, keys: tuple[str, ...]) -> Any:
    for key in keys:
        value = get(key)
        if value is not None:
            return value
    return None


def _count(get: Any, keys: tuple[str, ...]) -> int | None:
    """The first attribute of ``keys`` that is a valid token count (an invalid one does not hide the next)."""
    for key in keys:
        value = get(key)
        if value is not None:
            count = as_count(value)
            if count is not None:
                return count
    return None


def _provider(get: Any) -> str | None:
    value = get(names.PROVIDER)
    if value is not None and value.__class__ is str and value:
        return value  # llmmeter's and current instrumentors' spans: the semconv value as written
    raw = label_value(_first(get, CONVENTIONS["provider"]))
    if raw is None:
        return None
    lowered = raw.lower()
    return _PROVIDER_ALIASES.get(lowered, lowered)


def read_call(span: ReadableSpan, attrs: Mapping[str, Any] | None = None) -> CallRecord | None:
    """The call a finished inference span describes, or None when it is not an inference span.

    ``attrs`` may be passed when the caller already holds :func:`plain_attributes` of the span."""
    if attrs is None:
        attrs = plain_attributes(span)
    operation = operation_of(attrs)
    if operation not in _INFERENCE:
        return None
    get = attrs.get
    provider = _provider(get)
    request_model = label_value(_first(get, CONVENTIONS["request_model"]))
    response_model = label_value(get(names.RESPONSE_MODEL))

    input_tokens = _count(get, CONVENTIONS["input"])
    output_tokens = _count(get, CONVENTIONS["output"])
    cache_read = _count(get, CONVENTIONS["cache_read"]) or 0
    cache_creation = _count(get, CONVENTIONS["cache_creation"]) or 0
    cache_creation_1h = as_count(get(names.LLMMETER_CACHE_WRITE_1H_TOKENS)) or 0
    reasoning = _count(get, CONVENTIONS["reasoning"]) or 0
    estimated = get(names.LLMMETER_ESTIMATED) is True
    reason = get(names.LLMMETER_ESTIMATED_REASON)

    error_type = label_value(get(names.ERROR_TYPE))
    status_code = span.status.status_code if span.status is not None else None
    if get(names.LLMMETER_BLOCKED) is True:
        status = STATUS_BLOCKED
    elif error_type is not None or status_code is StatusCode.ERROR:
        status = STATUS_ERROR
        error_type = error_type or STATUS_ERROR
    else:
        status = STATUS_OK

    has_usage = input_tokens is not None or output_tokens is not None
    cost, source, savings, premium = _cost_of(attrs, provider, response_model, request_model, has_usage,
                                              input_tokens, output_tokens, cache_read, cache_creation,
                                              cache_creation_1h, reasoning)
    # A call that failed or was blocked before producing usage billed nothing: its cost is known (0).
    priced = cost is not None or (not has_usage and status != STATUS_OK)
    if cost is None and priced:
        cost = 0.0

    ttfc = get(names.TIME_TO_FIRST_CHUNK)
    if not ((ttfc.__class__ is float or ttfc.__class__ is int) and ttfc >= 0):
        ttfc = None
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
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read=cache_read,
        cache_creation=cache_creation,
        cache_creation_1h=cache_creation_1h,
        reasoning=reasoning,
        estimated=estimated,
        estimate_reason=reason if reason.__class__ is str else None,
        status=status,
        error_type=error_type if status == STATUS_ERROR else None,
        cost_usd=cost,
        priced=priced,
        cost_source=source if priced else None,
        time_to_first_chunk=float(ttfc) if ttfc is not None else None,
        attributes=attrs,
        cache_savings=savings,
        cache_write_premium=premium,
    )


def _cost_of(
    attrs: Mapping[str, Any],
    provider: str | None,
    response_model: str | None,
    request_model: str | None,
    has_usage: bool,
    input_tokens: int | None,
    output_tokens: int | None,
    cache_read: int,
    cache_creation: int,
    cache_creation_1h: int,
    reasoning: int,
) -> tuple[float | None, str | None, float, float]:
    """(USD, source, cache savings, cache write premium) for the span, USD None when unknown. llmmeter's spans
    carry them; others are priced here."""
    marked = attrs.get(names.LLMMETER_PRICED)
    if marked is not None:
        value = attrs.get(names.COST_USD)
        if marked is True and isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
            savings = attrs.get(names.LLMMETER_CACHE_SAVINGS)
            premium = attrs.get(names.LLMMETER_CACHE_WRITE_PREMIUM)
            return (float(value), _source_on_span(attrs), savings if savings.__class__ is float else 0.0,
                    premium if premium.__class__ is float else 0.0)
        return None, None, 0.0, 0.0
    if not has_usage:
        return None, None, 0.0, 0.0
    usage = Usage(
        input=input_tokens,
        output=output_tokens,
        cache_read=cache_read,
        cache_creation=cache_creation,
        cache_creation_1h=cache_creation_1h,
        reasoning=reasoning,
    )
    try:
        from llmmeter.pricing import price_usage  # late: the price table loads on first use

        result = price_usage(provider, response_model or request_model, usage)
        if not result.priced and request_model and request_model != response_model:
            result = price_usage(provider, request_model, usage)
        if result.priced and result.usd is not None:
            return (float(result.usd), COST_SOURCE_LOCAL, result.cache_savings or 0.0,
                    result.cache_write_premium or 0.0)
    except Exception:  # a pricing bug leaves the call unpriced; it is still counted
        _log.debug("llmmeter: could not price a span", exc_info=True)
    # Not in our table: trust a positive cost another instrumentor computed (never a 0 guess).
    foreign = _first(attrs.get, CONVENTIONS["foreign_cost"])
    if isinstance(foreign, (int, float)) and not isinstance(foreign, bool) and 0 < foreign < 1e9:
        return float(foreign), COST_SOURCE_FOREIGN, 0.0, 0.0
    return None, None, 0.0, 0.0


def _source_on_span(attrs: Mapping[str, Any]) -> str:
    source = attrs.get(names.COST_SOURCE)
    return source if source.__class__ is str and source else COST_SOURCE_LOCAL
