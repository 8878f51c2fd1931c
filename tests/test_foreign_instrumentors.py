"""Other projects' real OpenAI instrumentors, alone and beside llmmeter's: each call counted and priced once.

Users run llmmeter next to what they already have: OpenInference (Arize Phoenix,
``openinference-instrumentation-openai``), OpenLLMetry (``opentelemetry-instrumentation-openai``) or the
official ``opentelemetry-instrumentation-openai-v2``. Each writes its spans in its own convention; the
processor reads them all through ``llmmeter.span_reader``. Here the real openai SDK talks HTTP to a scripted
OpenAI-wire server on 127.0.0.1, with each foreign instrumentor alone (its span must be counted and priced
from its own attributes) and beside llmmeter's in both wrapping orders (one request: counted once).

The expected cost is computed by hand from OpenAI's published gpt-4o-mini rates (USD per 1M tokens: input
0.15, cached input 0.075, output 0.60).
"""

from __future__ import annotations

import contextlib
import inspect
import sys
from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest
from conftest import Telemetry
from llmmeter import names
from llmmeter.instrumentors.openai import OpenAIInstrumentor as LLMMeterInstrumentor
from replay_server import RecordedRequest, Reply, ScriptedServer, scripted

MODEL = "gpt-4o-mini"
RESPONSE_MODEL = "gpt-4o-mini-2024-07-18"
INPUT_TOKENS, CACHED_TOKENS, OUTPUT_TOKENS = 1234, 1024, 56
USAGE = {
    "prompt_tokens": INPUT_TOKENS,
    "completion_tokens": OUTPUT_TOKENS,
    "total_tokens": INPUT_TOKENS + OUTPUT_TOKENS,
    "prompt_tokens_details": {"cached_tokens": CACHED_TOKENS},
    "completion_tokens_details": {"reasoning_tokens": 0},
}
EXPECTED_USD = ((INPUT_TOKENS - CACHED_TOKENS) * 0.15 + CACHED_TOKENS * 0.075 + OUTPUT_TOKENS * 0.60) / 1e6
# openai-v2 2.4b0 writes no cached-token attribute: alone, its calls can only be priced as if no input was
# cached (an upper bound; README "Beside other instrumentors" says so).
EXPECTED_USD_NO_CACHE_INFO = (INPUT_TOKENS * 0.15 + OUTPUT_TOKENS * 0.60) / 1e6
REPORTS_CACHED_TOKENS = {"openinference": True, "openllmetry": True, "openai_v2": False}


def _openinference() -> Any:
    from openinference.instrumentation.openai import OpenAIInstrumentor

    return OpenAIInstrumentor()


def _openllmetry() -> Any:
    from opentelemetry.instrumentation.openai import OpenAIInstrumentor

    return OpenAIInstrumentor()


def _openai_v2() -> Any:
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

    return OpenAIInstrumentor()


FOREIGN: dict[str, Callable[[], Any]] = {
    "openinference": _openinference,
    "openllmetry": _openllmetry,
    "openai_v2": _openai_v2,
}


def _reply(request: RecordedRequest) -> Reply:
    return Reply.json(
        {
            "id": "chatcmpl-foreign",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": RESPONSE_MODEL,
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "counted once"}, "finish_reason": "stop"}
            ],
            "usage": USAGE,
        }
    )


def _openai_classes() -> list[type]:
    """Every class of the openai package's modules (resources, clients, streams) that an instrumentor may wrap."""
    found: list[type] = []
    for name, module in list(sys.modules.items()):
        if module is None or not (name == "openai" or name.startswith("openai.")):
            continue
        for value in list(vars(module).values()):
            if inspect.isclass(value) and value.__module__ == name:
                found.append(value)
    return found


@pytest.fixture(autouse=True)
def _restore_openai() -> Iterator[None]:
    """Put back every openai method as it was before the test: OpenLLMetry 0.62's uninstrument leaves
    ``chat.completions.Completions.parse`` (and its async twin) wrapped around the test's tracer, and a second
    instrument() then misbehaves. The leak is theirs; this keeps it from reaching other tests."""
    saved = [(cls, dict(vars(cls))) for cls in _openai_classes()]
    yield
    for cls, attrs in saved:
        for key in [k for k in vars(cls) if k not in attrs]:
            with contextlib.suppress(AttributeError, TypeError):
                delattr(cls, key)
        for key, value in attrs.items():
            if vars(cls).get(key) is not value:
                with contextlib.suppress(AttributeError, TypeError):
                    setattr(cls, key, value)


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with scripted(_reply) as running:
        yield running


def _instrumented(telemetry: Telemetry, instrumentors: list[Any]) -> None:
    providers = {"tracer_provider": telemetry.tracer_provider, "meter_provider": telemetry.meter_provider}
    for instrumentor in instrumentors:
        instrumentor.instrument(**providers)


def _uninstrument(instrumentors: list[Any]) -> None:
    for instrumentor in reversed(instrumentors):
        instrumentor.uninstrument()


def _call(server: ScriptedServer, times: int = 1) -> None:
    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="test-key", max_retries=0)
    for _ in range(times):
        response = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
        assert response.usage is not None and response.usage.prompt_tokens == INPUT_TOKENS  # app's view unchanged


def _assert_counted(telemetry: Telemetry, calls: int, cached_known: bool = True) -> None:
    assert telemetry.metric_total(names.METRIC_REQUESTS) == calls
    assert telemetry.metric_total(names.METRIC_REQUESTS, **{names.LABEL_PRICED: "true"}) == calls
    token = names.LABEL_TOKEN_TYPE
    assert telemetry.metric_total(names.METRIC_TOKENS, **{token: "input"}) == calls * INPUT_TOKENS
    assert telemetry.metric_total(names.METRIC_TOKENS, **{token: "output"}) == calls * OUTPUT_TOKENS
    cached, usd = (CACHED_TOKENS, EXPECTED_USD) if cached_known else (0, EXPECTED_USD_NO_CACHE_INFO)
    assert telemetry.metric_total(names.METRIC_TOKENS, **{token: "cache_read"}) == calls * cached
    assert telemetry.metric_total(names.METRIC_COST) == pytest.approx(calls * usd, rel=1e-9)


@pytest.mark.parametrize("foreign", sorted(FOREIGN))
def test_foreign_instrumentor_alone_is_counted_and_priced(
    telemetry: Telemetry, server: ScriptedServer, foreign: str
) -> None:
    instrumentors = [FOREIGN[foreign]()]
    _instrumented(telemetry, instrumentors)
    try:
        _call(server, times=2)
    finally:
        _uninstrument(instrumentors)
    assert len(server.requests) == 2
    assert len(telemetry.spans()) >= 2  # the foreign instrumentor really made spans
    _assert_counted(telemetry, calls=2, cached_known=REPORTS_CACHED_TOKENS[foreign])


@pytest.mark.parametrize("order", ["foreign_first", "llmmeter_first"])
@pytest.mark.parametrize("foreign", sorted(FOREIGN))
def test_foreign_instrumentor_beside_llmmeter_counts_each_call_once(
    telemetry: Telemetry, server: ScriptedServer, foreign: str, order: str
) -> None:
    pair = [FOREIGN[foreign](), LLMMeterInstrumentor()]
    if order == "llmmeter_first":
        pair.reverse()
    _instrumented(telemetry, pair)
    try:
        _call(server, times=3)
    finally:
        _uninstrument(pair)
    assert len(server.requests) == 3
    scopes = {s.instrumentation_scope.name for s in telemetry.spans() if s.instrumentation_scope is not None}
    assert "llmmeter.instrumentors.openai" in scopes and len(scopes) >= 2  # both made spans
    _assert_counted(telemetry, calls=3)
