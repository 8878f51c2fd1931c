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

On the app's thread it does as little as it can: ``on_start`` copies attribution, ``on_end`` checks that
the span is a GenAI inference span (one dict lookup for any other span), settles nested spans, and queues
the span. Reading its attributes, the counters' sums and the histogram records (three or four synchronous
OTel SDK measurements, tens of microseconds each) happen later, off the call's path
(:mod:`llmmeter.deferred`): at the latest when a metric reader collects, since every collection drains
the queue *before* the SDK reads its instruments, so a reader sees every span that ended before it began.

* counters (``llmmeter.tokens``, ``llmmeter.cost``, ``llmmeter.requests``) are cumulative sums kept here,
  per label set, and reported by ObservableCounter callbacks when a reader collects. They are still
  monotonic cumulative sums, so Prometheus shows ``llmmeter_tokens_total`` and ``rate()`` works. At most
  ``MAX_SERIES_PER_METRIC`` label sets per counter are kept; a call that would add one more has its
  attribution labels folded into ``__overflow__`` (counted by ``llmmeter.attribution.overflow``);
* histograms (token usage, duration, time to first chunk) are recorded through the SDK with the span as
  the exemplar's context, so an exemplar points at the LLM call's trace.

It never raises.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import NonRecordingSpan, SpanContext

from llmmeter import attribution, names
from llmmeter.config import Settings
from llmmeter.config import settings as global_settings
from llmmeter.deferred import DeferredQueue, drain_before_collect
from llmmeter.span_reader import STATUS_BLOCKED, CallRecord, is_inference, label_value, plain_attributes, read_call
from llmmeter.summary import Tally

_log = logging.getLogger(__name__)

SCOPE_NAME = "llmmeter"
# In-flight nested groups tracked at once; beyond that the oldest group is counted and forgotten.
MAX_PENDING_GROUPS = 4096
MAX_GROUP_MEMBERS = 8
# Cached label dicts; cleared when full (cheap, bounded, and refilled by the live label sets).
MAX_CACHED_LABEL_SETS = 4096
# Label sets (series) kept per llmmeter counter. Beyond it a call's attribution labels fold into
# names.OVERFLOW_VALUE; the folded series may take OVERFLOW_HEADROOM more, after which provider and model
# fold too (a set bounded by operations x statuses), so memory is bounded whatever the app sends. The
# SDK's own per-instrument cardinality limit (2000 by default) still applies on export.
MAX_SERIES_PER_METRIC = 10_000
OVERFLOW_HEADROOM = 1_000
# The exemplar context of a histogram record whose span was not sampled: a context that names no valid span
# (an empty Context would not do: the SDK's record() treats a falsy context as "use the current one").
_NO_SPAN = trace.set_span_in_context(trace.INVALID_SPAN, Context())
_TRUE = "true"
_FALSE = "false"
_STATUS_BLOCKED = STATUS_BLOCKED
_SEMCONV_LABELS = (names.PROVIDER, names.OPERATION, names.REQUEST_MODEL, names.RESPONSE_MODEL, names.ERROR_TYPE)
_TOKEN_INPUT, _TOKEN_OUTPUT, _TOKEN_CACHE_READ, _TOKEN_CACHE_CREATION, _TOKEN_REASONING = names.TOKEN_TYPES


def _histogram(meter: metrics.Meter, name: str, buckets: tuple[float, ...], description: str) -> metrics.Histogram:
    # The advisory gives semconv buckets without any View (views.py covers others' instruments).
    unit = names.METRIC_SPECS[name][1]
    return meter.create_histogram(name, unit, description, explicit_bucket_boundaries_advisory=list(buckets))


def _counter(meter: metrics.Meter, name: str, description: str) -> metrics.Counter:
    return meter.create_counter(name, names.METRIC_SPECS[name][1], description)


def _observable_counter(
    meter: metrics.Meter, name: str, callback: Callable[[CallbackOptions], Iterable[Observation]], description: str
) -> None:
    meter.create_observable_counter(name, [callback], names.METRIC_SPECS[name][1], description)


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
    into it once it is. ``max_series_per_metric`` caps the label sets kept per llmmeter counter (see
    ``MAX_SERIES_PER_METRIC``).
    """

    def __init__(
        self,
        meter_provider: metrics.MeterProvider | None = None,
        settings: Settings | None = None,
        *,
        max_series_per_metric: int = MAX_SERIES_PER_METRIC,
    ) -> None:
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
        # Finished inference spans waiting to be counted, off the app's thread (see llmmeter.deferred).
        self._deferred = DeferredQueue(self._count_span, name="llmmeter-metrics")

        # Cumulative sums per series key (base, kind, estimated, priced) -> [sum, labels], read by the
        # ObservableCounter callbacks. One lock for all three: one acquisition per call.
        self._sums_lock = threading.Lock()
        self._tokens: dict[tuple[Any, ...], list[Any]] = {}
        self._cost: dict[tuple[Any, ...], list[Any]] = {}
        self._requests: dict[tuple[Any, ...], list[Any]] = {}
        self._max_series = max_series_per_metric
        _observable_counter(
            meter, names.METRIC_TOKENS, self._observer(self._tokens), "Tokens used by LLM calls, by token type."
        )
        _observable_counter(
            meter, names.METRIC_COST, self._observer(self._cost), "Cost of LLM calls in USD (priced calls only)."
        )
        _observable_counter(
            meter,
            names.METRIC_REQUESTS,
            self._observer(self._requests),
            "LLM calls, by status, estimated and priced.",
        )
        # Cache economics and estimate checks (issue 12): USD cache reads saved and cache writes cost above the
        # uncached input rate, per label set like llmmeter.cost; the pre-call estimate's error; the table's age.
        self._cache_savings: dict[tuple[Any, ...], list[Any]] = {}
        self._cache_premium: dict[tuple[Any, ...], list[Any]] = {}
        _observable_counter(meter, names.METRIC_CACHE_SAVINGS, self._observer(self._cache_savings),
                            "USD cache reads saved against the uncached input rate (priced calls).")
        _observable_counter(meter, names.METRIC_CACHE_WRITE_PREMIUM, self._observer(self._cache_premium),
                            "USD cache writes cost above the uncached input rate (priced calls).")
        self._estimate_error = _histogram(
            meter, names.METRIC_ESTIMATE_ERROR, names.ESTIMATE_ERROR_BUCKETS,
            "Pre-call input-token estimate divided by the provider's count (1: exact).",
        )
        meter.create_observable_gauge(names.METRIC_PRICE_TABLE_AGE, [_price_table_age],
                                      names.METRIC_SPECS[names.METRIC_PRICE_TABLE_AGE][1],
                                      "Seconds since the price table in force was published or fetched.")
        # Synchronous: it only moves when a value folds, which is rare by construction.
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
        self._cache: dict[tuple[Any, ...], tuple[dict[str, str], dict[str, str], dict[str, str]]] = {}
        # The exit summary's rows; reading them counts the queued spans first.
        self.tally = Tally(before_read=self._deferred.drain)
        # Callables given every counted call's CallRecord and its span (the resource's service.name is only
        # there), once, off the app's thread (the ledger writer). A sink must not block: it runs on the
        # counting thread. Its errors are logged, never raised.
        self.sinks: list[Callable[[CallRecord, ReadableSpan], None]] = []
        if self.settings.ledger not in (None, "off"):  # the cost ledger (llmmeter.ledger), imported only when on
            from llmmeter.ledger import attach

            attach(self, self.settings.ledger, meter)
        # Whether the observable callbacks must drain the queue themselves (under the SDK's collection
        # lock): only until the readers drain it before collecting (llmmeter.deferred.drain_before_collect).
        self._global_meter = meter_provider is None
        self._drain_in_callback = not (
            meter_provider is not None and drain_before_collect(meter_provider, self._deferred)
        )
        _LIVE_PROCESSORS.add(self)

    # --- span start --------------------------------------------------------------------------
    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        try:
            attrs = span.attributes
            if not is_inference(attrs):
                return
            self._attribute(span, attrs, parent_context)
            parent = trace.get_current_span(parent_context)
            if parent.is_recording():
                parent_attrs = getattr(parent, "attributes", None)
                if is_inference(parent_attrs):
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
            if not is_inference(span.attributes):
                return
            if self._group_of:
                done = self._end_member(span)
                if done is None:
                    return  # counted with its group, or still waiting for the group to end
                if done is not False:
                    self._count_group(done)
                    return
            self._deferred.add(span)
        except Exception:
            _log.debug("llmmeter: on_end failed", exc_info=True)

    def _count_span(self, span: ReadableSpan) -> None:
        """Count one finished inference span (deferred work: see llmmeter.deferred)."""
        self._record(span, plain_attributes(span))

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
            self._deferred.add(chosen)

    # --- recording ---------------------------------------------------------------------------
    def _record(self, span: ReadableSpan, attrs: Mapping[str, Any]) -> None:
        call = read_call(span, attrs)
        if call is None:
            return
        self._record_call(call, span.context)
        for sink in self.sinks:
            try:
                sink(call, span)
            except Exception:  # a sink (the ledger) must never stop the metrics
                _log.debug("llmmeter: a call sink failed", exc_info=True)

    def _record_call(self, call: CallRecord, span_context: SpanContext | None = None) -> None:
        """Add one call to the counters' sums, the semconv histograms and the exit summary's tally."""
        input_tokens, output_tokens = call.input_tokens, call.output_tokens
        cache_read, cache_creation, reasoning = call.cache_read, call.cache_creation, call.reasoning
        status, cost = call.status, call.cost_usd

        base = self._base_key(call.provider, call.operation, call.model, call.attributes)
        est = _TRUE if call.estimated else _FALSE
        tokens = self._tokens
        adds: list[tuple[dict[tuple[Any, ...], list[Any]], str, str | None, float]] = []
        if input_tokens:
            adds.append((tokens, _TOKEN_INPUT, None, input_tokens))
        if output_tokens:
            adds.append((tokens, _TOKEN_OUTPUT, None, output_tokens))
        if cache_read:
            adds.append((tokens, _TOKEN_CACHE_READ, None, cache_read))
        if cache_creation:
            adds.append((tokens, _TOKEN_CACHE_CREATION, None, cache_creation))
        if reasoning:
            adds.append((tokens, _TOKEN_REASONING, None, reasoning))
        if cost:
            adds.append((self._cost, "cost", None, cost))
        if call.cache_savings > 0:
            adds.append((self._cache_savings, "cost", None, call.cache_savings))
        if call.cache_write_premium > 0:
            adds.append((self._cache_premium, "cost", None, call.cache_write_premium))
        adds.append((self._requests, status, _TRUE if call.priced else _FALSE, 1))
        self._add_sums(base, est, adds)

        # Histograms, with the span itself as the exemplars' context (so an exemplar points at the LLM call).
        blocked = status == _STATUS_BLOCKED
        input_labels, output_labels, semconv = self._semconv_labels((call.provider, call.operation,
                                                                     call.request_model, call.response_model,
                                                                     call.error_type))
        # An unsampled span gets _NO_SPAN: the thread counting it may have some unrelated span current.
        exemplar = _NO_SPAN
        if call.sampled and span_context is not None:
            exemplar = trace.set_span_in_context(NonRecordingSpan(span_context))
        if input_tokens is not None:
            self._token_usage.record(input_tokens, input_labels, context=exemplar)
        if output_tokens is not None:
            self._token_usage.record(output_tokens, output_labels, context=exemplar)
        duration = call.duration_s
        if duration is not None and not blocked:
            self._duration.record(duration, semconv, context=exemplar)
        if call.time_to_first_chunk is not None:
            self._ttfc.record(call.time_to_first_chunk, semconv, context=exemplar)
        estimated_input = call.attributes.get(names.LLMMETER_ESTIMATE_INPUT_TOKENS)
        if estimated_input.__class__ is int and input_tokens and not call.estimated:
            self._estimate_error.record(estimated_input / input_tokens,
                                        self._estimate_labels(call.provider, call.model), context=exemplar)

        if not blocked:
            self.tally.record(
                call.response_model or call.request_model,
                label_value(call.attributes.get(self._feature_attr)),
                input=input_tokens or 0,
                output=output_tokens or 0,
                cache_read=cache_read,
                reasoning=reasoning,
                cost_usd=(cost or 0.0) if call.priced else None,
                estimated=call.estimated,
            )

    def _estimate_labels(self, provider: str | None, model: str | None) -> dict[str, str]:
        """Labels of llmmeter.estimate.error: provider and model (request model, else response model)."""
        labels = {}
        if provider is not None:
            labels[names.PROVIDER] = provider
        if model is not None:
            labels[names.REQUEST_MODEL] = model
        return labels

    def _base_key(self, provider: str | None, operation: Any, model: str | None, attrs: Mapping[str, Any]) -> tuple:
        if not self._label_keys:
            return (provider, operation, model)
        values: list[Any] = [provider, operation, model]
        for key, span_attr, _label in self._label_keys:
            value = label_value(attrs.get(span_attr))
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

    def _add_sums(
        self, base: tuple, est: str, adds: list[tuple[dict[tuple[Any, ...], list[Any]], str, str | None, float]]
    ) -> None:
        """Add one call's amounts to the counters' sums, folding its labels if a counter is full."""
        folded: tuple = ()
        with self._sums_lock:
            slots = []
            for series, kind, priced, _amount in adds:  # the common case: every series exists already
                slot = series.get((base, kind, est, priced))
                if slot is None:
                    break
                slots.append(slot)
            else:
                for slot, add in zip(slots, adds, strict=True):
                    slot[0] += add[3]
                return
            if _would_exceed(base, est, adds, self._max_series):
                base, folded = self._fold(base, adds, est)
            for series, kind, priced, amount in adds:
                key = (base, kind, est, priced)
                slot = series.get(key)
                if slot is None:
                    series[key] = [amount, self._series_labels(key)]
                else:
                    slot[0] += amount
        for key in folded:
            self._overflow.add(1, self._overflow_attrs.get(key) or {names.LABEL_ATTRIBUTION_KEY: key})

    def _fold(
        self, base: tuple, adds: list[tuple[dict[tuple[Any, ...], list[Any]], str, str | None, float]], est: str
    ) -> tuple[tuple, tuple[str, ...]]:
        """The base key with attribution values in __overflow__, and the keys folded (for the overflow count).

        Past OVERFLOW_HEADROOM more series, provider and model fold too. Called with the sums lock held."""
        overflow = names.OVERFLOW_VALUE
        attribution_values = base[3:]
        folded_keys = tuple(
            key
            for (key, _attr, _label), value in zip(self._label_keys, attribution_values, strict=True)
            if value is not None and value != overflow
        )
        base = (*base[:3], *(overflow if value is not None else None for value in attribution_values))
        if _would_exceed(base, est, adds, self._max_series + OVERFLOW_HEADROOM):
            base = (overflow if base[0] is not None else None, base[1], overflow, *base[3:])
            folded_keys = (*folded_keys, names.PROVIDER, names.REQUEST_MODEL)
        return base, folded_keys

    def _series_labels(self, key: tuple) -> dict[str, str]:
        base, kind, estimated, priced = key
        labels: dict[str, str] = {}
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
        return labels

    def _observer(
        self, series: dict[tuple[Any, ...], list[Any]]
    ) -> Callable[[CallbackOptions], Iterable[Observation]]:
        """The ObservableCounter callback of one counter: its cumulative sums, after counting queued spans.

        The SDK runs every observable callback *before* it reads any instrument's storage:
        ``SynchronousMeasurementConsumer.collect`` (opentelemetry-sdk 1.45,
        ``opentelemetry/sdk/metrics/_internal/measurement_consumer.py``) calls ``async_instrument.callback``
        for each registered observable instrument, then ``self._reader_storages[metric_reader].collect()``.
        Draining the queue before that puts every span that ended before the collection into it, for every
        reader (a histogram record goes to all readers' storages). The readers of an SDK MeterProvider do
        it just before the SDK takes its collection lock (``llmmeter.deferred.drain_before_collect``);
        only where they could not be hooked does this callback drain, under that lock (record() does not
        take it, so that cannot deadlock, but it holds the lock longer: see llmmeter.deferred on forks).
        """

        def observe(options: CallbackOptions) -> list[Observation]:
            try:
                if self._drain_in_callback:
                    self._deferred.drain()
                    if self._global_meter:
                        self._hook_global_readers()
                with self._sums_lock:
                    return [Observation(value, labels) for value, labels in series.values()]
            except Exception:
                _log.debug("llmmeter: could not report a counter", exc_info=True)
                return []

        return observe

    def _hook_global_readers(self) -> None:
        """Built without a meter provider: once the global SDK one collects, its readers drain first."""
        if drain_before_collect(metrics.get_meter_provider(), self._deferred):
            self._drain_in_callback = False

    def _after_fork_in_child(self) -> None:
        """A forked child starts from zero: the calls before the fork were the parent's, which reports them.

        Without this every child re-exported the parent's pre-fork sums as its own (under its own
        ``service.instance.id``), so a fleet of forked workers summed to many times the real calls. Locks
        are re-created (a thread that held one did not survive the fork); nested groups waiting for spans
        of the parent's other threads are dropped (those spans end in the parent)."""
        self._sums_lock = threading.Lock()
        self._lock = threading.Lock()
        for series in (self._tokens, self._cost, self._requests):
            series.clear()  # in place: the observable callbacks hold these dicts
        self._groups.clear()
        self._group_of.clear()
        for seen in self._seen.values():
            seen.clear()
        self.tally.reset()

    def _semconv_labels(self, key: tuple) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
        """The semconv histograms' label dicts for one (provider, operation, request model, response model,
        error type): (input token, output token, no token type). Cached: one lookup per span."""
        found = self._cache.get(key)
        if found is None:
            labels = {name: value for name, value in zip(_SEMCONV_LABELS, key, strict=True) if value is not None}
            found = (
                {**labels, names.TOKEN_TYPE: names.TOKEN_TYPE_INPUT},
                {**labels, names.TOKEN_TYPE: names.TOKEN_TYPE_OUTPUT},
                labels,
            )
            if len(self._cache) >= MAX_CACHED_LABEL_SETS:
                self._cache.clear()
            self._cache[key] = found
        return found

    # --- lifecycle ---------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Count what is still waiting for a nested partner and every queued span: nothing seen is lost."""
        try:
            with self._lock:
                groups = list(self._groups.values())
                self._groups.clear()
                self._group_of.clear()
            for group in groups:
                self._count_group(group)
            self._deferred.close()
            for sink in self.sinks:
                getattr(sink, "close", lambda: None)()
        except Exception:
            _log.debug("llmmeter: shutdown failed", exc_info=True)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Count the queued spans now, so their metrics reach the SDK before an exporter flushes."""
        try:
            self._deferred.drain()
        except Exception:
            _log.debug("llmmeter: force_flush failed", exc_info=True)
        return True


def _price_table_age(options: CallbackOptions) -> list[Observation]:
    """llmmeter.price_table.age: the table in force's age, once it is loaded (never loads it)."""
    try:
        from llmmeter.pricing import table_age_seconds

        age = table_age_seconds()
        return [] if age is None else [Observation(age)]
    except Exception:
        return []


def _would_exceed(
    base: tuple, est: str, adds: list[tuple[dict[tuple[Any, ...], list[Any]], str, str | None, float]], limit: int
) -> bool:
    """Whether this call's new series would take one of its counters past ``limit`` series."""
    missing = [series for series, kind, priced, _amount in adds if (base, kind, est, priced) not in series]
    return any(len(series) + sum(1 for other in missing if other is series) > limit for series in missing)


def _is_llmmeter(span: ReadableSpan) -> bool:
    scope = span.instrumentation_scope
    return scope is not None and scope.name.startswith(SCOPE_NAME)


def _preferred(ended: list[ReadableSpan], order: list[int]) -> ReadableSpan | None:
    """The span to count for one call made by several instrumentors: llmmeter's own; else one written in
    the GenAI semconv (it names the requested model, which labels use), innermost first (it saw the real
    response); else the innermost of the rest (OpenInference's, which wraps the SDK's lowest-level call)."""
    if not ended:
        return None
    for span in ended:
        if _is_llmmeter(span):
            return span
    depth = {span_id: i for i, span_id in enumerate(order)}

    def rank(span: ReadableSpan) -> tuple[bool, int]:
        semconv = (span.attributes or {}).get(names.OPERATION) is not None
        return semconv, depth.get(span.context.span_id, -1) if span.context is not None else -1

    return max(ended, key=rank)


_LIVE_PROCESSORS: weakref.WeakSet[LLMMeterSpanProcessor] = weakref.WeakSet()


def _reset_processors_after_fork() -> None:
    for processor in list(_LIVE_PROCESSORS):
        try:
            processor._after_fork_in_child()
        except Exception:
            pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_processors_after_fork)


def find_processor(tracer_provider: Any) -> LLMMeterSpanProcessor | None:
    """The llmmeter processor already attached to an SDK TracerProvider, if any (keeps setup idempotent)."""
    multi = getattr(tracer_provider, "_active_span_processor", None)
    for processor in getattr(multi, "_span_processors", ()) or ():
        if isinstance(processor, LLMMeterSpanProcessor):
            return processor
    return None
