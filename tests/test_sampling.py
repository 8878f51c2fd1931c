"""Exact metrics whatever the trace sampler decides (llmmeter.sampling), while export still follows it.

Real openai SDK calls against a local server; the expected counts are the calls the test made and the
tokens the server reported (10 input + 5 output per call); the expected *exported* spans are computed
from the ratio sampler's documented rule (sampled when the trace id's low 64 bits are below
rate * 2**64, OTel trace SDK spec "TraceIdRatioBased"), not from the code under test.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import llmmeter.agents as agents
import pytest
from conftest import Telemetry
from guard_support import CountingServer, chat, guarded
from llmmeter import names
from llmmeter.errors import AgentLoopDetected
from llmmeter.sampling import RecordGenAISampler, record_genai_spans
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, Sampler, TraceIdRatioBased
from opentelemetry.trace import SpanKind
from pipeline_support import sampled_pipeline

CALLS = 100
RATE = 0.1


class AllEnded(SpanProcessor):
    """Sees every recorded span (sampled or not), to know the trace ids the sampler decided on."""

    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def on_end(self, span: ReadableSpan) -> None:
        self.spans.append(span)


def ratio_samples(trace_id: int, rate: float = RATE) -> bool:
    """The spec's TraceIdRatioBased rule, written out independently of the SDK's implementation."""
    return (trace_id & 0xFFFFFFFFFFFFFFFF) < round(rate * 2**64)


@pytest.fixture
def make_pipeline() -> Iterator[Any]:
    made: list[Telemetry] = []

    def make(sampler: Sampler) -> tuple[Telemetry, AllEnded]:
        seen = AllEnded()
        tel = Telemetry(**sampled_pipeline(sampler, seen))
        made.append(tel)
        return tel, seen

    yield make
    for tel in made:
        tel.tracer_provider.shutdown()
        tel.meter_provider.shutdown()


def llm_trace_ids(spans: list[ReadableSpan]) -> set[int]:
    return {
        s.context.trace_id for s in spans if (s.attributes or {}).get(names.OPERATION) in names.INFERENCE_OPERATIONS
    }


def assert_counts_every_call(tel: Telemetry) -> None:
    assert tel.metric_total(names.METRIC_REQUESTS) == CALLS
    assert tel.metric_total(names.METRIC_TOKENS, **{names.LABEL_TOKEN_TYPE: "input"}) == CALLS * 10
    assert tel.metric_total(names.METRIC_TOKENS, **{names.LABEL_TOKEN_TYPE: "output"}) == CALLS * 5
    assert tel.processor.tally.rows()[("gpt-4o-mini", "-")].calls == CALLS


@pytest.mark.parametrize("sampler", [ALWAYS_OFF, TraceIdRatioBased(RATE)], ids=["always_off", "ratio_0.1"])
def test_root_samplers_count_every_call_and_export_only_sampled_spans(make_pipeline: Any, sampler: Sampler) -> None:
    tel, seen = make_pipeline(sampler)
    with guarded(tel), CountingServer(10, 5) as server:
        client = server.client()
        for _ in range(CALLS):
            chat(client)
    assert server.requests == CALLS
    assert_counts_every_call(tel)
    exported = {s.context.span_id for s in tel.spans()}
    for point in tel.metric_points(names.METRIC_TOKEN_USAGE):  # an exemplar never names an unexported span
        assert all(e.span_id in exported for e in point.exemplars if e.span_id)

    all_ids = llm_trace_ids(seen.spans)
    assert len(all_ids) == CALLS  # every call's span was recorded (one trace each: the calls are roots)
    expected_exported = {t for t in all_ids if sampler is not ALWAYS_OFF and ratio_samples(t)}
    assert llm_trace_ids(tel.spans()) == expected_exported
    assert all(s.context.trace_flags.sampled for s in tel.spans())
    if sampler is not ALWAYS_OFF:
        assert 0 < len(expected_exported) < CALLS // 2  # the ratio really dropped most of them


def test_parent_based_sampler_counts_every_call_and_exports_what_the_parent_decided(make_pipeline: Any) -> None:
    tel, seen = make_pipeline(ParentBased(TraceIdRatioBased(RATE)))
    app_tracer = tel.tracer_provider.get_tracer("app")
    roots: list[int] = []
    with guarded(tel), CountingServer(10, 5) as server:
        client = server.client()
        for _ in range(CALLS):
            with app_tracer.start_as_current_span("handle request", kind=SpanKind.SERVER) as request:
                roots.append(request.get_span_context().trace_id)  # a dropped request has a trace id too
                chat(client)
    assert_counts_every_call(tel)

    sampled_roots = {t for t in roots if ratio_samples(t)}
    assert llm_trace_ids(seen.spans) == set(roots)  # every call recorded, each under its request
    # Exported: exactly the calls whose request was sampled, and only the sampled requests.
    assert llm_trace_ids(tel.spans()) == sampled_roots
    assert {s.context.trace_id for s in tel.spans() if s.name == "handle request"} == sampled_roots
    assert 0 < len(sampled_roots) < CALLS // 2


def test_loop_guard_sees_the_tokens_of_unsampled_calls(make_pipeline: Any) -> None:
    """max_tokens=40 with 15-token calls: the third call crosses it, the fourth is refused before sending."""
    tel, _seen = make_pipeline(ALWAYS_OFF)
    with guarded(tel), CountingServer(10, 5) as server:
        client = server.client()
        with agents.agent("sampled-out", max_tokens=40) as run:
            for _ in range(3):
                chat(client)
            with pytest.raises(AgentLoopDetected):
                chat(client)
    assert server.requests == 3
    assert (run.input_tokens, run.output_tokens, run.llm_calls) == (30, 15, 3)
    assert run.stopped_by == "max_tokens"
    assert tel.spans() == []  # ALWAYS_OFF: nothing exported, the agent span included


def test_wrapping_is_idempotent_and_reaches_tracers_made_before() -> None:
    provider = TracerProvider(sampler=ALWAYS_OFF)
    early = provider.get_tracer("made.before.llmmeter")
    assert record_genai_spans(provider) and record_genai_spans(provider)
    assert isinstance(provider.sampler, RecordGenAISampler)
    assert provider.sampler.root is ALWAYS_OFF  # wrapped once, not twice
    span = early.start_span("chat m", attributes={names.OPERATION: names.OP_CHAT, names.REQUEST_MODEL: "m"})
    assert span.is_recording() and not span.get_span_context().trace_flags.sampled
    assert span.attributes[names.REQUEST_MODEL] == "m"  # the start attributes survive the DROP -> RECORD_ONLY
    span.end()
    other = early.start_span("GET /", attributes={"http.request.method": "GET"})
    assert not other.is_recording()  # any other span: the sampler's decision as it was
    provider.shutdown()


def test_configure_wraps_the_apps_sampler() -> None:
    from llmmeter import _providers, config
    from llmmeter.config import Settings
    from llmmeter.pipeline import configure

    provider = TracerProvider(sampler=ALWAYS_OFF)
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    try:
        configure(tracer_provider=provider, meter_provider=meter_provider, instrument=False,
                  settings=Settings(summary="off"))
        assert isinstance(provider.sampler, RecordGenAISampler) and provider.sampler.root is ALWAYS_OFF
    finally:
        _providers.use()
        config.set_settings(None)
        provider.shutdown()
        meter_provider.shutdown()
