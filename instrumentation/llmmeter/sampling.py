"""Exact metrics whatever the trace sampler decides: GenAI spans the sampler drops are still recorded.

llmmeter counts tokens, cost and requests from finished spans (``LLMMeterSpanProcessor.on_end``), and
agent run totals, the loop guard and budgets read the usage off the live span. A span the sampler drops
is a ``NonRecordingSpan``: no processor ever sees it and its attributes are discarded, so with
``ALWAYS_OFF`` nothing was counted and with ``TraceIdRatioBased(0.1)`` about one call in ten.

:class:`RecordGenAISampler` wraps the sampler the TracerProvider was configured with and changes one
thing: when that sampler says ``DROP`` for a span whose *start* attributes name a GenAI inference
operation, an agent run or a tool execution (``gen_ai.operation.name``), the decision becomes
``RECORD_ONLY``. A record-only span is a real span that every SpanProcessor sees, but its trace flags
say "not sampled": the SDK's ``BatchSpanProcessor`` / ``SimpleSpanProcessor`` export only sampled spans
(``opentelemetry/sdk/trace/export/__init__.py``, ``on_end``), child spans of it follow the parent's
"not sampled" flag under ``ParentBased``, and the trace context sent to the provider says not sampled.
So what is exported still follows the sampler exactly; only counting sees every call.

Every other span, and every ``RECORD_ONLY`` / ``RECORD_AND_SAMPLE`` decision, is passed through as the
wrapped sampler made it. The cost when the wrapped sampler samples is one extra method call per span;
when it drops, one dict lookup, and for a GenAI span the (small) cost of recording a span.

Spans of other instrumentors are covered when they pass ``gen_ai.operation.name`` among the
attributes they start the span with (opentelemetry-instrumentation-openai-v2 does); an instrumentor
that sets it only after the span started cannot be seen by any sampler, and its dropped spans are not
counted.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

from llmmeter import names

_log = logging.getLogger(__name__)

# Operations whose spans are recorded even when the sampler drops them.
RECORDED_OPERATIONS: frozenset[str] = names.INFERENCE_OPERATIONS | {names.OP_INVOKE_AGENT, names.OP_EXECUTE_TOOL}
_OPERATION = names.OPERATION
_DROP = Decision.DROP
_RECORD_ONLY = Decision.RECORD_ONLY


class RecordGenAISampler(Sampler):
    """The configured sampler, except that GenAI spans it drops are recorded (not exported). See module doc."""

    __slots__ = ("_root",)

    def __init__(self, root: Sampler) -> None:
        self._root = root

    @property
    def root(self) -> Sampler:
        """The sampler this one wraps (the one that decides what is exported)."""
        return self._root

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        result = self._root.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)
        if result.decision is _DROP and attributes and attributes.get(_OPERATION) in RECORDED_OPERATIONS:
            # The SDK builds the span with the *result's* attributes, and samplers return none on DROP
            # (StaticSampler, TraceIdRatioBased): pass the start attributes on, or the span would lose them.
            return SamplingResult(_RECORD_ONLY, attributes, result.trace_state)
        return result

    def get_description(self) -> str:
        return f"LLMMeterRecordGenAI{{{self._root.get_description()}}}"


def record_genai_spans(tracer_provider: Any) -> bool:
    """Wrap ``tracer_provider``'s sampler in :class:`RecordGenAISampler` (idempotent). Never raises.

    Tracers the provider already handed out keep a reference to the old sampler; they are switched too
    (the SDK keeps them in ``TracerProvider._tracers``), so instrumentors set up before llmmeter are
    covered. Returns True when the provider's sampler is (now) wrapped.
    """
    try:
        sampler = getattr(tracer_provider, "sampler", None)
        if not isinstance(sampler, Sampler):
            return False  # not an SDK TracerProvider
        if isinstance(sampler, RecordGenAISampler):
            return True
        wrapped = RecordGenAISampler(sampler)
        tracer_provider.sampler = wrapped
        for tracer in list((getattr(tracer_provider, "_tracers", None) or {}).values()):
            if getattr(tracer, "sampler", None) is sampler:
                tracer.sampler = wrapped
        return True
    except Exception:
        _log.warning("llmmeter: could not wrap the trace sampler; calls the sampler drops are not counted",
                     exc_info=True)
        return False
