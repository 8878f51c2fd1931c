"""The cost ledger's table: one row per counted LLM call, and its version.

The column list is the contract between the writer, the embedded reports and the ClickHouse view
(:mod:`llmmeter.report.clickhouse` builds the same columns from ``otel_traces``), so a report's SQL reads
the same names wherever it runs. ``SCHEMA_VERSION`` goes up when a column is added; a writer opening an
older file adds the missing columns (``ALTER TABLE ... ADD COLUMN``), and a reader fills columns an older
file lacks with NULL, so files written by an older llmmeter stay readable.
"""

from __future__ import annotations

from llmmeter import names

SCHEMA_VERSION = 1
TABLE = "llm_calls"
META_TABLE = "llmmeter_meta"

# (column, SQLite type, what it holds). Order is the INSERT order of llmmeter.ledger.record.row().
# Attribution keys that have a column of their own: the known ones; any other (configured) key is only in `attrs`.
ATTRIBUTION_COLUMNS: tuple[str, ...] = names.KNOWN_ATTRIBUTION_KEYS
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("start_ns", "INTEGER", "call start, Unix ns (UTC)"),
    ("end_ns", "INTEGER", "call end, Unix ns"),
    ("trace_id", "TEXT", "W3C trace id, 32 hex digits"),
    ("span_id", "TEXT", "span id, 16 hex digits"),
    ("parent_span_id", "TEXT", "parent span id (the agent run / tool span / request span), or NULL"),
    ("sampled", "INTEGER", "1 when the trace sampler kept the span (the ledger has the call either way)"),
    ("service", "TEXT", "resource `service.name`"),
    ("provider", "TEXT", "`gen_ai.provider.name` (or legacy `gen_ai.system`)"),
    ("operation", "TEXT", "`gen_ai.operation.name`: chat, embeddings, ..."),
    ("request_model", "TEXT", "`gen_ai.request.model`"),
    ("response_model", "TEXT", "`gen_ai.response.model`"),
    ("model", "TEXT", "request model, else response model (what metric labels use)"),
    ("input_tokens", "INTEGER", "input tokens, semconv meaning: includes cache reads and writes"),
    ("output_tokens", "INTEGER", "output tokens (includes reasoning)"),
    ("cache_read_tokens", "INTEGER", "input tokens read from the provider's prompt cache"),
    ("cache_creation_tokens", "INTEGER", "input tokens written to the provider's prompt cache"),
    ("cache_creation_1h_tokens", "INTEGER", "of which written with the 1-hour TTL"),
    ("reasoning_tokens", "INTEGER", "reasoning output tokens"),
    ("has_usage", "INTEGER", "1 when the call reported (or llmmeter estimated) token usage"),
    ("estimated", "INTEGER", "1 when some token counts were estimated with a tokenizer"),
    ("estimate_reason", "TEXT", "why they were estimated, e.g. no_usage_in_stream"),
    ("cost_usd", "REAL", "USD for this call; NULL when unpriced"),
    ("priced", "INTEGER", "1 when the cost is known (0 for a call that failed before usage)"),
    ("cost_source", "TEXT", "local (llmmeter's price table) | provider | foreign (another instrumentor's)"),
    ("price_table_version", "TEXT", "version of the price table that priced it"),
    ("price_model", "TEXT", "the price-table entry used"),
    ("cache_saved_usd", "REAL", "USD the provider's prompt cache saved: cache-read tokens x (input - cache-read "
     "price); NULL when the model has no such prices"),
    ("status", "TEXT", "ok | error | blocked"),
    ("error_type", "TEXT", "`error.type` of a failed call"),
    ("duration_s", "REAL", "call duration, seconds"),
    ("time_to_first_chunk_s", "REAL", "streams: seconds to the first chunk"),
    ("agent_run_id", "TEXT", "the agent run (its invoke_agent span id) the call was made in"),
    ("agent_name", "TEXT", "`gen_ai.agent.name` of that run"),
    ("tool_name", "TEXT", "`gen_ai.tool.name` when the call was made inside a tool"),
    *((key, "TEXT", f"attribution `{key}` (llmmeter.attr.{key})") for key in ATTRIBUTION_COLUMNS),
    ("attrs", "TEXT", "every `llmmeter.attr.*` key of the span, as a JSON object"),
    ("schema_version", "INTEGER", "ledger schema version of the writer"),
)
COLUMN_NAMES: tuple[str, ...] = tuple(name for name, _type, _doc in COLUMNS)


# --- the hourly rollup --------------------------------------------------------------------------------------
# Per (key, UTC hour, value): the sums `top --by KEY` needs, kept by the writer in the same transaction as the
# rows it sums (one GROUP BY per key over the rows just inserted), so a `top` over millions of calls reads the
# rollup instead of every row. Keys with one value per call or so (session, conversation, request_id) are
# not rolled up: their rollup would be as large as the table. `ROLLUP_UPTO` in the meta table is the last
# rowid summed; a reader uses the rollup only when it covers every row.
ROLLUP_TABLE = "llm_calls_hourly"
ROLLUP_UPTO = "rollup_upto"
HOUR_NS = 3_600_000_000_000
NONE_VALUE = "(none)"
ROLLUP_KEYS: dict[str, str] = {  # `--by` key -> column
    **{key: key for key in ATTRIBUTION_COLUMNS if key not in ("session", "conversation", "request_id")},
    "model": "model",
    "provider": "provider",
    "agent": "agent_name",
    "service": "service",
}
ROLLUP_SUMS: tuple[tuple[str, str], ...] = (  # rollup column, the expression over llm_calls it sums
    ("calls", "1"),
    ("input_tokens", "COALESCE(input_tokens, 0)"),
    ("output_tokens", "COALESCE(output_tokens, 0)"),
    ("cache_read_tokens", "COALESCE(cache_read_tokens, 0)"),
    ("cache_creation_tokens", "COALESCE(cache_creation_tokens, 0)"),
    ("reasoning_tokens", "COALESCE(reasoning_tokens, 0)"),
    ("cost_usd", "COALESCE(cost_usd, 0)"),
    ("unpriced_calls", "CASE WHEN priced = 0 THEN 1 ELSE 0 END"),
)


def _upserts(into: str, unit: str, bucket: str, where: str, from_hourly: bool = False) -> list[str]:
    """One UPSERT per rolled-up key: the rows matching ``where`` summed per (``bucket`` as ``unit``, value) into
    the rollup table ``into``; the rows are calls (``llm_calls``), or the key's rows of the hourly rollup."""
    names_ = ", ".join(name for name, _expr in ROLLUP_SUMS)
    sums = ", ".join(f"SUM({name if from_hourly else expr})" for name, expr in ROLLUP_SUMS)
    updates = ", ".join(f"{name} = {name} + excluded.{name}" for name, _expr in ROLLUP_SUMS)
    source = ROLLUP_TABLE if from_hourly else TABLE
    return [
        f"INSERT INTO {into} (key, {unit}, value, {names_}) "
        f"SELECT '{key}', {bucket}, {'value' if from_hourly else f'COALESCE({column}, {NONE_VALUE!r})'}, {sums} "
        f"FROM {source} WHERE {f'key = {key!r} AND ' if from_hourly else ''}{where} GROUP BY 2, 3 "
        f"ON CONFLICT (key, {unit}, value) DO UPDATE SET {updates}"
        for key, column in ROLLUP_KEYS.items()
    ]


def rollup_statements() -> list[str]:
    """One UPSERT per rolled-up key, summing the rows with ``rowid`` in (?, ?] into the hourly rollup."""
    return _upserts(ROLLUP_TABLE, "hour", f"COALESCE(start_ns, 0) / {HOUR_NS}", "rowid > ? AND rowid <= ?")


# --- the daily rollup ---------------------------------------------------------------------------------------
# The same sums per (key, UTC day, value), folded from the hourly rollup: a `top` over weeks reads one row per
# value and day instead of one per value and hour (10M calls, 10,000 users over 167 hours: 1.67M hourly rows,
# 70,000 daily ones). `DAILY_UPTO` in the meta table is the first hour NOT folded (a day boundary): the daily
# table holds exactly the hourly rows of the hours before it, summed per day. The writer keeps that true in
# each batch's transaction: a batch's rows of hours before it (late calls, an older file catching up) are summed
# into both tables, and once a UTC day is over by the writer's clock its hours are folded in and the mark moves
# past it (one day per transaction, so an old file catches up without holding the write lock long). A reader
# takes whole days before the mark from here and every other whole hour from the hourly table, in one
# statement (one snapshot), so the two never count a call twice.
DAILY_TABLE = "llm_calls_daily"
DAILY_UPTO = "daily_upto_hour"
DAY_HOURS = 24


def daily_late_statements() -> list[str]:
    """One UPSERT per rolled-up key, summing the rows with ``rowid`` in (?, ?] and an hour before ? into the
    daily rollup (rows that arrive for hours already folded)."""
    return _upserts(DAILY_TABLE, "day", f"COALESCE(start_ns, 0) / {HOUR_NS * DAY_HOURS}",
                    f"rowid > ? AND rowid <= ? AND COALESCE(start_ns, 0) / {HOUR_NS} < ?")


def daily_fold_statements() -> list[str]:
    """One UPSERT per rolled-up key, summing its hourly rows of hours in [?, ?) into the daily rollup (per key,
    so each reads a range of the hourly primary key ``(key, hour, value)``)."""
    return _upserts(DAILY_TABLE, "day", f"hour / {DAY_HOURS}", "hour >= ? AND hour < ?", from_hourly=True)


# --- outcomes ------------------------------------------------------------------------------------------------
# One row per llmmeter.record_outcome(): what the calls achieved, with the same attribution, so
# `llmmeter report outcomes` divides cost by successful outcomes per feature or agent.
OUTCOMES_TABLE = "llm_outcomes"
OUTCOME_COLUMNS: tuple[tuple[str, str], ...] = (
    ("time_ns", "INTEGER"),
    ("outcome", "TEXT"),
    ("success", "INTEGER"),
    ("outcome_count", "INTEGER"),
    ("agent_name", "TEXT"),
    *((key, "TEXT") for key in ATTRIBUTION_COLUMNS),
    ("attrs", "TEXT"),
)
OUTCOME_COLUMN_NAMES: tuple[str, ...] = tuple(name for name, _type in OUTCOME_COLUMNS)


def outcome_insert_statement() -> str:
    marks = ", ".join("?" for _ in OUTCOME_COLUMN_NAMES)
    return f"INSERT INTO {OUTCOMES_TABLE} ({', '.join(OUTCOME_COLUMN_NAMES)}) VALUES ({marks})"


# --- app-level cache lookups ---------------------------------------------------------------------------------
# One row per llmmeter.record_cache(): the app's own cache answered (hit) or not. A hit's `saved_usd` is what the
# call it replaced would have cost at the price table's rates for the model and token counts given (an estimate).
CACHE_TABLE = "llm_cache_lookups"
CACHE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("time_ns", "INTEGER"),
    ("cache", "TEXT"),
    ("hit", "INTEGER"),
    ("model", "TEXT"),
    ("input_tokens", "INTEGER"),
    ("output_tokens", "INTEGER"),
    ("saved_usd", "REAL"),
    *((key, "TEXT") for key in ATTRIBUTION_COLUMNS),
    ("attrs", "TEXT"),
)
CACHE_COLUMN_NAMES: tuple[str, ...] = tuple(name for name, _type in CACHE_COLUMNS)


def cache_insert_statement() -> str:
    marks = ", ".join("?" for _ in CACHE_COLUMN_NAMES)
    return f"INSERT INTO {CACHE_TABLE} ({', '.join(CACHE_COLUMN_NAMES)}) VALUES ({marks})"


def create_statements() -> list[str]:
    """DDL of a ledger file. The unique key makes re-inserting a row a no-op (no duplicates, ever)."""
    cols = ",\n  ".join(f"{name} {sqltype}" for name, sqltype, _doc in COLUMNS)
    sums = ", ".join(f"{name} {'REAL' if name == 'cost_usd' else 'INTEGER'} NOT NULL" for name, _e in ROLLUP_SUMS)
    return [
        f"CREATE TABLE IF NOT EXISTS {TABLE} (\n  {cols},\n  UNIQUE (trace_id, span_id)\n)",
        f"CREATE INDEX IF NOT EXISTS {TABLE}_start ON {TABLE} (start_ns)",
        f"CREATE TABLE IF NOT EXISTS {META_TABLE} (key TEXT PRIMARY KEY, value TEXT)",
        f"CREATE TABLE IF NOT EXISTS {ROLLUP_TABLE} (key TEXT NOT NULL, hour INTEGER NOT NULL, value TEXT NOT NULL, "
        f"{sums}, PRIMARY KEY (key, hour, value)) WITHOUT ROWID",
        f"CREATE TABLE IF NOT EXISTS {DAILY_TABLE} (key TEXT NOT NULL, day INTEGER NOT NULL, value TEXT NOT NULL, "
        f"{sums}, PRIMARY KEY (key, day, value)) WITHOUT ROWID",
        f"CREATE TABLE IF NOT EXISTS {OUTCOMES_TABLE} ({', '.join(f'{n} {t}' for n, t in OUTCOME_COLUMNS)})",
        f"CREATE TABLE IF NOT EXISTS {CACHE_TABLE} ({', '.join(f'{n} {t}' for n, t in CACHE_COLUMNS)})",
    ]


def insert_statement() -> str:
    marks = ", ".join("?" for _ in COLUMN_NAMES)
    return f"INSERT OR IGNORE INTO {TABLE} ({', '.join(COLUMN_NAMES)}) VALUES ({marks})"


def markdown_table() -> str:
    """The schema as the README's table (tests/test_ledger.py checks the README carries it)."""
    lines = ["| column | type | meaning |", "| --- | --- | --- |"]
    lines += [f"| `{name}` | {sqltype} | {doc} |" for name, sqltype, doc in COLUMNS]
    return "\n".join(lines)
