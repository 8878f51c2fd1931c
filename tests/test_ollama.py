"""Native ``ollama`` client: the conformance suite's checks on the Ollama cases (see cases/ollama.py for why they
run from here), plus Ollama specifics: an explicit 0 USD price, and a prompt served from Ollama's cache.

Recordings: tests/cassettes/ollama/ (NOTICE.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import ollama
import pytest
from conformance import test_conformance as suite
from conformance.cases.ollama import MESSAGES, MODEL, ZERO_PRICED_CASES
from llmmeter import estimate, names
from llmmeter.call import REASON_NO_USAGE
from llmmeter.instrumentors.ollama import OllamaInstrumentor
from replay_server import replay

cases = pytest.mark.parametrize("case", ZERO_PRICED_CASES, ids=str)


@pytest.fixture
def instrumented(case: Any, telemetry: Any) -> Iterator[Any]:
    instrumentor = case.instrumentor()
    instrumentor.instrument(tracer_provider=telemetry.tracer_provider)
    try:
        yield telemetry
    finally:
        instrumentor.uninstrument()


@cases
def test_span_shape_tokens_and_zero_cost(case: Any, instrumented: Any) -> None:
    suite.test_span_shape_tokens_and_cost(case, instrumented)
    attrs = dict(suite.only_span(instrumented).attributes or {})
    assert attrs[names.LLMMETER_PRICED] is True
    assert attrs[names.COST_USD] == 0.0  # explicitly free, never "unknown"
    assert attrs[names.LLMMETER_PRICE_MODEL] == "ollama/*"


@cases
def test_stream_fully_consumed(case: Any, instrumented: Any, caplog: pytest.LogCaptureFixture) -> None:
    suite.test_stream_fully_consumed(case, instrumented, caplog)


@cases
def test_stream_partly_consumed(case: Any, instrumented: Any, caplog: pytest.LogCaptureFixture) -> None:
    suite.test_stream_partly_consumed(case, instrumented, caplog)


@cases
def test_sdk_error_reaches_the_app_unchanged(case: Any, instrumented: Any) -> None:
    suite.test_sdk_error_reaches_the_app_unchanged(case, instrumented)


@cases
def test_malformed_usage_never_raises_from_llmmeter(case: Any, instrumented: Any) -> None:
    suite.test_malformed_usage_never_raises_from_llmmeter(case, instrumented)


@cases
def test_uninstrument_restores_the_sdk(case: Any, telemetry: Any) -> None:
    suite.test_uninstrument_restores_the_sdk(case, telemetry)


@pytest.fixture
def meter(telemetry: Any) -> Iterator[Any]:
    instrumentor = OllamaInstrumentor()
    instrumentor.instrument(tracer_provider=telemetry.tracer_provider)
    try:
        yield telemetry
    finally:
        instrumentor.uninstrument()


def test_prompt_from_ollamas_cache_is_estimated_not_zero(meter: Any) -> None:
    """The recording has no ``prompt_eval_count`` (the prompt was cached): input is estimated from the prompt."""
    estimate.warm_up(wait=True)

    async def run() -> Any:
        return await ollama.AsyncClient(host=server.base_url).chat(model=MODEL, messages=MESSAGES)

    with replay("ollama/test_ollama_async_chat_legacy.yaml") as server:
        response = asyncio.run(run())
    assert response.prompt_eval_count is None and response.eval_count == 79
    attrs = dict(suite.only_span(meter).attributes or {})
    assert attrs[names.USAGE_OUTPUT_TOKENS] == 79
    assert attrs[names.USAGE_INPUT_TOKENS] == estimate.count_tokens(MESSAGES[0]["content"], MODEL)[0]
    assert attrs[names.LLMMETER_ESTIMATED] is True
    assert attrs[names.LLMMETER_ESTIMATED_REASON] == REASON_NO_USAGE
    assert "prompt_eval_count_missing" in attrs[names.LLMMETER_UNMEASURED]
    assert meter.metric_total(names.METRIC_TOKENS, **{names.LABEL_TOKEN_TYPE: "output"}) == 79
