"""The cost ledger: one row per counted call, written off the app's thread, safe under faults.

Calls go through the real openai SDK over HTTP to a scripted server on 127.0.0.1; the expected rows are the
usage the server sent and the shipped price table's documented rates, multiplied out here by hand.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import llmmeter
import openai
import pytest
from llmmeter import config, names
from llmmeter.instrumentors.openai import OpenAIInstrumentor
from llmmeter.ledger import FILE_NAME, LedgerSink, default_directory, resolve, schema
from llmmeter.ledger.store import open_store
from llmmeter.ledger.writer import LedgerWriter, connect, roll_up
from llmmeter.processor import LLMMeterSpanProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from replay_server import Reply, scripted

REPO = Path(__file__).resolve().parent.parent
# gpt-4o-mini, USD per token (https://platform.openai.com/docs/pricing, as in the shipped table).
MINI_IN, MINI_OUT, MINI_CACHED = 0.15e-6, 0.60e-6, 0.075e-6


def completion(model: str, prompt: int, completion_tokens: int, cached: int = 0) -> dict:
    return {
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1764300000, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion_tokens,
                  "total_tokens": prompt + completion_tokens, "prompt_tokens_details": {"cached_tokens": cached}},
    }


@pytest.fixture
def pipeline(tmp_path):
    """An app's pipeline with the ledger on (LLMMETER_LEDGER=<tmp>), the openai SDK instrumented."""
    config.set_settings(config.Settings(ledger=str(tmp_path / "ledger")))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    tracer_provider = TracerProvider(resource=Resource.create({"service.name": "ledger-test"}))
    processor = LLMMeterSpanProcessor(meter_provider=meter_provider)
    tracer_provider.add_span_processor(processor)
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=tracer_provider)
    yield tracer_provider, processor, reader, tmp_path / "ledger"
    instrumentor.uninstrument()
    tracer_provider.shutdown()
    meter_provider.shutdown()
    config.set_settings(None)


def rows(directory: Path) -> list[dict]:
    conn = sqlite3.connect(directory / FILE_NAME)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute("SELECT * FROM llm_calls ORDER BY start_ns")]
    finally:
        conn.close()


def test_one_row_per_call_with_usage_cost_and_attribution(pipeline):
    _tracer_provider, processor, reader, directory = pipeline
    replies = iter([completion("gpt-4o-mini", 1000, 100, cached=200), completion("gpt-4o-mini", 50, 10),
                    completion("acme-unknown-model", 7, 3)])
    with scripted(lambda request: Reply.json(next(replies))) as server:
        client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="test-key", max_retries=0)
        with llmmeter.attributes(user="u-1", session="sess-1", conversation="conv-1", request_id="req-1",
                                 prompt="greet", prompt_version="v3", experiment="B", feature="chat"):
            first = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "a"}])
        with llmmeter.attributes(user="u-2", session="sess-2"):
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "b"}])
            client.chat.completions.create(model="acme-unknown-model", messages=[{"role": "user", "content": "c"}])
    assert first.choices[0].message.content == "ok"  # the app's result is untouched
    processor.shutdown()  # counts what is queued and closes the writer (writes its last batch)

    got = rows(directory)
    assert len(got) == 3
    a, b, c = got
    assert (a["input_tokens"], a["output_tokens"], a["cache_read_tokens"]) == (1000, 100, 200)
    # 800 uncached input + 200 cached input + 100 output at the documented rates.
    assert a["cost_usd"] == pytest.approx(800 * MINI_IN + 200 * MINI_CACHED + 100 * MINI_OUT)
    assert b["cost_usd"] == pytest.approx(50 * MINI_IN + 10 * MINI_OUT)
    assert (a["priced"], b["priced"], c["priced"], c["cost_usd"]) == (1, 1, 0, None)
    assert (a["user"], a["session"], a["conversation"], a["request_id"]) == ("u-1", "sess-1", "conv-1", "req-1")
    assert (a["prompt"], a["prompt_version"], a["experiment"], a["feature"]) == ("greet", "v3", "B", "chat")
    assert json.loads(a["attrs"]) == {"user": "u-1", "session": "sess-1", "conversation": "conv-1",
                                      "request_id": "req-1", "prompt": "greet", "prompt_version": "v3",
                                      "experiment": "B", "feature": "chat"}
    assert (b["user"], b["session"], b["prompt"]) == ("u-2", "sess-2", None)
    assert {r["service"] for r in got} == {"ledger-test"}
    assert {r["provider"] for r in got} == {"openai"} and {r["status"] for r in got} == {"ok"}
    assert a["price_model"] == "gpt-4o-mini" and a["schema_version"] == schema.SCHEMA_VERSION
    # 200 cached tokens at the input price instead of the cache-read price; nothing cached, nothing saved.
    assert a["cache_saved_usd"] == pytest.approx(200 * (MINI_IN - MINI_CACHED))
    assert (b["cache_saved_usd"], c["cache_saved_usd"]) == (0.0, None)
    assert len({(r["trace_id"], r["span_id"]) for r in got}) == 3
    assert all(len(r["trace_id"]) == 32 and len(r["span_id"]) == 16 for r in got)
    assert all(r["duration_s"] is not None and r["duration_s"] >= 0 for r in got)

    # The high-cardinality keys are in the ledger and on the span, never metric labels (default label keys).
    data = reader.get_metrics_data()
    labels = {key for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
              for p in m.data.data_points for key in (p.attributes or {})}
    assert labels and not labels & {"session", "conversation", "request_id", "prompt", "prompt_version",
                                    "experiment", "user"}


def test_ledger_rows_carry_the_agent_run(pipeline):
    tracer_provider, processor, _reader, directory = pipeline
    from llmmeter import _providers

    _providers.use(tracer_provider)
    try:
        with scripted(lambda request: Reply.json(completion("gpt-4o-mini", 10, 2))) as server:
            client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="test-key", max_retries=0)
            with llmmeter.agent("support") as run:
                client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "a"}])
                client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "b"}])
            run_id = format(run.span.get_span_context().span_id, "016x")
            trace_id = format(run.span.get_span_context().trace_id, "032x")
    finally:
        _providers.use()
    processor.shutdown()
    got = rows(directory)
    assert [(r["agent_name"], r["agent_run_id"], r["trace_id"]) for r in got] == [("support", run_id, trace_id)] * 2
    assert {r["parent_span_id"] for r in got} == {run_id}


def test_full_queue_drops_and_counts(tmp_path):
    writer = LedgerWriter(tmp_path, max_queued=3, flush_interval_s=3600)
    for i in range(5):
        writer.add(_row(i))
    writer.close()
    assert writer.dropped == {"queue_full": 2, "write_failed": 0}
    assert len(rows(tmp_path)) == 3


def test_unwritable_directory_one_warning_app_unaffected_drops_counted(tmp_path, caplog):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the ledger directory should be")
    config.set_settings(config.Settings(ledger=str(blocker / "ledger")))
    try:
        reader = InMemoryMetricReader()
        meter_provider = MeterProvider(metric_readers=[reader])
        tracer_provider = TracerProvider()
        processor = LLMMeterSpanProcessor(meter_provider=meter_provider)
        tracer_provider.add_span_processor(processor)
        instrumentor = OpenAIInstrumentor()
        instrumentor.instrument(tracer_provider=tracer_provider)
        try:
            with scripted(lambda request: Reply.json(completion("gpt-4o-mini", 10, 2))) as server:
                client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="test-key", max_retries=0)
                results = []
                with caplog.at_level(logging.WARNING, logger="llmmeter.ledger"):
                    for _batch in range(2):
                        for _ in range(3):
                            results.append(client.chat.completions.create(
                                model="gpt-4o-mini", messages=[{"role": "user", "content": "a"}]))
                        processor.force_flush()
                        sink = next(s for s in processor.sinks if isinstance(s, LedgerSink))
                        sink.writer.flush()
        finally:
            instrumentor.uninstrument()
        assert [r.choices[0].message.content for r in results] == ["ok"] * 6
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and str(blocker) in warnings[0].getMessage()
        dropped = [p for rm in reader.get_metrics_data().resource_metrics for sm in rm.scope_metrics
                   for m in sm.metrics if m.name == names.METRIC_LEDGER_DROPPED for p in m.data.data_points]
        by_reason = {p.attributes[names.LABEL_LEDGER_REASON]: p.value for p in dropped}
        assert by_reason == {"queue_full": 0, "write_failed": 6}
        tracer_provider.shutdown()
        meter_provider.shutdown()
    finally:
        config.set_settings(None)


def _row(i: int, worker: int = 0) -> tuple:
    values = dict.fromkeys(schema.COLUMN_NAMES)
    values.update(start_ns=1_764_300_000_000_000_000 + i, trace_id=f"{worker:032x}", span_id=f"{i:016x}",
                  input_tokens=i, output_tokens=1, cost_usd=0.001, priced=1, status="ok", has_usage=1,
                  estimated=0, schema_version=schema.SCHEMA_VERSION, user=f"u{worker}")
    return tuple(values[name] for name in schema.COLUMN_NAMES)


WORKER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {tests!r})
    from test_ledger import _row
    from llmmeter.ledger.writer import LedgerWriter
    worker, count = int(sys.argv[1]), int(sys.argv[2])
    writer = LedgerWriter(sys.argv[3], batch=50, flush_interval_s=0.01)
    i = 0
    while count < 0 or i < count:
        writer.add(_row(i, worker))
        i += 1
        if i % 50 == 0:
            writer.flush()
            print(i, flush=True)
    writer.close()
    print("done", writer.written, writer.dropped, flush=True)
""")


def test_four_processes_one_killed_no_duplicates_survivors_complete(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(tests=str(Path(__file__).parent)))
    per_worker = 3000
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    victim = subprocess.Popen([sys.executable, str(script), "9", "-1", str(tmp_path)], stdout=subprocess.PIPE,
                              text=True, env=env)
    survivors = [subprocess.Popen([sys.executable, str(script), str(w), str(per_worker), str(tmp_path)],
                                  stdout=subprocess.PIPE, text=True, env=env) for w in range(3)]
    assert victim.stdout is not None
    for _ in range(4):  # the victim has committed 4 batches and is writing more when it is killed
        assert victim.stdout.readline().strip().isdigit()
    victim.send_signal(signal.SIGKILL)
    victim.wait(60)
    outs = [p.communicate(timeout=120)[0] for p in survivors]
    assert all(p.returncode == 0 for p in survivors), outs

    conn = sqlite3.connect(tmp_path / FILE_NAME)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    per = dict(conn.execute("SELECT user, COUNT(*) FROM llm_calls GROUP BY user").fetchall())
    total, distinct = conn.execute(
        "SELECT COUNT(*), COUNT(DISTINCT trace_id || span_id) FROM llm_calls").fetchone()
    conn.close()
    assert total == distinct  # no duplicated row
    assert (per["u0"], per["u1"], per["u2"]) == (per_worker, per_worker, per_worker)
    assert per["u9"] >= 200  # the 4 batches it reported as committed survived the kill


def test_fork_child_writes_its_own_rows_once(tmp_path):
    writer = LedgerWriter(tmp_path, flush_interval_s=3600)
    writer.add(_row(1, worker=1))  # queued in the parent when the fork happens
    pid = os.fork()
    if pid == 0:  # child: the parent's queue is not ours; write one row of our own
        try:
            writer.add(_row(2, worker=2))
            writer.close()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    writer.close()
    got = sorted((r["user"], r["span_id"]) for r in rows(tmp_path))
    assert got == [("u1", f"{1:016x}"), ("u2", f"{2:016x}")]


def test_older_schema_file_is_read_and_upgraded(tmp_path):
    # A ledger file written by an older schema: fewer columns, no meta table.
    old_columns = [c for c in schema.COLUMN_NAMES if c not in ("experiment", "attrs", "schema_version")]
    conn = sqlite3.connect(tmp_path / FILE_NAME)
    conn.execute(f"CREATE TABLE llm_calls ({', '.join(old_columns)}, UNIQUE (trace_id, span_id))")
    conn.execute("INSERT INTO llm_calls (start_ns, trace_id, span_id, user, cost_usd, priced) "
                 "VALUES (1764300000000000000, 'a', 'b', 'old-user', 0.25, 1)")
    conn.commit()
    conn.close()

    store = open_store(tmp_path)
    assert store.conn.execute("SELECT user, cost_usd, experiment, day FROM calls").fetchall() == [
        ("old-user", 0.25, None, "2025-11-28")]
    store.close()

    connect(tmp_path / FILE_NAME).close()  # a newer writer opens it: the missing columns are added
    writer = LedgerWriter(tmp_path)
    writer.add(_row(5))
    writer.close()
    assert {(r["user"], r["schema_version"]) for r in rows(tmp_path)} == {("old-user", None),
                                                                            ("u0", schema.SCHEMA_VERSION)}


def test_corrupt_and_truncated_files_are_named_and_the_rest_is_read(tmp_path):
    writer = LedgerWriter(tmp_path)
    writer.add(_row(1))
    writer.close()
    (tmp_path / "broken.sqlite").write_bytes(b"this is not a database" * 100)
    good = (tmp_path / FILE_NAME).read_bytes()
    (tmp_path / "truncated.sqlite").write_bytes(good[:60])
    result = subprocess.run([sys.executable, "-m", "llmmeter.cli", "report", "top", "--by", "user",
                             "--format", "json", "--ledger", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [{"key": "u0", "calls": 1, "input_tokens": 1, "output_tokens": 1,
                                          "cost_usd": 0.001, "share": 1.0}]
    assert "broken.sqlite" in result.stderr and "truncated.sqlite" in result.stderr


def test_ledger_resolution_and_default_place(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_directory() == tmp_path / "llmmeter" / "ledger"
    assert resolve(None, zero_infrastructure=True) == tmp_path / "llmmeter" / "ledger"
    assert resolve(None, zero_infrastructure=False) is None
    assert resolve("off", zero_infrastructure=True) is None
    assert resolve(str(tmp_path / "x"), zero_infrastructure=False) == tmp_path / "x"
    assert config.Settings.from_env({"LLMMETER_LEDGER": "off"}).ledger == "off"
    assert config.Settings.from_env({"LLMMETER_LEDGER": " /var/x "}).ledger == "/var/x"
    assert config.Settings.from_env({}).ledger is None


def test_ledger_not_imported_when_off():
    code = ("import sys, llmmeter; from llmmeter.processor import LLMMeterSpanProcessor; "
            "LLMMeterSpanProcessor(); print(sorted(m for m in sys.modules if m.startswith('llmmeter.ledger')))")
    env = {k: v for k, v in os.environ.items() if k != "LLMMETER_LEDGER"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "[]"


def test_readme_documents_the_schema():
    readme = (REPO / "README.md").read_text()
    assert schema.markdown_table() in readme


def test_writer_thread_writes_without_close(tmp_path):
    writer = LedgerWriter(tmp_path, batch=2, flush_interval_s=0.01)
    for i in range(4):
        writer.add(_row(i))
    deadline = time.monotonic() + 30
    while writer.written < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(rows(tmp_path)) == 4  # written by the writer's own thread
    writer.close()


def test_writer_keeps_the_hourly_rollup_exact(tmp_path):
    writer = LedgerWriter(tmp_path, flush_interval_s=3600)
    for i in range(10):
        writer.add(_row(i, worker=1))
    writer.flush()  # first transaction
    writer.add(_row(3, worker=1))  # a duplicate: ignored by the table, so not summed twice
    for i in range(10, 15):
        writer.add(_row(i, worker=1))
    writer.close()
    conn = sqlite3.connect(tmp_path / FILE_NAME)
    got = conn.execute("SELECT key, hour, value, calls, input_tokens, output_tokens, cost_usd, unpriced_calls "
                       "FROM llm_calls_hourly WHERE key IN ('user', 'model', 'session') ORDER BY key").fetchall()
    upto = conn.execute("SELECT value FROM llmmeter_meta WHERE key = 'rollup_upto'").fetchone()
    conn.close()
    hour = 1_764_300_000_000_000_000 // 3_600_000_000_000  # _row's calls all start in this hour
    # 15 calls (0..14): input i each, output 1 each, $0.001 each; model and session are not set on _row's rows.
    assert [g[:6] for g in got] == [("model", hour, "(none)", 15, 105, 15), ("user", hour, "u1", 15, 105, 15)]
    assert [g[6] for g in got] == pytest.approx([0.015, 0.015]) and [g[7] for g in got] == [0, 0]
    assert upto == ("15",)


def test_rollup_of_an_older_file_catches_up_in_steps(tmp_path):
    conn = connect(tmp_path / FILE_NAME)
    conn.executemany(schema.insert_statement(), [_row(i) for i in range(10)])  # rows with no rollup yet
    done, calls, ready = [], [], []
    for _ in range(3):
        conn.execute("BEGIN IMMEDIATE")
        done.append(roll_up(conn, limit=4, allowance=0))
        conn.execute("COMMIT")
        calls.append(conn.execute("SELECT calls FROM llm_calls_hourly WHERE key = 'user'").fetchone()[0])
        store = open_store(tmp_path)
        ready.append(store.rollup_ready)
        store.close()
    conn.close()
    assert done == [False, False, True] and calls == [4, 8, 10]
    assert ready == [False, False, True]  # a reader uses the rollup only once it covers every row


APP = textwrap.dedent("""
    import sys, openai, llmmeter
    client = openai.OpenAI(base_url=sys.argv[1], api_key="test-key", max_retries=0)
    with llmmeter.attributes(user="u-zero", session="s-zero"):
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "a"}])
    print("app ran")
""")


def test_opentelemetry_instrument_without_endpoint_writes_the_default_ledger(tmp_path):
    app = tmp_path / "app.py"
    app.write_text(APP)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LLMMETER_"))}
    env.update(XDG_DATA_HOME=str(tmp_path / "xdg"), LLMMETER_SUMMARY="off")
    instrument = Path(sys.executable).with_name("opentelemetry-instrument")
    with scripted(lambda request: Reply.json(completion("gpt-4o-mini", 40, 4))) as server:
        result = subprocess.run([str(instrument), sys.executable, str(app), server.base_url + "/v1"], env=env,
                                capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "app ran", result.stderr
    got = rows(tmp_path / "xdg" / "llmmeter" / "ledger")
    assert [(r["user"], r["session"], r["input_tokens"], r["output_tokens"]) for r in got] == [
        ("u-zero", "s-zero", 40, 4)]
    assert got[0]["cost_usd"] == pytest.approx(40 * MINI_IN + 4 * MINI_OUT)


def test_outcomes_report_cost_per_successful_outcome(pipeline):
    _tracer_provider, processor, _reader, directory = pipeline
    replies = iter([completion("gpt-4o-mini", 1000, 100), completion("gpt-4o-mini", 2000, 200),
                    completion("gpt-4o-mini", 10, 1)])
    with scripted(lambda request: Reply.json(next(replies))) as server:
        client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="test-key", max_retries=0)
        with llmmeter.attributes(feature="support"):
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "a"}])
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "b"}])
            llmmeter.record_outcome("ticket_resolved", success=True)
            llmmeter.record_outcome("ticket_resolved", success=False)
            llmmeter.record_outcome("ticket_resolved", success=True, count=2)
        with llmmeter.attributes(feature="search"):
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "c"}])
    processor.shutdown()
    result = subprocess.run([sys.executable, "-m", "llmmeter.cli", "report", "outcomes", "--by", "feature",
                             "--format", "json", "--ledger", str(directory)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    got = {row["key"]: row for row in json.loads(result.stdout)}
    support = (1000 + 2000) * MINI_IN + (100 + 200) * MINI_OUT
    assert (got["support"]["calls"], got["support"]["successes"], got["support"]["outcomes"]) == (2, 3, 4)
    assert got["support"]["cost_usd"] == pytest.approx(support)
    assert got["support"]["cost_per_success_usd"] == pytest.approx(support / 3)
    assert (got["search"]["successes"], got["search"]["cost_per_success_usd"]) == (0, None)
    result = subprocess.run([sys.executable, "-m", "llmmeter.cli", "report", "outcomes", "--clickhouse",
                             "http://127.0.0.1:9"], capture_output=True, text=True)
    assert result.returncode == 2 and "only on the embedded ledger" in result.stderr


def test_app_cache_lookups_counted_and_in_the_ledger(pipeline):
    _tracer_provider, processor, _reader, directory = pipeline
    from llmmeter import _providers

    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    _providers.use(meter_provider=meter_provider)
    try:
        answers = {"known question": "cached answer"}

        @llmmeter.cached("faq", model="gpt-4o-mini")
        def lookup(question: str) -> str | None:
            return answers.get(question)

        with llmmeter.attributes(feature="faq-bot"):
            assert lookup("known question") == "cached answer"  # the function's result is untouched
            assert lookup("new question") is None
            llmmeter.record_cache(True, "semantic", model="gpt-4o-mini", input_tokens=1000, output_tokens=200)
            llmmeter.record_cache(True, "semantic", model="acme-unknown-model", input_tokens=10)
            llmmeter.record_cache(False, "semantic")
        with pytest.raises(ValueError, match="hit must be True or False"):
            llmmeter.record_cache("yes", "semantic")  # type: ignore[arg-type]
        points = [p for rm in reader.get_metrics_data().resource_metrics for sm in rm.scope_metrics
                  for m in sm.metrics if m.name == names.METRIC_APP_CACHE_LOOKUPS for p in m.data.data_points]
    finally:
        _providers.use()
        meter_provider.shutdown()
    counted = {(p.attributes[names.LABEL_APP_CACHE], p.attributes[names.LABEL_APP_CACHE_RESULT]): p.value
               for p in points}
    assert counted == {("faq", "hit"): 1, ("faq", "miss"): 1, ("semantic", "hit"): 2, ("semantic", "miss"): 1}
    processor.shutdown()
    result = subprocess.run([sys.executable, "-m", "llmmeter.cli", "report", "cache", "--app", "--format", "json",
                             "--ledger", str(directory)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    got = {row["cache"]: row for row in json.loads(result.stdout)}
    assert (got["semantic"]["lookups"], got["semantic"]["hits"], got["semantic"]["hits_without_estimate"]) == (3, 2, 1)
    assert got["semantic"]["hit_rate"] == pytest.approx(2 / 3)
    # The hit with a priced model: 1000 input and 200 output tokens of gpt-4o-mini at the documented rates.
    assert got["semantic"]["saved_usd_estimated"] == pytest.approx(1000 * MINI_IN + 200 * MINI_OUT)
    assert (got["faq"]["lookups"], got["faq"]["hits"], got["faq"]["saved_usd_estimated"]) == (2, 1, 0)
    conn = sqlite3.connect(directory / FILE_NAME)
    assert conn.execute("SELECT DISTINCT feature FROM llm_cache_lookups").fetchall() == [("faq-bot",)]
    conn.close()


def test_calls_the_sampler_dropped_are_in_the_ledger(tmp_path):
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    tracer_provider = TracerProvider(sampler=ALWAYS_OFF)
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    processor = llmmeter.configure(tracer_provider=tracer_provider, meter_provider=meter_provider, instrument=False,
                                   settings=config.Settings(summary="off"), ledger=str(tmp_path / "ledger"))
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=tracer_provider)
    try:
        with scripted(lambda request: Reply.json(completion("gpt-4o-mini", 30, 3))) as server:
            client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="test-key", max_retries=0)
            with llmmeter.attributes(user="u-unsampled"):
                client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "a"}])
    finally:
        instrumentor.uninstrument()
        processor.shutdown()
        tracer_provider.shutdown()
        meter_provider.shutdown()
        config.set_settings(None)
        from llmmeter import _providers

        _providers.use()  # configure() pointed llmmeter's own telemetry at these providers
    got = rows(tmp_path / "ledger")
    assert [(r["user"], r["sampled"], r["input_tokens"], r["output_tokens"]) for r in got] == [
        ("u-unsampled", 0, 30, 3)]
    assert got[0]["cost_usd"] == pytest.approx(30 * MINI_IN + 3 * MINI_OUT)
