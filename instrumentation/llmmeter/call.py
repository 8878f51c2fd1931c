"""One LLM call's span, from request to the moment its usage is known, shared by every provider.

Instrumentors stay thin: a provider module only translates (SDK request -> :class:`RequestInfo`,
SDK response or stream chunks -> :class:`ResponseInfo`). Everything else happens here, once: span
start and end (exactly once, whatever the app does with a stream), tiktoken estimates when usage is
missing, pricing, guards, and the rule that llmmeter never raises into the app, never changes a return
value or exception, and never waits on an exporter (spans are handed to the SDK's processors, which
batch in the background).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

from llmmeter import background, estimate, hooks, names
from llmmeter.errors import error_type
from llmmeter.pricing import Cost, price_usage  # the table itself loads lazily, on the first call priced
from llmmeter.usage import Usage

_log = logging.getLogger(__name__)

AttributeValue = str | bool | int | float | list[str] | tuple[str, ...]

# Why counts were estimated (names.LLMMETER_ESTIMATED_REASON).
REASON_NO_USAGE = "no_usage_in_response"
REASON_NO_USAGE_IN_STREAM = "no_usage_in_stream"
REASON_STREAM_CLOSED_EARLY = "stream_closed_early"
REASON_STREAM_ERROR = "stream_error"
REASON_STREAM_ABANDONED = "stream_not_consumed"


@dataclass(slots=True)
class RequestInfo:
    """What a call asked for, as the translator read it from the SDK call's arguments."""

    provider: str
    operation: str
    model: str | None
    attributes: dict[str, AttributeValue] = field(default_factory=dict)
    stream: bool = False
    # Returns the prompt's text, for a token estimate when the provider reports no usage. Called
    # lazily (only then), so the hot path never serializes a prompt.
    prompt_text: Callable[[], str] | None = None
    # Input tokens estimated before the call was sent (a before-call hook sets it, e.g. a hard $-budget
    # bounding the call's cost); checked against the provider's count after the response.
    estimated_input: int | None = None


@dataclass(slots=True)
class ResponseInfo:
    """What a call returned, as the translator read it from the SDK response or stream."""

    model: str | None = None
    id: str | None = None
    finish_reasons: tuple[str, ...] | None = None
    usage: Usage | None = None
    output_text: str | None = None  # for an output-token estimate when usage is missing
    unmeasured: list[str] = field(default_factory=list)  # what could not be read, and why
    attributes: dict[str, AttributeValue] | None = None
    chunks: int | None = None
    # For an input estimate when usage is missing, instead of request.prompt_text: the texts to count and
    # the tokens to add (a provider's chat-format overhead), captured when the call finished.
    input_texts: tuple[tuple[str, ...], int] | None = None


class LLMCall:
    """The live span of one call. :meth:`finish` ends it exactly once; later calls are no-ops."""

    __slots__ = ("_ended", "first_chunk_ns", "request", "span", "start_ns")

    def __init__(self, request: RequestInfo, span: trace.Span) -> None:
        self.request = request
        self.span = span
        self.start_ns = time.monotonic_ns()
        self.first_chunk_ns: int | None = None
        self._ended = False

    @property
    def ended(self) -> bool:
        return self._ended

    def activate(self) -> object:
        """Make the span current for the SDK call, so HTTP spans nest under it and traceparent is sent."""
        return otel_context.attach(trace.set_span_in_context(self.span))

    @staticmethod
    def deactivate(token: object) -> None:
        try:
            otel_context.detach(token)  # type: ignore[arg-type]
        except Exception:  # a context switched under us (async generator misuse): nothing to undo
            pass

    def finish(
        self,
        response: ResponseInfo | None,
        error: BaseException | None = None,
        estimate_reason: str | None = None,
        blocked: bool = False,
    ) -> None:
        """Record the outcome and end the span. Never raises.

        A call whose token counts must be estimated from a long text (or before the vocabulary is loaded)
        is handed to :mod:`llmmeter.background` with its texts captured now, so the app does not wait
        for the tokenizer; the span then ends when the estimate is ready.
        """
        if self._ended:
            return
        self._ended = True
        texts: _Texts | None = None
        try:
            texts = self._estimate_texts(response, error, estimate_reason)
            if texts is not None and self._defer(response, error, estimate_reason, blocked, texts):
                return
        except Exception:
            _log.debug("llmmeter: could not hand an estimate over", exc_info=True)
        self._complete(response, error, estimate_reason, blocked, texts, wait=False)

    def _defer(
        self, response: ResponseInfo | None, error: BaseException | None, reason: str | None, blocked: bool,
        texts: _Texts,
    ) -> bool:
        chars = len(texts.input or "") + len(texts.output or "") + sum(map(len, texts.input_parts or ()))
        model = (response.model if response is not None else None) or self.request.model
        if chars <= INLINE_ESTIMATE_CHARS and estimate.is_ready(model):
            return False  # cheaper to count here than to hand over
        estimate.prepare(model)
        return background.submit(lambda: self._complete(response, error, reason, blocked, texts, wait=True), chars)

    def _complete(
        self, response: ResponseInfo | None, error: BaseException | None, reason: str | None, blocked: bool,
        texts: _Texts | None, wait: bool,
    ) -> None:
        span = self.span
        try:
            self._record(response, error, reason, blocked, texts, wait)
        except Exception:  # a translator or pricing bug must not reach the app
            _log.debug("llmmeter: could not record an LLM call", exc_info=True)
            try:
                span.set_attribute(names.LLMMETER_UNMEASURED, "internal_error")
            except Exception:
                pass
        finally:
            try:
                span.end()
            except Exception:
                pass

    def _estimate_texts(
        self, response: ResponseInfo | None, error: BaseException | None, reason: str | None
    ) -> _Texts | None:
        """The texts to count, captured on the app's thread (the app may change its messages list later);
        None when nothing needs an estimate. A call that failed before any output (HTTP error) produced no
        billable tokens, so it is not estimated."""
        produced_output = response is not None and (error is None or reason is not None)
        usage = response.usage if response is not None else None
        if not produced_output or (usage is not None and usage.input is not None and usage.output is not None):
            return None
        texts = _Texts()
        if (usage is None or usage.input is None) and response.input_texts is not None:  # type: ignore[union-attr]
            texts.input_parts, texts.input_extra = response.input_texts  # type: ignore[union-attr]
        elif usage is None or usage.input is None:
            texts.input = ""
            if self.request.prompt_text is not None:
                try:
                    texts.input = self.request.prompt_text()
                except Exception:
                    texts.input = ""
        if usage is None or usage.output is None:
            texts.output = response.output_text or ""  # type: ignore[union-attr]
        return texts

    def _record(
        self, response: ResponseInfo | None, error: BaseException | None, reason: str | None, blocked: bool,
        texts: _Texts | None = None, wait: bool = False,
    ) -> None:
        span = self.span
        request = self.request
        attrs: dict[str, AttributeValue] = {}
        usage = response.usage if response is not None else None
        if response is not None:
            if response.model:
                attrs[names.RESPONSE_MODEL] = response.model
            if response.id:
                attrs[names.RESPONSE_ID] = response.id
            if response.finish_reasons:
                attrs[names.FINISH_REASONS] = tuple(response.finish_reasons)
            if response.chunks is not None:
                attrs[names.LLMMETER_STREAM_CHUNKS] = response.chunks
            if response.attributes:
                attrs.update(response.attributes)
        if self.first_chunk_ns is not None:
            attrs[names.TIME_TO_FIRST_CHUNK] = (self.first_chunk_ns - self.start_ns) / 1e9

        # Estimate what the provider did not report (texts: see _estimate_texts).
        if texts is not None and response is not None:
            usage = self._estimate(usage, response, texts, wait)
            response.usage = usage  # after-call hooks (budgets, agent runs) see what the span says

        if usage is not None:
            if usage.input is not None:
                attrs[names.USAGE_INPUT_TOKENS] = usage.input
            if usage.output is not None:
                attrs[names.USAGE_OUTPUT_TOKENS] = usage.output
            if usage.cache_read:
                attrs[names.USAGE_CACHE_READ_TOKENS] = usage.cache_read
            if usage.cache_creation:
                attrs[names.USAGE_CACHE_CREATION_TOKENS] = usage.cache_creation
            if usage.cache_creation_1h:
                attrs[names.LLMMETER_CACHE_WRITE_1H_TOKENS] = usage.cache_creation_1h
            if usage.reasoning:
                attrs[names.USAGE_REASONING_TOKENS] = usage.reasoning
            attrs[names.LLMMETER_ESTIMATED] = usage.is_estimated
            if usage.is_estimated:
                attrs[names.LLMMETER_ESTIMATED_REASON] = reason or REASON_NO_USAGE
            model = (response.model if response is not None else None) or request.model
            cost = price_usage(request.provider, model, usage)
            if not cost.priced and request.model and request.model != model:
                cost = price_usage(request.provider, request.model, usage)
            attrs[names.LLMMETER_PRICED] = cost.priced
            if cost.priced and cost.usd is not None:
                attrs[names.COST_USD] = cost.usd
                if cost.price_key:
                    attrs[names.LLMMETER_PRICE_MODEL] = cost.price_key
            attrs[names.LLMMETER_PRICE_TABLE_VERSION] = cost.table_version
            _pricing_attributes(attrs, usage, cost, request.estimated_input)
        else:
            cost = None
        if response is not None and response.unmeasured:
            attrs[names.LLMMETER_UNMEASURED] = tuple(response.unmeasured)

        if blocked:
            attrs[names.LLMMETER_BLOCKED] = True
        if error is not None:
            attrs[names.ERROR_TYPE] = error_type(error)
            span.set_status(Status(StatusCode.ERROR, _safe_message(error)))
        span.set_attributes(attrs)

        for hook in hooks.AFTER_CALL:
            try:
                hook(request, response, cost, span)
            except Exception:
                _log.debug("llmmeter: after-call hook failed", exc_info=True)

    def _estimate(self, usage: Usage | None, response: ResponseInfo, texts: _Texts, wait: bool) -> Usage:
        estimated = set(usage.estimated) if usage is not None else set()
        result = usage if usage is not None else Usage()
        model = response.model or self.request.model
        methods = set()
        if texts.input is not None:
            result.input, method = estimate.count_tokens(texts.input, model, wait=wait)
            methods.add(method)
            estimated.add("input")
        elif texts.input_parts is not None:
            result.input = texts.input_extra
            for part in texts.input_parts:
                count, method = estimate.count_tokens(part, model, wait=wait)
                result.input += count
                methods.add(method)
            estimated.add("input")
        if texts.output is not None:
            result.output, method = estimate.count_tokens(texts.output, model, wait=wait)
            methods.add(method)
            estimated.add("output")
        result.estimated = frozenset(estimated)
        if estimate.METHOD_HEURISTIC in methods:
            response.unmeasured.append("tokenizer_not_ready")
        return result


# Estimates of at most this many characters run on the app's thread once the vocabulary is loaded
# (tens of microseconds to a few milliseconds); longer ones go to the background worker.
INLINE_ESTIMATE_CHARS = 32_768


@dataclass(slots=True)
class _Texts:
    """What to count for a call's estimate: None where the provider reported the count."""

    input: str | None = None
    output: str | None = None
    input_parts: tuple[str, ...] | None = None  # instead of input: ResponseInfo.input_texts
    input_extra: int = 0

_STANDARD_TIER_NAMES = frozenset({"default", "standard", "auto"})  # tiers billed at the standard rates


def _pricing_attributes(
    attrs: dict[str, AttributeValue], usage: Usage, cost: Cost, estimated_input: int | None
) -> None:
    """How the call was priced (issue 12): source, rate tier, long-context tier, discount, why unpriced, cache
    economics, per-modality counts, and the pre-call input estimate. Only what is set is written."""
    if usage.audio_input:
        attrs[names.LLMMETER_AUDIO_INPUT_TOKENS] = usage.audio_input
    if usage.image_input:
        attrs[names.LLMMETER_IMAGE_INPUT_TOKENS] = usage.image_input
    if usage.audio_output:
        attrs[names.LLMMETER_AUDIO_OUTPUT_TOKENS] = usage.audio_output
    if usage.image_output:
        attrs[names.LLMMETER_IMAGE_OUTPUT_TOKENS] = usage.image_output
    tier = usage.service_tier
    if tier.__class__ is str and names.OPENAI_RESPONSE_SERVICE_TIER not in attrs:  # OpenAI's own attribute says it
        attrs[names.LLMMETER_SERVICE_TIER] = tier
    if estimated_input is not None:
        attrs[names.LLMMETER_ESTIMATE_INPUT_TOKENS] = estimated_input
    if not cost.priced:
        if cost.reason:
            attrs[names.LLMMETER_UNPRICED_REASON] = cost.reason
        return
    if cost.source:
        attrs[names.COST_SOURCE] = cost.source
    if cost.service_tier and (cost.service_tier != "standard" or (tier.__class__ is str
                                                                  and tier not in _STANDARD_TIER_NAMES)):
        # The rates used, when not the standard ones or when the provider named a tier that has its own rates
        # (priced at standard for want of them): absent, the call was served and priced at the standard tier.
        attrs[names.LLMMETER_PRICE_SERVICE_TIER] = cost.service_tier
    if cost.long_context_threshold:
        attrs[names.LLMMETER_PRICE_LONG_CONTEXT] = cost.long_context_threshold
    if cost.discount is not None:
        attrs[names.LLMMETER_PRICE_DISCOUNT] = cost.discount
    if cost.cache_savings:
        attrs[names.LLMMETER_CACHE_SAVINGS] = cost.cache_savings
    if cost.cache_write_premium:
        attrs[names.LLMMETER_CACHE_WRITE_PREMIUM] = cost.cache_write_premium


def _safe_message(error: BaseException) -> str:
    """The exception's class only: SDK error messages can echo request headers or keys."""
    return type(error).__name__


def start_call(tracer: Tracer, request: RequestInfo) -> LLMCall | None:
    """Start the span for a call and run the before-call guards.

    Returns None when llmmeter cannot instrument this call (the app's call then runs untouched).
    A guard's :class:`hooks.GuardError` propagates on purpose: the call is refused before it is sent.
    """
    try:
        attributes: dict[str, AttributeValue] = {
            names.OPERATION: request.operation,
            names.PROVIDER: request.provider,
        }
        if request.model:
            attributes[names.REQUEST_MODEL] = request.model
        if request.stream:
            attributes[names.REQUEST_STREAM] = True
        attributes.update(request.attributes)
        name = f"{request.operation} {request.model}" if request.model else request.operation
        span = tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attributes)
        call = LLMCall(request, span)
    except Exception:
        _log.debug("llmmeter: could not start a span", exc_info=True)
        return None
    if hooks.BEFORE_CALL:
        background.wait_for_context()  # guards read earlier calls' counts: let this flow's estimates land
    for hook in hooks.BEFORE_CALL:
        try:
            hook(request, span)
        except hooks.GuardError as refusal:
            call.finish(None, refusal, blocked=True)
            raise
        except Exception:
            _log.debug("llmmeter: before-call hook failed", exc_info=True)
    return call
