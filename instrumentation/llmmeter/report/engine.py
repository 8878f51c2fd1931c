"""Running a report query on one of the engines; rows come back as dicts keyed by the query's fields."""

from __future__ import annotations

import json
from typing import Any

from llmmeter.ledger.schema import ROLLUP_KEYS
from llmmeter.report import clickhouse, queries
from llmmeter.report.queries import Query


def _dicts(query: Query, rows: list[Any]) -> list[dict[str, Any]]:
    return [dict(zip(query.fields, row, strict=True)) for row in rows]


def on_sqlite(store: Any, query: Query) -> list[dict[str, Any]]:
    """On an open ledger store (its ``calls`` view). ``top`` by a rolled-up key reads the rollups (daily, and
    hourly for the hours not folded into days) when the store's hourly ones are complete (same rows, without a
    scan of every call)."""
    top_by = getattr(query, "top_by", None)
    if top_by is not None and store.rollup_ready and top_by[0] in ROLLUP_KEYS:
        query = queries.top_rollup(top_by[0], top_by[1], store.since_ns, store.until_ns,
                                   tuple(store.rollup_tables))
    return _dicts(query, store.conn.execute(query.sql, query.params).fetchall())


def on_clickhouse_http(url: str, query: Query, table: str, since_ns: int | None, until_ns: int | None,
                       ) -> list[dict[str, Any]]:
    """On a ClickHouse server (HTTP interface), over the exporter's ``otel_traces`` table."""
    sql = clickhouse.compose(query, table, since_ns, until_ns)
    return _dicts(query, clickhouse.run_http(url, sql, table))


def on_chdb(session: Any, query: Query, table: str, since_ns: int | None = None, until_ns: int | None = None,
            ) -> list[dict[str, Any]]:
    """On chDB (ClickHouse's engine in-process): the same text the server path sends."""
    sql = clickhouse.compose(query, table, since_ns, until_ns)
    result = session.query(sql, "JSONCompact")
    text = result.bytes().decode() if hasattr(result, "bytes") else str(result)
    data = json.loads(text)["data"] if text.strip() else []
    return _dicts(query, data)

