"""``llmmeter reconcile --ledger``: the bill against the cost ledger llmmeter itself wrote.

The metered side is real: calls through the real ``openai`` SDK, instrumented by llmmeter, priced from the shipped
table and written to the ledger by the span processor's ledger sink. The bill is served from 127.0.0.1 in the
documented Costs/Usage API shapes (:mod:`reconcile_fixtures`). Expected figures are multiplied out by hand from
gpt-4o-mini's documented rates (https://platform.openai.com/docs/pricing: $0.15 / 1M input, $0.075 / 1M cached
input, $0.60 / 1M output).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import openai
import pytest
from llmmeter import config
from llmmeter.instrumentors.openai import OpenAIInstrumentor
from llmmeter.processor import LLMMeterSpanProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from reconcile_fixtures import OPENAI_KEY, AdminAPI
from replay_server import Reply, scripted
from test_reconcile import assert_rows, run_cli

# Call A: 1000 prompt tokens of which 200 cached, 100 output; call B: 50 prompt, 10 output.
CALL_A = 800 * 0.15e-6 + 200 * 0.075e-6 + 100 * 0.60e-6  # 0.000195
CALL_B = 50 * 0.15e-6 + 10 * 0.60e-6  # 0.0000135
METERED = CALL_A + CALL_B  # 0.0002085
INPUT_PART, OUTPUT_PART = 850 * 0.15e-6 + 200 * 0.075e-6, 110 * 0.60e-6  # 0.0001425 + 0.000066 = METERED
BILLED = 0.8 * METERED  # a 20 % negotiated discount: 0.0001668


def completion(prompt: int, output: int, cached: int = 0) -> dict:
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1764300000, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": output, "total_tokens": prompt + output,
                      "prompt_tokens_details": {"cached_tokens": cached}}}


def utc_today() -> dt.date:
    return dt.datetime.now(dt.timezone.utc).date()


def write_ledger(directory: Path) -> dt.date:
    """Two gpt-4o-mini calls through the instrumented SDK into the ledger at ``directory``; returns their UTC day
    (the calls are made again in the rare case midnight passes while they run)."""
    for _attempt in range(2):
        config.set_settings(config.Settings(ledger=str(directory)))
        tracer_provider = TracerProvider(resource=Resource.create({"service.name": "reconcile-test"}))
        meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
        processor = LLMMeterSpanProcessor(meter_provider=meter_provider)
        tracer_provider.add_span_processor(processor)
        instrumentor = OpenAIInstrumentor()
        instrumentor.instrument(tracer_provider=tracer_provider)
        try:
            day = utc_today()
            replies = iter([completion(1000, 100, cached=200), completion(50, 10)])
            with scripted(lambda request, replies=replies: Reply.json(next(replies))) as server:
                client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="test-key", max_retries=0)
                for content in ("a", "b"):
                    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": content}])
            processor.shutdown()  # writes the last batch
        finally:
            instrumentor.uninstrument()
            tracer_provider.shutdown()
            meter_provider.shutdown()
            config.set_settings(None)
        if utc_today() == day:
            return day
        for path in directory.glob("*"):
            path.unlink()
    raise AssertionError("midnight passed twice while two calls ran")


def bill(day: dt.date) -> AdminAPI:
    """The provider's reports for ``day``: 80 % of list price, the same tokens llmmeter counted."""
    return AdminAPI("openai", costs=[(day, "gpt-4o-mini-2024-07-18, input", "proj_app", 0.8 * INPUT_PART),
                                     (day, "gpt-4o-mini-2024-07-18, output", "proj_app", 0.8 * OUTPUT_PART)],
                    usage=[(day, "gpt-4o-mini-2024-07-18", "proj_app", "key_app", 1050, 110, 200, 2)])


def test_the_ledger_is_compared_call_for_call(tmp_path: Path) -> None:
    directory = tmp_path / "ledger"
    day = write_ledger(directory)
    # --min-usd 0: these calls cost a fraction of a cent, under the default noise floor.
    args = ["--since", "2d", "--until", (day + dt.timedelta(days=1)).isoformat(), "--ledger", str(directory),
            "--min-usd", "0"]
    with scripted(bill(day)) as server:
        as_json = run_cli("openai", *args, "--base-url", server.base_url, "--format", "json",
                          env={"OPENAI_ADMIN_KEY": OPENAI_KEY})
        table = run_cli("openai", *args, "--base-url", server.base_url, env={"OPENAI_ADMIN_KEY": OPENAI_KEY})
    assert as_json.returncode == 1, as_json.stderr  # metered 25 % above the bill
    assert_rows(as_json.stdout, "openai", [(day, "gpt-4o-mini", BILLED, METERED, (METERED - BILLED) / BILLED)])
    assert json.loads(as_json.stdout)[0]["drift_ratio"] == pytest.approx(0.25)
    # Tokens agree to the token (1050 + 110 on both sides): the gap is the price, a 0.8 discount.
    assert 'LLMMETER_DISCOUNTS="openai/gpt-4o-mini=0.8"' in table.stdout
    assert f"metered: ledger {directory}" in table.stdout


def test_a_missing_ledger_is_named(tmp_path: Path) -> None:
    with scripted(AdminAPI("openai")) as server:
        result = run_cli("openai", "--since", "1d", "--ledger", str(tmp_path / "nowhere"), "--base-url",
                         server.base_url, env={"OPENAI_ADMIN_KEY": OPENAI_KEY})
    assert result.returncode == 2 and "--ledger: no ledger directory" in result.stderr
