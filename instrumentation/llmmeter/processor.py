"""Metrics from finished GenAI spans: the single place llmmeter counts tokens, cost and requests.

Counting from spans (instead of inside each instrumentor) means spans from *other* instrumentors
(opentelemetry-instrumentation-openai-v2, OpenLLMetry, OpenLIT, ...) are counted and priced too, with
one set of label rules. The processor therefore has to cope with three things itself:

* attribution: on_start copies ``llmmeter.<key>`` baggage onto inference spans as ``llmmeter.attr.<key>``,
  so a span made by any instrumentor carries the tenant/feature it was made for;
* cardinality: attribution values are user input; each label keeps at most
  ``settings.max_values_per_label`` distinct values, later ones fold into ``__overflow__`` (counted by
  ``llmmeter.attribution.overflow``), so memory stays bounded whatever the app sends;
* exactly-once: when two instrumentors wrap the same SDK call they produce nested inference spans for
  one request. Both are kept as spans, but only one is counted: the llmmeter-made span if there is one,
  else the innermost.

It runs on the app's thread for every span end, so the non-GenAI path is one dict lookup and the GenAI
path avoids building what it can cache. It never raises.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import StatusCode

from llmmeter import attribution, names
from llmmeter.config import Settings
from llmmeter.config import settings as global_settings
from llmmeter.summary import Tally
from llmmeter.usage import Usage, as_count

_log = logging.getLogger(__name__)

SCOPE_NAME = "llmmeter"
# In-flight nested groups tracked at once; beyond that the oldest group is counted and forgotten.
MAX_PENDING_GROUPS = 4096
MAX_GROUP_MEMBERS = 8
# Cached label dicts; cleared when full (cheap, bounded, and refilled by the live label sets).
MAX_CACHED_LABEL_SETS = 4096

_INFERENCE = names.INFERENCE_OPERATIONS
_TRUE = "true"
_FALSE = "false"
_STATUS_OK = "ok"
_STATUS_ERROR = "error"
_STATUS_BLOCKED = "blocked"
_SEMCONV_LABELS = (names.PROVIDER, names.OPERATION, names.REQUEST_MODEL, names.RESPONSE_MODEL, names.ERROR_TYPE)
_TOKEN_INPUT, _TOKEN_OUTPUT, _TOKEN_CACHE_READ, _TOKEN_CACHE_CREATION, _TOKEN_REASONING = names.TOKEN_TYPES


def _histogram(meter: metrics.Meter, name: str, buckets: tuple[float, ...], description: str) -> metrics.Histogram:
    # The advisory gives semconv buckets without any View (views.py covers others' instruments).
    unit = names.METRIC_SPECS[name][1]
    return meter.create_histogram(name, unit, description, explicit_bucket_boundaries_advisory=list(buckets))


def _counter(meter: metrics.Meter, name: str, description: str) -> metrics.Counter:
    return meter.create_counter(name, names.METRIC_SPECS[name][1], description)


def _label_value(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


class _Group:
    """The inference spans of one call made by several instrumentors (outer span and nested ones)."""

    __slots__ = ("ended", "members", "open")

    def __init__(self, root_id: int) -> None:
        self.members: list[int] = [root_id]
        self.ended: list[ReadableSpan] = []
        self.open = 1


class LLMMeterSpanProcessor(SpanProcessor):
    """Turns finished GenAI inference spans into llmmeter's metrics and the exit summary's tally.

    ``meter_provider=None`` uses the global meter provider through the API proxy, so the processor can
    be built before the SDK MeterProvider is installed (auto-instrumentation order) and still records
    into it once it is.
    """

    def __init__(self, meter_provider: metrics.MeterProvider | None = None, settings: Settings | None = None) -> None:
        self.settings = settings if settings is not None else global_settings()
        meter = (
            meter_provider.get_meter(SCOPE_NAME) if meter_provider is not None else metrics.get_meter(SCOPE_NAME)
        )
        self._token_usage = _histogram(
            meter, names.METRIC_TOKEN_USAGE, names.TOKEN_USAGE_BUCKETS, "Input and output tokens per GenAI operation."
        )
        self._duration = _histogram(
            meter, names.METRIC_OPERATION_DURATION, names.DURATION_BUCKETS, "Duration of GenAI client operations."
        )
        self._ttfc = _histogram(
            meter, names.METRIC_TIME_TO_FIRST_CHUNK, names.DURATION_BUCKETS, "Time to the first chunk of a stream."
        )
        self._tokens = _counter(meter, names.METRIC_TOKENS, "Tokens used by LLM calls, by token type.")
        self._cost = _counter(meter, names.METRIC_COST, "Cost of LLM calls in USD (priced calls only).")
        self._requests = _counter(meter, names.METRIC_REQUESTS, "LLM calls, by status, estimated and priced.")
        self._overflow = _counter(
            meter, names.METRIC_ATTRIBUTION_OVERFLOW, "Calls whose attribution value folded into __overflow__."
        )

        keys = tuple(dict.fromkeys((*names.KNOWN_ATTRIBUTION_KEYS, *self.settings.label_keys)))
        self._baggage_keys = keys  # copied onto spans
        self._span_key = {k: names.ATTRIBUTION_SPAN_PREFIX + k for k in keys}
        # (key, span attribute, metric label) for the keys that become metric labels.
        self._label_keys = tuple(
            (k, names.ATTRIBUTION_SPAN_PREFIX + k, names.ATTRIBUTION_LABEL_PREFIX + k) for k in self.settings.label_keys
        )
        self._feature_attr = names.ATTRIBUTION_SPAN_PREFIX + "feature"
        self._max_values = self.settings.max_values_per_label
        self._seen: dict[str, set[str]] = {k: set() for k, _, _ in self._label_keys}
        self._overflow_attrs = {k: {names.LABEL_ATTRIBUTION_KEY: k} for k, _, _ in self._label_keys}

        self._lock = threading.Lock()
        self._groups: OrderedDict[int, _Group] = OrderedDict()  # root span id -> group
        self._group_of: dict[int, _Group] = {}  # member span id -> group
        self._cache: dict[tuple[Any, ...], dict[str, str]] = {}
        self.tally = Tally()

    # --- span start --------------------------------------------------------------------------
    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        try:
            attrs = span.attributes
            if not attrs or attrs.get(names.OPERATION) not in _INFERENCE:
                return
            self._attribute(span, attrs, parent_context)
            parent = trace.get_current_span(parent_context)
            if parent.is_recording():
                parent_attrs = getattr(parent, "attributes", None)
                if parent_attrs and parent_attrs.get(names.OPERATION) in _INFERENCE:
                    self._join(parent.get_span_context().span_id, span.get_span_context().span_id)
        except Exception:
            _log.debug("llmmeter: on_start failed", exc_info=True)

    def _attribute(self, span: Span, attrs: Mapping[str, Any], parent_context: Context | None) -> None:
        values = attribution.current(parent_context, self._baggage_keys)
        if not values:
            return
        span_key = self._span_key
        for key, value in values.items():
            attr = span_key[key]
            if attr not in attrs:
                span.set_attribute(attr, value)

    def _join(self, parent_id: int, child_id: int) -> None:
        with self._lock:
            group = self._group_of.get(parent_id)
            if group is None:
                group = _Group(parent_id)
                self._groups[parent_id] = group
                self._group_of[parent_id] = group
                evicted = self._groups.popitem(last=False)[1] if len(self._groups) > MAX_PENDING_GROUPS else None
            else:
                evicted = None
                if len(group.members) >= MAX_GROUP_MEMBERS:
                    return  # pathological nesting: count this one on its own
            group.members.append(child_id)
            group.open += 1
            self._group_of[child_id] = group
            if evicted is not None:
                for member in evicted.members:
                    self._group_of.pop(member, None)
        if evicted is not None:
            self._count_group(evicted)

    # --- span end ----------------------------------------------------------------------------
    def on_end(self, span: ReadableSpan) -> None:
        try:
            attrs = span.attributes
            if not attrs or attrs.get(names.OPERATION) not in _INFERENCE:
                return
            if self._group_of:
                done = self._end_member(span)
                if done is None:
                    return  # counted with its group, or still waiting for the group to end
                if done is not False:
                    self._count_group(done)
                    return
            self._record(span, attrs)
        except Exception:
            _log.debug("llmmeter: on_end failed", exc_info=True)

    def _end_member(self, span: ReadableSpan) -> _Group | bool | None:
        """False: not part of a group. None: deferred. A group: all its spans ended, count it now."""
        span_id = span.context.span_id if span.context is not None else None
        with self._lock:
            group = self._group_of.get(span_id)  # type: ignore[arg-type]
            if group is None:
                return False
            group.ended.append(span)
            group.open -= 1
            if group.open > 0:
                return None
            for member in group.members:
                self._group_of.pop(member, None)
            self._groups.pop(group.members[0], None)
            return group

    def _count_group(self, group: _Group) -> None:
        chosen = _preferred(group.ended, group.members)
        if chosen is not None:
            self._record(chosen, chosen.attributes or {})

    # --- recording ---------------------------------------------------------------------------
    def _record(self, span: ReadableSpan, attrs: Mapping[str, Any]) -> None:
        get = attrs.get
        provider = _label_value(get(names.PROVIDER)) or _label_value(get(names.LEGACY_SYSTEM))
        operation = get(names.OPERATION)
        request_model = _label_value(get(names.REQUEST_MODEL))
        response_model = _label_value(get(names.RESPONSE_MODEL))
        model = request_model or response_model

        input_tokens = as_count(get(names.USAGE_INPUT_TOKENS))
        if input_tokens is None:
            input_tokens = as_count(get(names.LEGACY_USAGE_PROMPT_TOKENS))
        output_tokens = as_count(get(names.USAGE_OUTPUT_TOKENS))
        if output_tokens is None:
            output_tokens = as_count(get(names.LEGACY_USAGE_COMPLETION_TOKENS))
        cache_read = as_count(get(names.USAGE_CACHE_READ_TOKENS)) or 0
        cache_creation = as_count(get(names.USAGE_CACHE_CREATION_TOKENS)) or 0
        reasoning = as_count(get(names.USAGE_REASONING_TOKENS)) or 0
        has_usage = input_tokens is not None or output_tokens is not None
        estimated = get(names.LLMMETER_ESTIMATED) is True

        blocked = get(names.LLMMETER_BLOCKED) is True
        failed = get(names.ERROR_TYPE) is not None or (
            span.status is not None and span.status.status_code is StatusCode.ERROR
        )
        status = _STATUS_BLOCKED if blocked else (_STATUS_ERROR if failed else _STATUS_OK)

        cost = self._cost_of(attrs, provider, response_model, request_model, has_usage, input_tokens,
                             output_tokens, cache_read, cache_creation, reasoning)
        # A call that failed or was blocked before producing usage billed nothing: its cost is known (0).
        priced = cost is not None or (not has_usage and status != _STATUS_OK)

        base = self._base_key(provider, operation, model, attrs)
        est = _TRUE if estimated else _FALSE
        cache = self._cache
        if len(cache) > MAX_CACHED_LABEL_SETS:
            cache.clear()

        if input_tokens:
            self._tokens.add(input_tokens, self._labels(base, _TOKEN_INPUT, est))
        if output_tokens:
            self._tokens.add(output_tokens, self._labels(base, _TOKEN_OUTPUT, est))
        if cache_read:
            self._tokens.add(cache_read, self._labels(base, _TOKEN_CACHE_READ, est))
        if cache_creation:
            self._tokens.add(cache_creation, self._labels(base, _TOKEN_CACHE_CREATION, est))
        if reasoning:
            self._tokens.add(reasoning, self._labels(base, _TOKEN_REASONING, est))
        if cost:
            self._cost.add(cost, self._labels(base, "cost", est))
        self._requests.add(1, self._labels(base, status, est, _TRUE if priced else _FALSE))

        error_type = _label_value(get(names.ERROR_TYPE)) or (_STATUS_ERROR if failed and not blocked else None)
        semconv_key = (provider, operation, request_model, response_model, error_type)
        if input_tokens is not None:
            self._token_usage.record(input_tokens, self._semconv_labels(semconv_key, names.TOKEN_TYPE_INPUT))
        if output_tokens is not None:
            self._token_usage.record(output_tokens, self._semconv_labels(semconv_key, names.TOKEN_TYPE_OUTPUT))
        semconv = self._semconv_labels(semconv_key, None)
        if span.start_time is not None and span.end_time is not None and not blocked:
            self._duration.record(max(0.0, (span.end_time - span.start_time) / 1e9), semconv)
        ttfc = get(names.TIME_TO_FIRST_CHUNK)
        if isinstance(ttfc, (int, float)) and not isinstance(ttfc, bool) and ttfc >= 0:
            self._ttfc.record(float(ttfc), semconv)

        if not blocked:
            self.tally.record(
                response_model or request_model,
                _label_value(get(self._feature_attr)),
                input=input_tokens or 0,
                output=output_tokens or 0,
                cache_read=cache_read,
                reasoning=reasoning,
                cost_usd=(cost or 0.0) if priced else None,
                estimated=estimated,
            )

    def _cost_of(
        self,
        attrs: Mapping[str, Any],
        provider: str | None,
        response_model: str | None,
        request_model: str | None,
        has_usage: bool,
        input_tokens: int | None,
        output_tokens: int | None,
        cache_read: int,
        cache_creation: int,
        reasoning: int,
    ) -> float | None:
        """USD for the span, or None when unknown. llmmeter's spans carry it; others are priced here."""
        marked = attrs.get(names.LLMMETER_PRICED)
        if marked is not None:
            value = attrs.get(names.COST_USD)
            return float(value) if marked is True and isinstance(value, (int, float)) and value >= 0 else None
        if not has_usage:
            return None
        usage = Usage(
            input=input_tokens,
            output=output_tokens,
            cache_read=cache_read,
            cache_creation=cache_creation,
            cache_creation_1h=as_count(attrs.get(names.LLMMETER_CACHE_WRITE_1H_TOKENS)) or 0,
            reasoning=reasoning,
        )
        try:
            from llmmeter.pricing import price_usage  # late: the price table loads on first use

            result = price_usage(provider, response_model or request_model, usage)
            if not result.priced and request_model and request_model != response_model:
                result = price_usage(provider, request_model, usage)
            if result.priced and result.usd is not None:
                return float(result.usd)
        except Exception:  # a pricing bug leaves the call unpriced; it is still counted
            _log.debug("llmmeter: could not price a span", exc_info=True)
        # Not in our table: trust a positive cost another instrumentor computed (never a 0 guess).
        foreign = attrs.get(names.COST_USD)
        if isinstance(foreign, (int, float)) and not isinstance(foreign, bool) and foreign > 0:
            return float(foreign)
        return None

    def _base_key(self, provider: str | None, operation: Any, model: str | None, attrs: Mapping[str, Any]) -> tuple:
        if not self._label_keys:
            return (provider, operation, model)
        values: list[Any] = [provider, operation, model]
        for key, span_attr, _label in self._label_keys:
            value = _label_value(attrs.get(span_attr))
            values.append(self._bounded(key, value) if value is not None else None)
        return tuple(values)

    def _bounded(self, key: str, value: str) -> str:
        seen = self._seen[key]
        if value in seen:
            return value
        with self._lock:
            if len(seen) < self._max_values:
                seen.add(value)
                return value
        self._overflow.add(1, self._overflow_attrs[key])
        return names.OVERFLOW_VALUE

    def _labels(self, base: tuple, kind: str, estimated: str, priced: str | None = None) -> dict[str, str]:
        key = (base, kind, estimated, priced)
        labels = self._cache.get(key)
        if labels is None:
            labels = {}
            if base[0] is not None:
                labels[names.PROVIDER] = base[0]
            if base[1] is not None:
                labels[names.OPERATION] = base[1]
            if base[2] is not None:
                labels[names.REQUEST_MODEL] = base[2]
            for (_key, _attr, label), value in zip(self._label_keys, base[3:], strict=True):
                if value is not None:
                    labels[label] = value
            if kind in names.TOKEN_TYPES:
                labels[names.LABEL_TOKEN_TYPE] = kind
            elif priced is not None:
                labels[names.LABEL_STATUS] = kind
                labels[names.LABEL_PRICED] = priced
            labels[names.LABEL_ESTIMATED] = estimated
            self._cache[key] = labels
        return labels

    def _semconv_labels(self, key: tuple, token_type: str | None) -> dict[str, str]:
        cache_key = ("semconv", key, token_type)
        labels = self._cache.get(cache_key)
        if labels is None:
            labels = {}
            for name, value in zip(_SEMCONV_LABELS, key, strict=True):
                if value is not None:
                    labels[name] = value
            if token_type is not None:
                labels[names.TOKEN_TYPE] = token_type
            self._cache[cache_key] = labels
        return labels

    # --- lifecycle ---------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Count what is still waiting for a nested partner, so nothing seen is lost."""
        try:
            with self._lock:
                groups = list(self._groups.values())
                self._groups.clear()
                self._group_of.clear()
            for group in groups:
                self._count_group(group)
        except Exception:
            _log.debug("llmmeter: shutdown failed", exc_info=True)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _is_llmmeter(span: ReadableSpan) -> bool:
    scope = span.instrumentation_scope
    return scope is not None and scope.name.startswith(SCOPE_NAME)


def _preferred(ended: list[ReadableSpan], order: list[int]) -> ReadableSpan | None:
    """The span to count for one call: llmmeter's own, else the innermost (it saw the real response)."""
    if not ended:
        return None
    for span in ended:
        if _is_llmmeter(span):
            return span
    depth = {span_id: i for i, span_id in enumerate(order)}
    return max(ended, key=lambda s: depth.get(s.context.span_id, -1) if s.context is not None else -1)


def find_processor(tracer_provider: Any) -> LLMMeterSpanProcessor | None:
    """The llmmeter processor already attached to an SDK TracerProvider, if any (keeps setup idempotent)."""
    multi = getattr(tracer_provider, "_active_span_processor", None)
    for processor in getattr(multi, "_span_processors", ()) or ():
        if isinstance(processor, LLMMeterSpanProcessor):
            return processor
    return None
