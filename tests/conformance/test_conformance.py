"""The checks every provider case (tests/conformance/cases/*.py) must pass; see framework.py for the contract."""

from __future__ import annotations

import gc
import logging
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import llmmeter
import pytest
import wrapt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from llmmeter import names
from llmmeter.call import REASON_STREAM_ABANDONED, REASON_STREAM_CLOSED_EARLY
from opentelemetry.trace import SpanKind, StatusCode

from conformance.framework import ProviderCase, discover, hand_cost, price_entry

CASES = discover()
STREAM_CASES = [c for c in CASES if c.stream is not None and c.stream_server is not None]
HAND_CASES = [c for c in CASES if c.priced and c.hand_check]
LLMMETER_DIR = os.path.dirname(os.path.abspath(llmmeter.__file__))
all_cases = pytest.mark.parametrize("case", CASES, ids=str)


@pytest.fixture
def instrumented(case: ProviderCase, telemetry: Any) -> Iterator[Any]:
    instrumentor = case.instrumentor()
    instrumentor.instrument(tracer_provider=telemetry.tracer_provider)
    try:
        yield telemetry
    finally:
        instrumentor.uninstrument()


@contextmanager
def serving(factory: Any) -> Iterator[Any]:
    server = factory()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def llmmeter_spans(telemetry: Any) -> list[Any]:
    """GenAI spans made by llmmeter's instrumentors (an SDK's own tracing, if any, is not under test)."""
    return [s for s in telemetry.llm_spans() if s.instrumentation_scope.name.startswith("llmmeter")]


def only_span(telemetry: Any) -> Any:
    spans = llmmeter_spans(telemetry)
    assert len(spans) == 1, [s.name for s in spans]
    return spans[0]


def assert_usage(attrs: dict[str, Any], usage: Any) -> None:
    assert attrs[names.USAGE_INPUT_TOKENS] == usage.input
    assert attrs[names.USAGE_OUTPUT_TOKENS] == usage.output
    # Zero counts are left off the span; absent means 0.
    assert attrs.get(names.USAGE_CACHE_READ_TOKENS, 0) == usage.cache_read
    assert attrs.get(names.USAGE_CACHE_CREATION_TOKENS, 0) == usage.cache_creation
    assert attrs.get(names.LLMMETER_CACHE_WRITE_1H_TOKENS, 0) == usage.cache_creation_1h
    assert attrs.get(names.USAGE_REASONING_TOKENS, 0) == usage.reasoning


def assert_cost(case: ProviderCase, attrs: dict[str, Any], usage: Any) -> None:
    """The span's cost against the rates of the shipped price file, multiplied out by hand (hand_cost)."""
    assert attrs[names.LLMMETER_PRICED] is case.priced
    if not case.priced:
        assert names.COST_USD not in attrs
        return
    entry = price_entry(attrs[names.LLMMETER_PRICE_MODEL])
    if entry is None:  # only a zero-priced provider's calls have no file entry: free per token, a known price
        assert case.provider == names.PROVIDER_OLLAMA, attrs[names.LLMMETER_PRICE_MODEL]
        assert attrs[names.COST_USD] == 0.0
        return
    assert attrs[names.COST_USD] == pytest.approx(hand_cost(entry, usage), rel=1e-9)


def assert_not_raised_by_llmmeter(exc: BaseException) -> None:
    """The innermost frame of the traceback is where the exception was raised: never llmmeter's code."""
    tb = exc.__traceback__
    assert tb is not None
    while tb.tb_next is not None:
        tb = tb.tb_next
    assert not tb.tb_frame.f_code.co_filename.startswith(LLMMETER_DIR), tb.tb_frame.f_code.co_filename


def test_every_provider_has_a_hand_checked_case() -> None:
    assert CASES, "no conformance cases discovered"
    assert {c.provider for c in CASES} == {c.provider for c in HAND_CASES}


@all_cases
def test_span_shape_tokens_and_cost(case: ProviderCase, instrumented: Any) -> None:
    with serving(case.server) as server:
        result = case.call(server.base_url)
    assert result is not None
    span = only_span(instrumented)
    attrs = dict(span.attributes or {})
    assert span.name == f"{case.operation} {case.request_model}"
    assert span.kind is SpanKind.CLIENT
    assert span.status.status_code is not StatusCode.ERROR
    assert attrs[names.PROVIDER] == case.provider
    assert attrs[names.OPERATION] == case.operation
    assert attrs[names.REQUEST_MODEL] == case.request_model
    if case.response_model is not None:
        assert attrs[names.RESPONSE_MODEL] == case.response_model
    assert names.ERROR_TYPE not in attrs
    assert_usage(attrs, case.usage)
    assert attrs[names.LLMMETER_ESTIMATED] is False
    assert_cost(case, attrs, case.usage)
    for check in case.extra_checks:
        check(span)


@pytest.mark.parametrize("case", HAND_CASES, ids=str)
def test_cost_matches_hand_computation(case: ProviderCase, instrumented: Any) -> None:
    with serving(case.server) as server:
        case.call(server.base_url)
    attrs = dict(only_span(instrumented).attributes or {})
    entry = price_entry(attrs[names.LLMMETER_PRICE_MODEL])
    assert entry is not None
    assert attrs[names.COST_USD] == pytest.approx(hand_cost(entry, case.usage), rel=1e-9)
    assert attrs[names.COST_USD] > 0


@pytest.mark.parametrize("case", STREAM_CASES, ids=str)
def test_stream_fully_consumed(case: ProviderCase, instrumented: Any, caplog: pytest.LogCaptureFixture) -> None:
    assert case.stream is not None and case.stream_server is not None
    with caplog.at_level(logging.WARNING), serving(case.stream_server) as server:
        events = case.stream(server.base_url, None)
    gc.collect()
    assert events > 0
    span = only_span(instrumented)
    attrs = dict(span.attributes or {})
    model = case.stream_request_model or case.request_model
    assert span.name == f"{case.operation} {model}"
    assert attrs[names.REQUEST_MODEL] == model
    assert attrs[names.REQUEST_STREAM] is True
    if case.stream_usage is not None:
        assert_usage(attrs, case.stream_usage)
        assert attrs[names.LLMMETER_ESTIMATED] is False
        assert_cost(case, attrs, case.stream_usage)
    else:
        assert attrs[names.LLMMETER_ESTIMATED] is True
    assert not [r for r in caplog.records if "ended span" in r.getMessage()]  # ended exactly once


@pytest.mark.parametrize("case", STREAM_CASES, ids=str)
def test_stream_partly_consumed(case: ProviderCase, instrumented: Any, caplog: pytest.LogCaptureFixture) -> None:
    assert case.stream is not None and case.stream_server is not None
    with caplog.at_level(logging.WARNING), serving(case.stream_server) as server:
        events = case.stream(server.base_url, 1)
        gc.collect()
    assert events == 1
    span = only_span(instrumented)
    attrs = dict(span.attributes or {})
    assert attrs[names.LLMMETER_ESTIMATED] is True
    assert attrs[names.LLMMETER_ESTIMATED_REASON] in (REASON_STREAM_CLOSED_EARLY, REASON_STREAM_ABANDONED)
    assert isinstance(attrs[names.USAGE_OUTPUT_TOKENS], int)
    assert isinstance(attrs[names.USAGE_INPUT_TOKENS], int) and attrs[names.USAGE_INPUT_TOKENS] > 0
    assert span.status.status_code is not StatusCode.ERROR
    assert not [r for r in caplog.records if "ended span" in r.getMessage()]


@all_cases
def test_sdk_error_reaches_the_app_unchanged(case: ProviderCase, instrumented: Any) -> None:
    from replay_server import ScriptedServer

    marker = f"conformance-{uuid.uuid4().hex}"
    reply = case.error_reply(marker)
    assert reply.status >= 400
    with serving(lambda: ScriptedServer(lambda request: reply)) as server:
        with pytest.raises(case.error_type) as caught:
            case.call(server.base_url)
    exc = caught.value
    assert type(exc) is case.error_type  # not a subclass or a wrapper made by llmmeter
    assert marker in str(exc) or marker in repr(getattr(exc, "body", ""))  # built from the server's answer
    assert_not_raised_by_llmmeter(exc)  # the SDK's own object, re-raised as is
    span = only_span(instrumented)
    attrs = dict(span.attributes or {})
    cls = type(exc)
    assert attrs[names.ERROR_TYPE] == f"{cls.__module__}.{cls.__qualname__}"
    assert span.status.status_code is StatusCode.ERROR
    assert marker not in (span.status.description or "")  # SDK messages may echo secrets: class name only


_JUNK = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**18), max_value=10**18)
    | st.floats(allow_nan=True, allow_infinity=False)
    | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


def _usage_values(keys: tuple[str, ...]) -> st.SearchStrategy[Any]:
    targeted = st.dictionaries(st.sampled_from(keys), _JUNK, max_size=len(keys)) if keys else st.nothing()
    return _JUNK | targeted


@all_cases
def test_malformed_usage_never_raises_from_llmmeter(case: ProviderCase, instrumented: Any) -> None:
    from replay_server import Reply, ScriptedServer

    holder: dict[str, Reply] = {}
    keys = case.usage_keys
    with serving(lambda: ScriptedServer(lambda request: holder["reply"])) as server:

        @settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(usage=_usage_values(keys))
        def check(usage: Any) -> None:
            instrumented.exporter.clear()
            holder["reply"] = case.malformed_reply(usage)
            try:
                case.call(server.base_url)
            except Exception as exc:  # the SDK may reject junk; llmmeter must not be the one raising
                assert_not_raised_by_llmmeter(exc)
            span = only_span(instrumented)
            for key, value in (span.attributes or {}).items():
                if key.startswith("gen_ai.usage.") and key.endswith("_tokens"):
                    assert isinstance(value, int) and not isinstance(value, bool) and value >= 0, (key, value)

        check()


@all_cases
def test_uninstrument_restores_the_sdk(case: ProviderCase, telemetry: Any) -> None:
    pairs = case.patched()
    assert pairs
    originals = [owner.__dict__[attr] for owner, attr in pairs]
    leaked = [
        f"{owner.__name__}.{attr}"
        for (owner, attr), orig in zip(pairs, originals, strict=True)
        if isinstance(orig, wrapt.ObjectProxy)
    ]
    assert not leaked, f"left wrapped by an earlier test (instrumented without uninstrument?): {leaked}"
    instrumentor = case.instrumentor()
    instrumentor.instrument(tracer_provider=telemetry.tracer_provider)
    try:
        assert all(owner.__dict__[attr] is not orig for (owner, attr), orig in zip(pairs, originals, strict=True))
    finally:
        instrumentor.uninstrument()
    assert all(owner.__dict__[attr] is orig for (owner, attr), orig in zip(pairs, originals, strict=True))
    with serving(case.server) as server:
        case.call(server.base_url)
    assert llmmeter_spans(telemetry) == []
