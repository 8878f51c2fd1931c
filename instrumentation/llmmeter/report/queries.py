"""The reports as SQL over a relation named ``calls`` (the ledger's columns plus ``day``).

One text per report runs on both engines: the embedded ledger (SQLite, where ``calls`` is a TEMP view over
the ledger files, :mod:`llmmeter.ledger.store`) and ClickHouse (where ``calls`` is a CTE over the collector's
``otel_traces`` table, :mod:`llmmeter.report.clickhouse`). The only per-dialect piece is how a custom
attribution key (one without a column of its own) is read from ``attrs`` (:func:`key_expression`).
So the text sticks to what both dialects share: CTEs, window functions with ROWS frames, COALESCE/NULLIF,
CASE; result aliases never reuse a column name (ClickHouse resolves aliases before columns).

Each :class:`Query` says which output field each result column is (``fields``), so the renderers and the
JSON output never depend on SQL aliases.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from llmmeter.ledger import schema

SQLITE = "sqlite"
CLICKHOUSE = "clickhouse"
_KEY_OK = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
# `top --by` names that are not attribution keys, and the column each reads.
KEY_COLUMNS: dict[str, str] = {
    "model": "model",
    "provider": "provider",
    "agent": "agent_name",
    "service": "service",
    "operation": "operation",
    "status": "status",
    "response_model": "response_model",
    **{key: key for key in schema.ATTRIBUTION_COLUMNS},
}
NONE_KEY = "(none)"
TOP_FIELDS = ("key", "calls", "input_tokens", "output_tokens", "cache_read_tokens", "cache_creation_tokens",
              "reasoning_tokens", "cost_usd", "share", "unpriced_calls")


@dataclass(frozen=True)
class Query:
    name: str
    sql: str
    fields: tuple[str, ...]  # output field name of each result column, in order
    params: tuple[object, ...] = ()
    top_by: tuple[str, int] | None = None  # (key, limit) of a `top` query: the embedded rollup can answer it


def key_expression(key: str, dialect: str) -> str:
    """The SQL expression for a ``--by`` key: its column, else the custom attribution key read from ``attrs``."""
    column = KEY_COLUMNS.get(key)
    if column is not None:
        return column
    if not _KEY_OK.match(key):
        raise ValueError(f"--by {key!r}: a key is an attribution key ({_KEY_OK.pattern}) or one of "
                         f"{', '.join(sorted(KEY_COLUMNS))}")
    if dialect == CLICKHOUSE:
        return f"nullIf(JSONExtractString(attrs, '{key}'), '')"
    return f"json_extract(attrs, '$.\"{key}\"')"


def top(key: str, limit: int, dialect: str) -> Query:
    """Calls, tokens by type, cost and share of the total cost per value of ``key``, costliest first."""
    k = key_expression(key, dialect)
    sql = f"""
SELECT COALESCE({k}, '{NONE_KEY}') AS k,
       COUNT(*) AS n_calls,
       SUM(COALESCE(input_tokens, 0)) AS sum_input,
       SUM(COALESCE(output_tokens, 0)) AS sum_output,
       SUM(COALESCE(cache_read_tokens, 0)) AS sum_cache_read,
       SUM(COALESCE(cache_creation_tokens, 0)) AS sum_cache_creation,
       SUM(COALESCE(reasoning_tokens, 0)) AS sum_reasoning,
       SUM(COALESCE(cost_usd, 0)) AS sum_cost,
       SUM(COALESCE(cost_usd, 0)) / NULLIF((SELECT SUM(COALESCE(cost_usd, 0)) FROM calls), 0) AS cost_share,
       SUM(CASE WHEN priced = 0 THEN 1 ELSE 0 END) AS n_unpriced
FROM calls
GROUP BY k
ORDER BY sum_cost DESC, n_calls DESC, k
LIMIT {int(limit)}"""
    return Query("top", sql, TOP_FIELDS, top_by=(key, limit))


_SUMS_OF_ROLLUP = """SUM(calls) AS n, SUM(input_tokens) AS tin, SUM(output_tokens) AS tout,
         SUM(cache_read_tokens) AS tcr, SUM(cache_creation_tokens) AS tcc, SUM(reasoning_tokens) AS tr,
         SUM(cost_usd) AS usd, SUM(unpriced_calls) AS nu"""


def _range(column: str, lo: int | None, hi: int | None) -> str | None:
    """``lo <= column < hi`` (a missing bound is open); None when the range is empty."""
    if lo is not None and hi is not None and lo >= hi:
        return None
    return " AND ".join([*([f"{column} >= {lo}"] if lo is not None else []),
                         *([f"{column} < {hi}"] if hi is not None else [])])


def top_rollup(key: str, limit: int, since_ns: int | None, until_ns: int | None,
               files: tuple[tuple[str, str | None, int | None], ...]) -> Query:
    """``top`` from the embedded ledger's rollups (SQLite only), same result as :func:`top` without reading
    every call. Per ledger file (``files``: hourly table, daily table or None, first hour not folded into the
    daily one): the window's whole days before that mark from the daily rollup, its other whole hours from the
    hourly one; the calls of its partial first and last hour from the rows (``calls_unwindowed``).

    Each part is grouped on its own and the parts' groups are added up; the share's denominator is a window
    over those groups (``SUM(SUM(usd)) OVER ()``), not a second pass."""
    from llmmeter.ledger.schema import DAY_HOURS, HOUR_NS, ROLLUP_KEYS

    column = ROLLUP_KEYS[key]
    h0 = None if since_ns is None else -(-int(since_ns) // HOUR_NS)  # first whole hour in the window
    h1 = None if until_ns is None else int(until_ns) // HOUR_NS  # first hour not wholly in it
    parts: list[str] = []

    def add(table: str, where: str | None) -> None:
        if where is not None:
            parts.append(f"SELECT value AS k, {_SUMS_OF_ROLLUP}\n  FROM {table} WHERE key = '{key}'"
                         f"{f' AND {where}' if where else ''} GROUP BY value")

    for hourly, daily, mark in files:
        d0 = None if h0 is None else -(-h0 // DAY_HOURS)  # first whole day in the window
        d1 = None if mark is None else mark // DAY_HOURS if h1 is None else min(mark, h1) // DAY_HOURS
        if daily is None or d1 is None or (d0 is not None and d1 <= d0):
            add(hourly, _range("hour", h0, h1))
            continue
        add(daily, _range("day", d0, d1))  # days [d0, d1); the hours around them from the hourly table
        if d0 is not None:
            add(hourly, _range("hour", h0, d0 * DAY_HOURS))
        add(hourly, _range("hour", d1 * DAY_HOURS, h1))
    # The partial first and last hour from the rows, each one range of the start_ns index (`calls_unwindowed`:
    # over `calls` the window's own bound would be the range and the edge's a filter); the second starts no
    # earlier than the first ends, so a window inside one hour is read once.
    edges = [*([f"start_ns >= {int(since_ns)} AND start_ns < {h0 * HOUR_NS}"] if h0 is not None else []),
             *([f"start_ns >= {(h1 if h0 is None else max(h0, h1)) * HOUR_NS} AND start_ns < {int(until_ns)}"]
               if h1 is not None else [])]
    for edge in edges:
        parts.append(f"""SELECT COALESCE({column}, '{NONE_KEY}') AS k, COUNT(*) AS n,
         SUM(COALESCE(input_tokens, 0)) AS tin, SUM(COALESCE(output_tokens, 0)) AS tout,
         SUM(COALESCE(cache_read_tokens, 0)) AS tcr, SUM(COALESCE(cache_creation_tokens, 0)) AS tcc,
         SUM(COALESCE(reasoning_tokens, 0)) AS tr, SUM(COALESCE(cost_usd, 0)) AS usd,
         SUM(CASE WHEN priced = 0 THEN 1 ELSE 0 END) AS nu
  FROM calls_unwindowed WHERE {edge} GROUP BY 1""")
    if not parts:  # no file: an empty relation with the columns
        parts.append("SELECT NULL AS k, 0 AS n, 0 AS tin, 0 AS tout, 0 AS tcr, 0 AS tcc, 0 AS tr, 0.0 AS usd, 0 AS nu "
                     "WHERE 0")
    union = "\n  UNION ALL\n  ".join(parts)
    sql = f"""
WITH parts AS (
  {union}
)
SELECT k, SUM(n) AS n_calls, SUM(tin) AS sum_input, SUM(tout) AS sum_output, SUM(tcr) AS sum_cache_read,
       SUM(tcc) AS sum_cache_creation, SUM(tr) AS sum_reasoning, SUM(usd) AS sum_cost,
       SUM(usd) / NULLIF(SUM(SUM(usd)) OVER (), 0) AS cost_share, SUM(nu) AS n_unpriced
FROM parts
GROUP BY k
ORDER BY sum_cost DESC, n_calls DESC, k
LIMIT {int(limit)}"""
    return Query("top", sql, TOP_FIELDS)


def daily(dialect: str) -> Query:
    """Cost per UTC day with the change against the day before (NULL for the first day, or after a 0 day)."""
    sql = """
WITH per_day AS (
  SELECT day AS d, COUNT(*) AS n_calls, SUM(COALESCE(cost_usd, 0)) AS day_cost
  FROM calls GROUP BY d
), framed AS (
  SELECT d, n_calls, day_cost,
         SUM(day_cost) OVER (ORDER BY d ROWS BETWEEN 1 PRECEDING AND 1 PRECEDING) AS prev_sum,
         COUNT(*) OVER (ORDER BY d ROWS BETWEEN 1 PRECEDING AND 1 PRECEDING) AS prev_n
  FROM per_day
)
SELECT d, n_calls, day_cost,
       CASE WHEN prev_n = 0 THEN NULL ELSE day_cost - prev_sum END AS abs_change,
       CASE WHEN prev_n = 0 OR prev_sum = 0 THEN NULL ELSE (day_cost - prev_sum) / prev_sum END AS rel_change
FROM framed
ORDER BY d"""
    return Query("daily", sql, ("day", "calls", "cost_usd", "change_usd", "change"))


def daily_by(key: str, dialect: str) -> Query:
    """Cost per UTC day and value of ``key`` (the stacked chart of ``--html``)."""
    k = key_expression(key, dialect)
    sql = f"""
SELECT day AS d, COALESCE({k}, '{NONE_KEY}') AS k, SUM(COALESCE(cost_usd, 0)) AS day_cost
FROM calls
GROUP BY d, k
ORDER BY d, day_cost DESC, k"""
    return Query("daily_by", sql, ("day", "key", "cost_usd"))


def outcomes(key: str, dialect: str) -> Query:
    """Cost per successful outcome (llmmeter.record_outcome) per value of ``key`` (feature, agent, ...): the
    calls' cost divided by the successful outcomes recorded with the same attribution. Embedded ledger only:
    on ClickHouse an outcome is a span event, not a row."""
    if dialect != SQLITE:
        raise ValueError("outcomes: only on the embedded ledger (on ClickHouse outcomes are span events, not rows)")
    k = key_expression(key, dialect)
    sql = f"""
WITH spend AS (
  SELECT COALESCE({k}, '{NONE_KEY}') AS g, COUNT(*) AS n_calls, SUM(COALESCE(cost_usd, 0)) AS g_cost
  FROM calls GROUP BY g
), results AS (
  SELECT COALESCE({k}, '{NONE_KEY}') AS g, SUM(CASE WHEN success = 1 THEN outcome_count ELSE 0 END) AS n_ok,
         SUM(outcome_count) AS n_all
  FROM outcomes GROUP BY g
)
SELECT spend.g, spend.n_calls, spend.g_cost, COALESCE(results.n_ok, 0), COALESCE(results.n_all, 0),
       spend.g_cost / NULLIF(results.n_ok, 0) AS per_ok
FROM spend LEFT JOIN results ON results.g = spend.g
ORDER BY spend.g_cost DESC, spend.g"""
    return Query("outcomes", sql, ("key", "calls", "cost_usd", "successes", "outcomes", "cost_per_success_usd"))


def tokens(key: str, dialect: str) -> Query:
    """p50 / p95 / max of input and output tokens per value of ``key`` (nearest-rank percentiles)."""
    k = key_expression(key, dialect)
    sql = f"""
WITH base AS (
  SELECT COALESCE({k}, '{NONE_KEY}') AS g, COALESCE(input_tokens, 0) AS tin, COALESCE(output_tokens, 0) AS tout
  FROM calls WHERE has_usage = 1
), ranked AS (
  SELECT g, tin, tout,
         ROW_NUMBER() OVER (PARTITION BY g ORDER BY tin) AS rin,
         ROW_NUMBER() OVER (PARTITION BY g ORDER BY tout) AS rout,
         COUNT(*) OVER (PARTITION BY g) AS n
  FROM base
)
SELECT g, MAX(n) AS n_calls,
       MIN(CASE WHEN rin >= 0.5 * n THEN tin END) AS p50_in,
       MIN(CASE WHEN rin >= 0.95 * n THEN tin END) AS p95_in,
       MAX(tin) AS max_in,
       MIN(CASE WHEN rout >= 0.5 * n THEN tout END) AS p50_out,
       MIN(CASE WHEN rout >= 0.95 * n THEN tout END) AS p95_out,
       MAX(tout) AS max_out
FROM ranked
GROUP BY g
ORDER BY p95_in DESC, g"""
    return Query("tokens", sql, ("key", "calls", "input_p50", "input_p95", "input_max", "output_p50",
                                 "output_p95", "output_max"))


def prompts(dialect: str) -> Query:
    """Input-token footprint per prompt template and version (in order of first use), with the jump against
    the template's previous version; largest jumps first."""
    sql = f"""
WITH per_version AS (
  SELECT prompt AS p, COALESCE(prompt_version, '{NONE_KEY}') AS v, COUNT(*) AS n_calls,
         AVG(COALESCE(input_tokens, 0)) AS avg_in, SUM(COALESCE(cost_usd, 0)) AS v_cost,
         MIN(start_ns) AS first_ns, MAX(start_ns) AS last_ns
  FROM calls WHERE prompt IS NOT NULL AND has_usage = 1
  GROUP BY p, v
), framed AS (
  SELECT p, v, n_calls, avg_in, v_cost, first_ns, last_ns,
         SUM(avg_in) OVER (PARTITION BY p ORDER BY first_ns, v ROWS BETWEEN 1 PRECEDING AND 1 PRECEDING) AS prev_avg,
         COUNT(*) OVER (PARTITION BY p ORDER BY first_ns, v ROWS BETWEEN 1 PRECEDING AND 1 PRECEDING) AS prev_n
  FROM per_version
)
SELECT p, v, n_calls, avg_in,
       CASE WHEN prev_n = 0 OR prev_avg = 0 THEN NULL ELSE (avg_in - prev_avg) / prev_avg END AS jump,
       v_cost, first_ns, last_ns
FROM framed
ORDER BY COALESCE(jump, -1000000000) DESC, p, first_ns"""
    return Query("prompts", sql, ("prompt", "prompt_version", "calls", "avg_input_tokens", "jump", "cost_usd",
                                  "first_seen_ns", "last_seen_ns"))


def cache(dialect: str) -> Query:
    """Provider prompt-cache use per provider and model: share of input tokens read from the cache, and the USD
    it saved (embedded ledger; on ClickHouse the saving is not on the span, so 0)."""
    sql = f"""
SELECT COALESCE(provider, '{NONE_KEY}') AS prov, COALESCE(model, '{NONE_KEY}') AS m, COUNT(*) AS n_calls,
       SUM(COALESCE(input_tokens, 0)) AS sum_input,
       SUM(COALESCE(cache_read_tokens, 0)) AS sum_cache_read,
       SUM(COALESCE(cache_creation_tokens, 0)) AS sum_cache_creation,
       1.0 * SUM(COALESCE(cache_read_tokens, 0)) / NULLIF(SUM(COALESCE(input_tokens, 0)), 0) AS read_share,
       SUM(COALESCE(cache_saved_usd, 0)) AS sum_saved,
       SUM(COALESCE(cost_usd, 0)) AS sum_cost
FROM calls
GROUP BY prov, m
ORDER BY sum_cache_read DESC, sum_input DESC, prov, m"""
    return Query("cache", sql, ("provider", "model", "calls", "input_tokens", "cache_read_tokens",
                                "cache_creation_tokens", "cache_read_share", "saved_usd", "cost_usd"))


def app_cache(dialect: str) -> Query:
    """The app's own caches (llmmeter.record_cache): lookups, hits, hit rate, and the estimated USD the hits saved.
    Embedded ledger only (lookups are not spans)."""
    if dialect != SQLITE:
        raise ValueError("cache --app: only on the embedded ledger (app cache lookups are not spans)")
    sql = """
SELECT cache AS c, COUNT(*) AS n_lookups, SUM(hit) AS n_hits, 1.0 * SUM(hit) / COUNT(*) AS hit_rate,
       SUM(COALESCE(saved_usd, 0)) AS sum_saved,
       SUM(CASE WHEN hit = 1 AND saved_usd IS NULL THEN 1 ELSE 0 END) AS n_unpriced
FROM cache_lookups
GROUP BY c
ORDER BY sum_saved DESC, n_lookups DESC, c"""
    return Query("app_cache", sql, ("cache", "lookups", "hits", "hit_rate", "saved_usd_estimated",
                                    "hits_without_estimate"))


def unpriced(dialect: str) -> Query:
    """Calls without a known cost (no price for the model), by provider and model: what the totals miss."""
    sql = f"""
SELECT COALESCE(provider, '{NONE_KEY}') AS prov, COALESCE(model, '{NONE_KEY}') AS m, COUNT(*) AS n_calls,
       SUM(COALESCE(input_tokens, 0)) AS sum_input, SUM(COALESCE(output_tokens, 0)) AS sum_output
FROM calls WHERE priced = 0
GROUP BY prov, m
ORDER BY n_calls DESC, prov, m"""
    return Query("unpriced", sql, ("provider", "model", "calls", "input_tokens", "output_tokens"))


def estimated(dialect: str) -> Query:
    """Calls whose token counts were estimated with a tokenizer, by reason and model."""
    sql = f"""
SELECT COALESCE(estimate_reason, '{NONE_KEY}') AS reason, COALESCE(model, '{NONE_KEY}') AS m, COUNT(*) AS n_calls,
       SUM(COALESCE(input_tokens, 0)) AS sum_input, SUM(COALESCE(output_tokens, 0)) AS sum_output,
       SUM(COALESCE(cost_usd, 0)) AS sum_cost
FROM calls WHERE estimated = 1
GROUP BY reason, m
ORDER BY n_calls DESC, reason, m"""
    return Query("estimated", sql, ("reason", "model", "calls", "input_tokens", "output_tokens", "cost_usd"))


def run(trace_id: str, dialect: str) -> Query:
    """Every call of one trace (an agent run or a request), in start order."""
    if not re.fullmatch(r"[0-9a-f]{32}", trace_id):
        raise ValueError(f"TRACE_ID {trace_id!r}: expected 32 lower-case hex digits")
    sql = f"""
SELECT span_id AS s, parent_span_id AS ps, agent_run_id AS run_id, agent_name AS agent, model AS m,
       start_ns AS t0, duration_s AS dur, COALESCE(input_tokens, 0) AS tin, COALESCE(output_tokens, 0) AS tout,
       cost_usd AS usd, priced AS is_priced, status AS st, feature AS feat
FROM calls WHERE trace_id = '{trace_id}'
ORDER BY t0, s"""
    return Query("run", sql, ("span_id", "parent_span_id", "agent_run_id", "agent", "model", "start_ns",
                              "duration_s", "input_tokens", "output_tokens", "cost_usd", "priced", "status",
                              "feature"))


REPORTS = ("top", "daily", "daily_by", "outcomes", "tokens", "prompts", "cache", "unpriced", "estimated", "run")
