"""The reports at scale: the same queries over the collector's ClickHouse ``otel_traces`` table.

Spans reach ClickHouse through the OpenTelemetry Collector's own ``clickhouse`` exporter (pipeline in
``collector/clickhouse.yaml``). Its traces table is :data:`OTEL_TRACES_DDL`: the exporter's template
``exporter/clickhouseexporter/internal/sql_templates/traces_table.sql`` (opentelemetry-collector-contrib,
commit ff7a94656bd04ce95228ff4282554a233ed93434) with database/table, engine ``MergeTree()`` and no TTL
filled in; :data:`OTEL_TRACES_DDL_2BF6B9E` is the newer template's table (``internal/sqltemplates``).
Every span attribute is a string in the ``SpanAttributes`` map; :func:`calls_cte` turns the
inference spans back into the ledger's columns (``llmmeter.ledger.schema``) so :mod:`llmmeter.report.queries`
runs unchanged. The tests run each report on chDB (ClickHouse's engine in-process) over a table made with
exactly this DDL.

What this path does not have that the embedded ledger has: calls the trace sampler dropped (only exported
spans arrive), local pricing of other instrumentors' spans (only the ``gen_ai.usage.cost`` a span carries), and
the processor's choice between nested spans of one call (both instrumentors' spans arrive; run one).

``--clickhouse URL`` talks to the server's HTTP interface (``http://host:8123``) with the standard library.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from llmmeter import names
from llmmeter.report.queries import Query

DEFAULT_TABLE = "otel.otel_traces"
_TABLE_OK = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")

def _traces_ddl(timestamp_codec: str, duration_codec: str, alias_columns: str, extra_index: str, keys: str) -> str:
    """One version of the exporter's traces-table DDL (``{table}`` left to fill): the columns and indexes every
    version has, with the codecs, ALIAS columns, extra index and key clauses where the versions differ."""
    return f"""CREATE TABLE IF NOT EXISTS {{table}} (
    Timestamp DateTime64(9) CODEC({timestamp_codec}, ZSTD(1)),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    ParentSpanId String CODEC(ZSTD(1)),
    TraceState String CODEC(ZSTD(1)),
    SpanName LowCardinality(String) CODEC(ZSTD(1)),
    SpanKind LowCardinality(String) CODEC(ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    ResourceAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion String CODEC(ZSTD(1)),
    SpanAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    Duration UInt64 CODEC({duration_codec}ZSTD(1)),
    StatusCode LowCardinality(String) CODEC(ZSTD(1)),
    StatusMessage String CODEC(ZSTD(1)),
    Events Nested (
        Timestamp DateTime64(9),
        Name LowCardinality(String),
        Attributes Map(LowCardinality(String), String)
    ) CODEC(ZSTD(1)),
    Links Nested (
        TraceId String,
        SpanId String,
        TraceState String,
        Attributes Map(LowCardinality(String), String)
    ) CODEC(ZSTD(1)),{alias_columns}
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_span_attr_key mapKeys(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_span_attr_value mapValues(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_duration Duration TYPE minmax GRANULARITY 1{extra_index}
) ENGINE = MergeTree()
PARTITION BY toDate(Timestamp)
{keys}"""


OTEL_TRACES_DDL = _traces_ddl(
    "Delta", "", "", "",
    "ORDER BY (ServiceName, SpanName, toDateTime(Timestamp))\n"
    "SETTINGS index_granularity=8192, ttl_only_drop_parts = 1")


# The same table as created by the exporter's newer template, ``internal/sqltemplates/traces_table.sql``
# (contrib commit 2bf6b9e1f8c8716ab54eaac1635e56b4d0649900, the branch without full-text indexes): Delta(8) and
# T64 codecs, two ALIAS columns, a lower(SpanName) index, PRIMARY KEY. The columns the reports read are the
# same; the tests run every report on both DDLs.
OTEL_TRACES_DDL_2BF6B9E = _traces_ddl(
    "Delta(8)", "T64, ",
    """
    ResourceAttributeItems Array(String) ALIAS arrayMap(kv -> concat(kv.1, '=', kv.2),
        CAST(ResourceAttributes, 'Array(Tuple(String, String))')),
    SpanAttributeItems Array(String) ALIAS arrayMap(kv -> concat(kv.1, '=', kv.2),
        CAST(SpanAttributes, 'Array(Tuple(String, String))')),""",
    ",\n    INDEX idx_lower_span_name lower(SpanName) TYPE tokenbf_v1(32768, 3, 0) GRANULARITY 8",
    "PRIMARY KEY (ServiceName, SpanName, toDateTime(Timestamp))\n"
    "ORDER BY (ServiceName, SpanName, toDateTime(Timestamp), Timestamp)\n"
    "SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1")
EXPORTER_DDLS: dict[str, str] = {"ff7a946": OTEL_TRACES_DDL, "2bf6b9e": OTEL_TRACES_DDL_2BF6B9E}


class ClickHouseError(RuntimeError):
    """The server could not be reached, or the table is not there: the message is one line naming which."""


def check_table(table: str) -> str:
    if not _TABLE_OK.match(table):
        raise ValueError(f"--table {table!r}: expected [database.]table")
    return table


def _a(name: str) -> str:
    return f"SpanAttributes['{name}']"


def _text(name: str) -> str:
    return f"nullIf({_a(name)}, '')"


def _count(name: str, legacy: str | None = None) -> str:
    value = _text(name) if legacy is None else f"coalesce({_text(name)}, {_text(legacy)})"
    return f"toInt64OrNull({value})"


def calls_cte(table: str, since_ns: int | None = None, until_ns: int | None = None) -> str:
    """``calls AS (...)``: the ledger's columns (plus ``day``) from the inference spans of ``table``."""
    check_table(table)
    operations = ", ".join(f"'{op}'" for op in sorted(names.INFERENCE_OPERATIONS))
    where = [f"{_a(names.OPERATION)} IN ({operations})"]
    if since_ns is not None:
        where.append(f"Timestamp >= fromUnixTimestamp64Nano(toInt64({int(since_ns)}))")
    if until_ns is not None:
        where.append(f"Timestamp < fromUnixTimestamp64Nano(toInt64({int(until_ns)}))")
    prefix = names.ATTRIBUTION_SPAN_PREFIX
    from llmmeter.ledger import schema

    attribution = ",\n    ".join(f"{_text(prefix + key)} AS {key}" for key in schema.ATTRIBUTION_COLUMNS)
    priced_attr, cost_attr = _a(names.LLMMETER_PRICED), _a(names.COST_USD)
    return f"""calls AS (
  SELECT
    toInt64(toUnixTimestamp64Nano(Timestamp)) AS start_ns,
    toInt64(toUnixTimestamp64Nano(Timestamp)) + toInt64(Duration) AS end_ns,
    TraceId AS trace_id, SpanId AS span_id, nullIf(ParentSpanId, '') AS parent_span_id, 1 AS sampled,
    nullIf(ServiceName, '') AS service,
    coalesce({_text(names.PROVIDER)}, {_text(names.LEGACY_SYSTEM)}) AS provider,
    {_text(names.OPERATION)} AS operation,
    {_text(names.REQUEST_MODEL)} AS request_model,
    {_text(names.RESPONSE_MODEL)} AS response_model,
    coalesce(request_model, response_model) AS model,
    {_count(names.USAGE_INPUT_TOKENS, names.LEGACY_USAGE_PROMPT_TOKENS)} AS input_tokens,
    {_count(names.USAGE_OUTPUT_TOKENS, names.LEGACY_USAGE_COMPLETION_TOKENS)} AS output_tokens,
    coalesce({_count(names.USAGE_CACHE_READ_TOKENS)}, 0) AS cache_read_tokens,
    coalesce({_count(names.USAGE_CACHE_CREATION_TOKENS)}, 0) AS cache_creation_tokens,
    coalesce({_count(names.LLMMETER_CACHE_WRITE_1H_TOKENS)}, 0) AS cache_creation_1h_tokens,
    coalesce({_count(names.USAGE_REASONING_TOKENS)}, 0) AS reasoning_tokens,
    if(input_tokens IS NULL AND output_tokens IS NULL, 0, 1) AS has_usage,
    if({_a(names.LLMMETER_ESTIMATED)} = 'true', 1, 0) AS estimated,
    {_text(names.LLMMETER_ESTIMATED_REASON)} AS estimate_reason,
    multiIf({priced_attr} = 'true', toFloat64OrNull({cost_attr}),
            {priced_attr} = 'false', CAST(NULL AS Nullable(Float64)),
            toFloat64OrNull({cost_attr}) > 0, toFloat64OrNull({cost_attr}),
            has_usage = 0 AND status != 'ok', 0.0,
            CAST(NULL AS Nullable(Float64))) AS cost_usd,
    if(cost_usd IS NULL, 0, 1) AS priced,
    multiIf({priced_attr} = 'true', 'local', toFloat64OrNull({cost_attr}) > 0, 'foreign',
            CAST(NULL AS Nullable(String))) AS cost_source,
    {_text(names.LLMMETER_PRICE_TABLE_VERSION)} AS price_table_version,
    {_text(names.LLMMETER_PRICE_MODEL)} AS price_model,
    CAST(NULL AS Nullable(Float64)) AS cache_saved_usd,
    if({_a(names.LLMMETER_BLOCKED)} = 'true', 'blocked',
       if({_a(names.ERROR_TYPE)} != '' OR StatusCode = 'Error', 'error', 'ok')) AS status,
    {_text(names.ERROR_TYPE)} AS error_type,
    Duration / 1e9 AS duration_s,
    toFloat64OrNull({_text(names.TIME_TO_FIRST_CHUNK)}) AS time_to_first_chunk_s,
    {_text(names.RUN_ID)} AS agent_run_id,
    {_text(names.AGENT_NAME)} AS agent_name,
    {_text(names.TOOL_NAME)} AS tool_name,
    {attribution},
    toJSONString(mapApply((ak, av) -> (substring(ak, {len(prefix) + 1}), av),
                          mapFilter((ak, av) -> startsWith(ak, '{prefix}'), SpanAttributes))) AS attrs,
    0 AS schema_version,
    toString(toDate(Timestamp)) AS day
  FROM {table}
  WHERE {' AND '.join(where)}
)"""


def compose(query: Query, table: str, since_ns: int | None = None, until_ns: int | None = None) -> str:
    """The query's text with ``calls`` defined over ``table``: its own CTEs follow ``calls``."""
    sql = query.sql.strip()
    cte = calls_cte(table, since_ns, until_ns)
    # 64-bit integers as JSON numbers (ClickHouse quotes them by default): the rows match SQLite's.
    settings = "\nSETTINGS output_format_json_quote_64bit_integers = 0"
    if sql.upper().startswith("WITH "):
        return f"WITH {cte},\n{sql[5:]}{settings}"
    return f"WITH {cte}\n{sql}{settings}"


def run_http(url: str, sql: str, table: str, timeout_s: float = 30.0) -> list[list[Any]]:
    """Run ``sql`` on the ClickHouse server at ``url`` (HTTP interface); rows as lists. One-line errors."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ClickHouseError(f"--clickhouse {url!r}: expected http(s)://host:8123 (the HTTP interface)")
    request = urllib.request.Request(url, data=(sql + "\nFORMAT JSONCompact").encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as error:
        detail = error.read().decode("utf-8", "replace")
        if "UNKNOWN_TABLE" in detail or "UNKNOWN_DATABASE" in detail:
            raise ClickHouseError(f"ClickHouse at {url}: table {table} does not exist "
                                  "(is the collector's clickhouse exporter writing to it?)") from None
        first = detail.strip().splitlines()[0] if detail.strip() else f"HTTP {error.code}"
        raise ClickHouseError(f"ClickHouse at {url}: query failed: {first[:300]}") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise ClickHouseError(f"ClickHouse at {url}: unreachable ({reason})") from None
    return [list(row) for row in body.get("data", [])]
