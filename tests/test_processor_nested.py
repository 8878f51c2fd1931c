"""Exactly-once counting when two instrumentors wrap the same SDK call.

With opentelemetry-instrumentation-openai-v2 and llmmeter both installed, one ``create()`` call yields
two nested CLIENT inference spans. Both stay in the trace; the metrics count the call once, using
llmmeter's span when there is one (it carries cost and estimates), else the innermost one.
"""

from __future__ import annotations

from typing import Any

import llmmeter.processor as processor_module
import pytest
from conftest import Telemetry
from llmmeter import names
from opentelemetry import trace
from opentelemetry.trace import SpanKind

LLMMETER = "llmmeter.instrumentors.openai"
OFFICIAL = "opentelemetry.instrumentation.openai_v2"
OPENLLMETRY = "opentelemetry.instrumentation.openai.v1"

START = {names.OPERATION: names.OP_CHAT, names.PROVIDER: "openai", names.REQUEST_MODEL: "gpt-4o"}


def usage(input_tokens: int, output_tokens: int, cost: float | None = None) -> dict[str, Any]:
    attrs: dict[str, Any] = {names.USAGE_INPUT_TOKENS: input_tokens, names.USAGE_OUTPUT_TOKENS: output_tokens}
    if cost is not None:
        attrs.update({names.LLMMETER_PRICED: True, names.COST_USD: cost})
    return attrs


def start(tel: Telemetry, scope: str) -> Any:
    return tel.tracer_provider.get_tracer(scope).start_span("chat gpt-4o", kind=SpanKind.CLIENT, attributes=START)


def nested_call(
    tel: Telemetry, outer_scope: str, inner_scope: str, outer_usage: dict, inner_usage: dict, outer_ends_first: bool
) -> None:
    """One SDK call seen by two instrumentors: the inner span is started while the outer is current."""
    outer = start(tel, outer_scope)
    with trace.use_span(outer, end_on_exit=False):
        inner = start(tel, inner_scope)
    inner.set_attributes(inner_usage)
    outer.set_attributes(outer_usage)
    first, second = (outer, inner) if outer_ends_first else (inner, outer)
    first.end()
    second.end()


def input_total(tel: Telemetry) -> float:
    return tel.metric_total(names.METRIC_TOKENS, **{names.LABEL_TOKEN_TYPE: "input"})


@pytest.mark.parametrize("outer_ends_first", [False, True])
def test_llmmeter_outer_official_inner_counts_llmmeter_once(telemetry: Telemetry, outer_ends_first: bool) -> None:
    nested_call(telemetry, LLMMETER, OFFICIAL, usage(100, 10, 0.002), usage(99, 9), outer_ends_first)
    assert input_total(telemetry) == 100
    assert telemetry.metric_total(names.METRIC_REQUESTS) == 1
    assert telemetry.metric_total(names.METRIC_COST) == pytest.approx(0.002)
    assert len(telemetry.llm_spans()) == 2  # both spans still exported


@pytest.mark.parametrize("outer_ends_first", [False, True])
def test_official_outer_llmmeter_inner_counts_llmmeter_once(telemetry: Telemetry, outer_ends_first: bool) -> None:
    nested_call(telemetry, OFFICIAL, LLMMETER, usage(99, 9), usage(100, 10, 0.002), outer_ends_first)
    assert input_total(telemetry) == 100
    assert telemetry.metric_total(names.METRIC_REQUESTS) == 1
    assert sum(r.calls for r in telemetry.processor.tally.rows().values()) == 1


def test_two_foreign_instrumentors_count_the_inner_span(telemetry: Telemetry) -> None:
    nested_call(telemetry, OPENLLMETRY, OFFICIAL, usage(7, 1), usage(5, 2), outer_ends_first=False)
    assert input_total(telemetry) == 5
    assert telemetry.metric_total(names.METRIC_REQUESTS) == 1


def test_sequential_calls_are_each_counted(telemetry: Telemetry) -> None:
    for _ in range(3):
        nested_call(telemetry, LLMMETER, OFFICIAL, usage(10, 1, 0.0), usage(10, 1), outer_ends_first=False)
    tracer = telemetry.tracer_provider.get_tracer(LLMMETER)
    with tracer.start_as_current_span("chat gpt-4o", attributes={**START, **usage(10, 1, 0.0)}):
        pass
    assert input_total(telemetry) == 40
    assert telemetry.processor._groups == {} and telemetry.processor._group_of == {}


def test_inference_span_under_an_http_span_is_not_grouped(telemetry: Telemetry) -> None:
    tracer = telemetry.tracer_provider.get_tracer("app")
    with tracer.start_as_current_span("POST /ask", kind=SpanKind.SERVER):
        with tracer.start_as_current_span("chat a", attributes={**START, **usage(3, 1)}):
            pass
        with tracer.start_as_current_span("chat b", attributes={**START, **usage(4, 1)}):
            pass
    assert input_total(telemetry) == 7


def test_leaked_groups_are_evicted_and_counted(telemetry: Telemetry, monkeypatch: pytest.MonkeyPatch) -> None:
    """An outer span that never ends (a stream nobody consumed) must not hold bookkeeping forever."""
    monkeypatch.setattr(processor_module, "MAX_PENDING_GROUPS", 3)
    for _ in range(10):
        outer = start(telemetry, OFFICIAL)  # never ended
        with trace.use_span(outer, end_on_exit=False):
            inner = start(telemetry, LLMMETER)
        inner.set_attributes(usage(10, 1, 0.001))
        inner.end()
    processor = telemetry.processor
    assert len(processor._groups) <= 3
    assert len(processor._group_of) <= 3 * processor_module.MAX_GROUP_MEMBERS
    assert input_total(telemetry) == 70  # 7 evicted groups counted their ended llmmeter span
    processor.shutdown()
    assert input_total(telemetry) == 100  # the rest are counted at shutdown, once
