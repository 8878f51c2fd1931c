"""``llmmeter report``: every report on both engines, against numbers worked out by hand from seven calls.

The same seven calls are stored twice: as ledger rows (SQLite, what the embedded writer writes) and as
``otel_traces`` rows the way the collector's ``clickhouse`` exporter writes spans (every attribute a string in
``SpanAttributes``), in a table made with exactly the DDL of :data:`llmmeter.report.clickhouse.OTEL_TRACES_DDL`,
on chDB (ClickHouse's engine in-process). Every report query then runs on both, and both must give the
hand-computed rows below.
"""

from __future__ import annotations

import http.server
import json
import socket
import subprocess
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path

import pytest
from llmmeter import names
from llmmeter.ledger import FILE_NAME, schema
from llmmeter.ledger.store import open_store
from llmmeter.ledger.writer import connect, roll_up
from llmmeter.report import clickhouse, engine, queries, render

T = "a" * 32  # the agent run's trace
R = "1" * 16  # its invoke_agent span (the run id)


def ns(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()) * 1_000_000_000


# gpt-4o's input and cache-read prices (https://platform.openai.com/docs/pricing): what one cached token saves.
GPT4O_SAVED = 2.5e-6 - 1.25e-6
# The seven calls (cost in USD; None = unpriced).
CALLS = [
    dict(start="2026-11-26T10:00:00", user="u1", feature="chat", route="/chat", session="s1", prompt="greet",
         prompt_version="v1", model="gpt-4o-mini", tin=100, tout=10, cache=0, cost=0.10, trace="b" * 32,
         span="0" * 15 + "1"),
    dict(start="2026-11-26T11:00:00", user="u2", feature="chat", route="/chat", session="s2", prompt="greet",
         prompt_version="v1", model="gpt-4o-mini", tin=100, tout=20, cache=0, cost=0.20, trace="c" * 32,
         span="0" * 15 + "2"),
    dict(start="2026-11-27T09:00:00", user="u1", feature="search", route="/search", session="s1", prompt="greet",
         prompt_version="v2", model="gpt-4o", tin=150, tout=30, cache=50, saved=50 * GPT4O_SAVED, cost=0.30,
         trace="d" * 32,
         span="0" * 15 + "3"),
    dict(start="2026-11-27T10:00:00", user="u1", feature="search", route="/search", session="s3", model="gpt-4o",
         tin=400, tout=40, cache=0, cost=0.40, estimated="no_usage_in_stream", trace="e" * 32, span="0" * 15 + "4"),
    dict(start="2026-11-28T08:00:00", user="u3", feature="chat", route="/chat", session="s4", prompt="greet",
         prompt_version="v2", model="acme-x", tin=250, tout=5, cache=0, cost=None, trace="f" * 32,
         span="0" * 15 + "5"),
    dict(start="2026-11-28T09:00:00", user="u2", feature="agent", route="/agent", session="s2", model="gpt-4o",
         tin=200, tout=50, cache=100, saved=100 * GPT4O_SAVED, cost=0.50, trace=T, span="0" * 15 + "6", parent=R,
         run=R, agent="support"),
    dict(start="2026-11-28T09:00:01", user="u2", feature="agent", route="/agent", session="s2", model="gpt-4o-mini",
         tin=10, tout=5, cache=0, cost=0.05, trace=T, span="0" * 15 + "7", parent="0" * 15 + "6", run=R,
         agent="support"),
]
TOTAL = 0.10 + 0.20 + 0.30 + 0.40 + 0.50 + 0.05


def ledger_row(call: dict) -> dict:
    return {
        "start_ns": ns(call["start"]), "end_ns": ns(call["start"]) + 1_000_000_000, "trace_id": call["trace"],
        "span_id": call["span"], "parent_span_id": call.get("parent"), "sampled": 1, "service": "shop",
        "provider": "openai", "operation": "chat", "request_model": call["model"], "model": call["model"],
        "input_tokens": call["tin"], "output_tokens": call["tout"], "cache_read_tokens": call["cache"],
        "cache_creation_tokens": 0, "reasoning_tokens": 0, "has_usage": 1,
        "estimated": 1 if call.get("estimated") else 0, "estimate_reason": call.get("estimated"),
        "cost_usd": call["cost"], "priced": 0 if call["cost"] is None else 1, "status": "ok", "duration_s": 1.0,
        "agent_run_id": call.get("run"), "agent_name": call.get("agent"), "cache_saved_usd": call.get("saved"),
        **{key: call.get(key) for key in ("user", "feature", "route", "session", "prompt", "prompt_version")},
        "attrs": json.dumps({k: call[k] for k in ("user", "feature", "route", "session", "prompt",
                                                    "prompt_version") if call.get(k)}),
        "schema_version": schema.SCHEMA_VERSION,
    }


def exporter_row(call: dict) -> dict:
    """The span as the clickhouse exporter stores it: attributes stringified into SpanAttributes."""
    attrs = {
        names.OPERATION: "chat", names.PROVIDER: "openai", names.REQUEST_MODEL: call["model"],
        names.USAGE_INPUT_TOKENS: str(call["tin"]), names.USAGE_OUTPUT_TOKENS: str(call["tout"]),
        names.LLMMETER_PRICED: "false" if call["cost"] is None else "true",
    }
    if call["cache"]:
        attrs[names.USAGE_CACHE_READ_TOKENS] = str(call["cache"])
    if call["cost"] is not None:
        attrs[names.COST_USD] = repr(call["cost"])
    if call.get("estimated"):
        attrs[names.LLMMETER_ESTIMATED] = "true"
        attrs[names.LLMMETER_ESTIMATED_REASON] = call["estimated"]
    if call.get("run"):
        attrs[names.RUN_ID] = call["run"]
        attrs[names.AGENT_NAME] = call["agent"]
    for key in ("user", "feature", "route", "session", "prompt", "prompt_version"):
        if call.get(key):
            attrs[names.ATTRIBUTION_SPAN_PREFIX + key] = call[key]
    return {"Timestamp": call["start"].replace("T", " ") + ".000000000", "TraceId": call["trace"],
            "SpanId": call["span"], "ParentSpanId": call.get("parent") or "", "SpanName": f"chat {call['model']}",
            "SpanKind": "Client", "ServiceName": "shop", "ResourceAttributes": {"service.name": "shop"},
            "ScopeName": "llmmeter", "SpanAttributes": attrs, "Duration": 1_000_000_000, "StatusCode": "Unset"}


def _fill(directory: Path, rollup: bool) -> Path:
    conn = connect(directory / FILE_NAME)
    for call in CALLS:
        row = ledger_row(call)
        conn.execute(f"INSERT INTO llm_calls ({', '.join(row)}) VALUES ({', '.join('?' for _ in row)})",
                     tuple(row.values()))
    if rollup:  # what the writer does in each batch's transaction
        conn.execute("BEGIN IMMEDIATE")
        assert roll_up(conn)
        conn.execute("COMMIT")
    conn.close()
    return directory


@pytest.fixture(scope="module")
def ledger_dir(tmp_path_factory) -> Path:
    """The seven calls as rows inserted directly: no hourly rollup, every report scans the rows."""
    return _fill(tmp_path_factory.mktemp("ledger"), rollup=False)


@pytest.fixture(scope="module")
def rollup_dir(tmp_path_factory) -> Path:
    """The same rows with the writer's hourly rollup complete: `top` by a rolled-up key reads the rollup."""
    return _fill(tmp_path_factory.mktemp("ledger-rollup"), rollup=True)


def table_for(version: str) -> str:
    return f"otel_{version}.otel_traces"


@pytest.fixture(scope="module")
def chdb_session(tmp_path_factory):
    """One chDB session (chDB allows one per process) holding the exporter's traces table once per version of
    its DDL (by contrib commit), each in its own database, with the seven calls as the exporter writes them."""
    from chdb import session

    sess = session.Session(str(tmp_path_factory.mktemp("chdb")))
    for version, ddl in clickhouse.EXPORTER_DDLS.items():
        table = table_for(version)
        sess.query(f"CREATE DATABASE IF NOT EXISTS otel_{version}")
        sess.query(ddl.format(table=table))
        for call in CALLS:
            sess.query(f"INSERT INTO {table} FORMAT JSONEachRow {json.dumps(exporter_row(call))}")
    yield sess
    sess.close()


ENGINES = ["sqlite", "sqlite-rollup", *(f"clickhouse-{version}" for version in sorted(clickhouse.EXPORTER_DDLS))]


@pytest.fixture(params=ENGINES)
def run_report(request, ledger_dir, rollup_dir, chdb_session):
    """Runs a report query on one engine: the embedded ledger (rows only, or with its hourly rollup), or the
    exporter's table (one DDL version) on chDB."""
    engine_name = request.param
    dialect = "clickhouse" if engine_name.startswith("clickhouse") else "sqlite"

    def run(build, since_ns=None, until_ns=None):
        query = build(dialect)
        if dialect == "sqlite":
            store = open_store(rollup_dir if engine_name == "sqlite-rollup" else ledger_dir, since_ns, until_ns)
            try:
                assert store.rollup_ready is (engine_name == "sqlite-rollup")
                return engine.on_sqlite(store, query)
            finally:
                store.close()
        table = table_for(engine_name.split("-", 1)[1])
        return engine.on_chdb(chdb_session, query, table, since_ns, until_ns)

    run.engine = engine_name
    return run


def approx_rows(rows):
    return [{k: pytest.approx(v) if isinstance(v, float) else v for k, v in row.items()} for row in rows]


def test_top_by_user(run_report):
    got = run_report(lambda d: queries.top("user", 10, d))
    assert [(r["key"], r["calls"], r["input_tokens"], r["output_tokens"], r["cache_read_tokens"],
             r["unpriced_calls"]) for r in got] == [
        ("u1", 3, 650, 80, 50, 0), ("u2", 3, 310, 75, 100, 0), ("u3", 1, 250, 5, 0, 1)]
    assert [r["cost_usd"] for r in got] == pytest.approx([0.80, 0.75, 0.0])
    assert [r["share"] for r in got] == pytest.approx([0.80 / TOTAL, 0.75 / TOTAL, 0.0])


def test_top_by_session_limit_and_missing_key(run_report):
    got = run_report(lambda d: queries.top("session", 2, d))
    # s2 $0.75; s1 and s3 tie at $0.40 (0.10 + 0.30 is exactly 0.40 in binary too): more calls ranks first.
    assert [(r["key"], r["calls"]) for r in got] == [("s2", 3), ("s1", 2)]
    # `prompt` is absent on three calls: they are one "(none)" row.
    got = run_report(lambda d: queries.top("prompt", 10, d))
    assert [(r["key"], r["calls"]) for r in got] == [("(none)", 3), ("greet", 4)]
    assert [r["cost_usd"] for r in got] == pytest.approx([0.95, 0.60])
    got = run_report(lambda d: queries.top("agent", 10, d))
    assert [(r["key"], r["calls"]) for r in got] == [("(none)", 5), ("support", 2)]


def test_top_by_a_custom_key_reads_attrs(run_report):
    # Not a column of its own for the query: read from the attrs JSON ("route" is also a column; "feature" too).
    got = run_report(lambda d: queries.top("feature", 10, d))
    assert [(r["key"], r["calls"]) for r in got] == [("search", 2), ("agent", 2), ("chat", 3)]


def test_time_window(run_report):
    got = run_report(lambda d: queries.top("user", 10, d), ns("2026-11-27T00:00:00"), ns("2026-11-28T00:00:00"))
    assert [(r["key"], r["calls"]) for r in got] == [("u1", 2)]
    assert got[0]["cost_usd"] == pytest.approx(0.70) and got[0]["share"] == pytest.approx(1.0)


def test_time_window_with_partial_hours(run_report):
    # 08:30-09:00:00.5 holds only call 6 (09:00:00); 08:30-10:00 holds calls 6 and 7 (09:00:00, 09:00:01).
    got = run_report(lambda d: queries.top("user", 10, d), ns("2026-11-28T08:30:00"),
                     ns("2026-11-28T09:00:00") + 500_000_000)
    assert [(r["key"], r["calls"], r["input_tokens"]) for r in got] == [("u2", 1, 200)]
    got = run_report(lambda d: queries.top("user", 10, d), ns("2026-11-28T08:30:00"), ns("2026-11-28T10:00:00"))
    assert [(r["key"], r["calls"], r["input_tokens"]) for r in got] == [("u2", 2, 210)]
    assert got[0]["cost_usd"] == pytest.approx(0.55) and got[0]["share"] == pytest.approx(1.0)


def test_daily(run_report):
    got = run_report(queries.daily)
    assert [(r["day"], r["calls"]) for r in got] == [("2026-11-26", 2), ("2026-11-27", 2), ("2026-11-28", 3)]
    assert [r["cost_usd"] for r in got] == pytest.approx([0.30, 0.70, 0.55])
    assert got[0]["change_usd"] is None and got[0]["change"] is None
    assert [r["change_usd"] for r in got[1:]] == pytest.approx([0.40, -0.15])
    assert [r["change"] for r in got[1:]] == pytest.approx([0.40 / 0.30, -0.15 / 0.70])


def test_tokens_percentiles(run_report):
    got = run_report(lambda d: queries.tokens("feature", d))
    # Nearest rank: p of n sorted values is the ceil(p*n)-th. chat in [100, 100, 250], out [5, 10, 20].
    assert [tuple(r.values()) for r in got] == [
        ("search", 2, 150, 400, 400, 30, 40, 40),
        ("chat", 3, 100, 250, 250, 10, 20, 20),
        ("agent", 2, 10, 200, 200, 5, 50, 50),
    ]


def test_prompts_footprint_jump(run_report):
    got = run_report(queries.prompts)
    assert [(r["prompt"], r["prompt_version"], r["calls"]) for r in got] == [("greet", "v2", 2), ("greet", "v1", 2)]
    assert got[0]["avg_input_tokens"] == pytest.approx((150 + 250) / 2)
    assert got[0]["jump"] == pytest.approx(200 / 100 - 1) and got[1]["jump"] is None
    assert got[1]["first_seen_ns"] == ns("2026-11-26T10:00:00")


def test_cache(run_report):
    got = run_report(queries.cache)
    assert [(r["model"], r["calls"], r["input_tokens"], r["cache_read_tokens"]) for r in got] == [
        ("gpt-4o", 3, 750, 150), ("acme-x", 1, 250, 0), ("gpt-4o-mini", 3, 210, 0)]
    assert [r["cache_read_share"] for r in got] == pytest.approx([150 / 750, 0, 0])
    # The saving is computed by the embedded writer from the price table; spans in ClickHouse do not carry it.
    saved = 150 * GPT4O_SAVED if run_report.engine.startswith("sqlite") else 0
    assert [r["saved_usd"] for r in got] == pytest.approx([saved, 0, 0])


def test_unpriced_and_estimated(run_report):
    assert run_report(queries.unpriced) == [
        {"provider": "openai", "model": "acme-x", "calls": 1, "input_tokens": 250, "output_tokens": 5}]
    got = run_report(queries.estimated)
    assert approx_rows(got) == [{"reason": "no_usage_in_stream", "model": "gpt-4o", "calls": 1,
                                 "input_tokens": 400, "output_tokens": 40, "cost_usd": 0.40}]


def test_run(run_report):
    got = run_report(lambda d: queries.run(T, d))
    assert [(r["span_id"], r["parent_span_id"], r["agent_run_id"], r["agent"], r["model"]) for r in got] == [
        ("0" * 15 + "6", R, R, "support", "gpt-4o"), ("0" * 15 + "7", "0" * 15 + "6", R, "support", "gpt-4o-mini")]
    tree = render.run_tree(T, got)
    assert tree.children[0].label.startswith("agent support")
    assert len(tree.children[0].children) == 1 and len(tree.children[0].children[0].children) == 1


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "llmmeter.cli", "report", *args], capture_output=True, text=True,
                          timeout=120)


def test_cli_top_json_has_exactly_the_contract_fields(ledger_dir):
    result = cli("top", "--by", "user", "--format", "json", "--ledger", str(ledger_dir))
    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout)
    assert [list(r) for r in got] == [["key", "calls", "input_tokens", "output_tokens", "cost_usd", "share"]] * 3
    assert [(r["key"], r["calls"], r["input_tokens"], r["output_tokens"]) for r in got] == [
        ("u1", 3, 650, 80), ("u2", 3, 310, 75), ("u3", 1, 250, 5)]
    assert [r["share"] for r in got] == pytest.approx([0.80 / TOTAL, 0.75 / TOTAL, 0.0])


def test_cli_csv_table_between_and_run(ledger_dir):
    result = cli("daily", "--format", "csv", "--ledger", str(ledger_dir), "--between", "2026-11-27", "2026-11-29")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "day,calls,cost_usd,change_usd,change"
    assert [line.split(",")[:2] for line in lines[1:]] == [["2026-11-27", "2"], ["2026-11-28", "3"]]
    result = cli("top", "--by", "user", "--ledger", str(ledger_dir))
    assert result.returncode == 0 and "u1" in result.stdout and "$0.800000" in result.stdout
    result = cli("run", T, "--ledger", str(ledger_dir))
    assert result.returncode == 0 and "agent support" in result.stdout and "gpt-4o-mini" in result.stdout
    result = cli("top", "--by", "user", "--since", "yesterday", "--ledger", str(ledger_dir))
    assert result.returncode == 2 and "'yesterday'" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_clickhouse_unreachable_is_one_line():
    port = _free_port()
    result = cli("top", "--by", "user", "--clickhouse", f"http://127.0.0.1:{port}")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "unreachable" in lines[0] and str(port) in lines[0]


def test_clickhouse_missing_table_is_one_line(chdb_session):
    # The server's answer to a query on a missing table, produced by the ClickHouse engine itself (chDB).
    try:
        chdb_session.query("SELECT 1 FROM otel_ff7a946.no_such_table")
        pytest.fail("chDB answered a query on a missing table")
    except Exception as error:  # chDB raises the server's exception text
        message = str(error)
    assert "UNKNOWN_TABLE" in message

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            body = message.encode()
            self.send_response(404)  # ClickHouse's HTTP interface answers UNKNOWN_TABLE with 404
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        result = cli("top", "--by", "user", "--clickhouse", url, "--table", "otel_ff7a946.no_such_table")
    finally:
        server.shutdown()
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "otel_ff7a946.no_such_table does not exist" in lines[0]


def test_the_ledger_columns_match_the_clickhouse_relation(chdb_session):
    # The ClickHouse view yields every ledger column (plus day), so a report reads the same names on both.
    query = queries.Query("cols", "SELECT * FROM calls LIMIT 1", ())
    sql = clickhouse.compose(query, table_for("ff7a946")).rsplit("SETTINGS", 1)[0]
    described = chdb_session.query(f"DESCRIBE ({sql})", "JSONCompact")
    columns = [row[0] for row in json.loads(described.bytes())["data"]]
    assert columns == [*schema.COLUMN_NAMES, "day"]
