"""The ledger's daily rollup: folded from the hourly one, kept exact when calls arrive late, migrated into
files an older llmmeter wrote, and read by ``top`` so that every window gives the row scan's numbers.

Expected numbers are summed here in Python from the calls listed below (costs are binary fractions, so sums
in any order are exact), and compared with the report read from the rollups and with the report's row scan.
"""

from __future__ import annotations

import shutil
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

import pytest
from llmmeter.ledger import FILE_NAME, schema
from llmmeter.ledger.store import open_store
from llmmeter.ledger.writer import LedgerWriter, connect, fold_day, roll_up
from llmmeter.report import engine, queries

HOUR = 3_600_000_000_000


def ns(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()) * 1_000_000_000


# (start, user, input tokens, output tokens, cost USD or None when unpriced). Three UTC days of 2025-11.
CALLS = [
    ("2025-11-20T09:15:00", "ann", 100, 10, 0.25),
    ("2025-11-20T09:45:00", "bob", 200, 20, 0.5),
    ("2025-11-20T23:59:59", "ann", 300, 30, 0.125),
    ("2025-11-21T00:00:00", "bob", 400, 40, 1.0),
    ("2025-11-21T12:30:00", "ann", 500, 50, None),
    ("2025-11-21T12:31:00", "cy", 600, 60, 2.0),
    ("2025-11-22T05:00:00", "ann", 700, 70, 0.0625),
    ("2025-11-22T06:10:00", "bob", 800, 80, 4.0),
]
LATE = ("2025-11-20T10:05:00", "cy", 900, 90, 0.375)  # arrives after 2025-11-20 was folded
NOW = ns("2025-11-22T08:00:00")  # the writer's clock: 20 and 21 are over, 22 is today


def row(i: int, call: tuple) -> tuple:
    start, user, tin, tout, cost = call
    values = dict.fromkeys(schema.COLUMN_NAMES)
    values.update(start_ns=ns(start), trace_id=f"{i:032x}", span_id=f"{i:016x}", user=user, input_tokens=tin,
                  output_tokens=tout, cost_usd=cost, priced=0 if cost is None else 1, has_usage=1, status="ok",
                  schema_version=schema.SCHEMA_VERSION)
    return tuple(values[name] for name in schema.COLUMN_NAMES)


def expected(calls: list[tuple], since: int | None = None, until: int | None = None) -> dict[str, tuple]:
    """Per user, by hand: (calls, input, output, cost, unpriced calls) of the calls in [since, until)."""
    out: dict[str, list] = {}
    for start, user, tin, tout, cost in calls:
        t = ns(start)
        if (since is None or t >= since) and (until is None or t < until):
            acc = out.setdefault(user, [0, 0, 0, 0.0, 0])
            acc[0] += 1
            acc[1] += tin
            acc[2] += tout
            acc[3] += cost or 0.0
            acc[4] += cost is None
    return {user: tuple(acc) for user, acc in out.items()}


def report(directory: Path, since: int | None = None, until: int | None = None) -> tuple[dict, dict, object]:
    """``top --by user`` (every user) as the report reads it (rollups when complete) and as the row scan."""
    store = open_store(directory, since, until)
    try:
        query = queries.top("user", 1000, "sqlite")
        read = engine.on_sqlite(store, query)
        scan = [dict(zip(query.fields, r, strict=True)) for r in store.conn.execute(query.sql).fetchall()]
        files = list(store.rollup_tables)
    finally:
        store.close()

    def by_user(rows: list[dict]) -> dict:
        return {r["key"]: (r["calls"], r["input_tokens"], r["output_tokens"], r["cost_usd"], r["unpriced_calls"])
                for r in rows}
    return by_user(read), by_user(scan), files


def write(path: Path, calls: list[tuple], first: int = 0, now_ns: int = NOW) -> None:
    conn = connect(path)
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(schema.insert_statement(), [row(first + i, c) for i, c in enumerate(calls)])
    assert roll_up(conn, now_ns=now_ns)
    conn.execute("COMMIT")
    conn.close()


def daily_rows(path: Path, key: str = "user") -> dict[tuple[int, str], tuple]:
    conn = sqlite3.connect(path)
    try:
        return {(day, value): (calls, tin, cost, unpriced) for day, value, calls, tin, cost, unpriced in conn.execute(
            f"SELECT day, value, calls, input_tokens, cost_usd, unpriced_calls FROM {schema.DAILY_TABLE} "
            "WHERE key = ?", (key,))}
    finally:
        conn.close()


def mark(path: Path) -> int | None:
    conn = sqlite3.connect(path)
    try:
        found = conn.execute(f"SELECT value FROM {schema.META_TABLE} WHERE key = ?", (schema.DAILY_UPTO,)).fetchone()
    finally:
        conn.close()
    return None if found is None else int(found[0])


D20, D21, D22 = (ns(f"2025-11-{d}T00:00:00") // HOUR // 24 for d in (20, 21, 22))


def test_days_fold_one_per_transaction_and_late_calls_reach_both_rollups(tmp_path):
    path = tmp_path / FILE_NAME
    write(path, CALLS)  # the first batch: the mark starts at 2025-11-20 and that day is folded
    assert mark(path) == D21 * 24
    assert daily_rows(path) == {(D20, "ann"): (2, 400, 0.375, 0), (D20, "bob"): (1, 200, 0.5, 0)}
    conn = connect(path)
    conn.execute("BEGIN IMMEDIATE")
    assert fold_day(conn, NOW) is False  # 2025-11-21 folded now
    assert fold_day(conn, NOW) is True  # 2025-11-22 is the writer's today: stays hourly only
    conn.execute("COMMIT")
    conn.close()
    assert mark(path) == D22 * 24
    write(path, [LATE], first=100)  # a call of an hour already folded: into the hourly AND the daily rollup
    assert daily_rows(path) == {
        (D20, "ann"): (2, 400, 0.375, 0), (D20, "bob"): (1, 200, 0.5, 0), (D20, "cy"): (1, 900, 0.375, 0),
        (D21, "bob"): (1, 400, 1.0, 0), (D21, "ann"): (1, 500, 0.0, 1), (D21, "cy"): (1, 600, 2.0, 0)}
    read, scan, files = report(tmp_path)
    assert files == [(f"f0.{schema.ROLLUP_TABLE}", f"f0.{schema.DAILY_TABLE}", D22 * 24)]
    assert read == scan == expected([*CALLS, LATE])


@pytest.mark.parametrize("since, until", [
    (None, None),
    ("2025-11-20T09:30:00", None),  # partial hour, rest of a folded day, a whole folded day, today's hours
    (None, "2025-11-21T12:30:30"),  # a whole folded day, then hours and a partial hour of the next
    ("2025-11-20T10:00:00", "2025-11-22T06:00:00"),  # whole hours on both sides of the days
    ("2025-11-21T00:00:00", "2025-11-22T00:00:00"),  # exactly one folded day
    ("2025-11-21T12:30:30", "2025-11-21T12:31:30"),  # inside one hour: the rows only
    ("2025-11-23T00:00:00", None),  # after every call
])
def test_top_from_the_rollups_equals_the_row_scan_in_every_window(tmp_path, since, until):
    path = tmp_path / FILE_NAME
    write(path, CALLS)
    write(path, [LATE], first=100, now_ns=ns("2025-11-23T01:00:00"))  # folds 2025-11-21 (one day per batch)
    assert mark(path) == D22 * 24
    lo = None if since is None else ns(since)
    hi = None if until is None else ns(until)
    read, scan, _files = report(tmp_path, lo, hi)
    assert read == scan == expected([*CALLS, LATE], lo, hi)


def test_a_file_without_the_daily_rollup_is_read_then_migrated(tmp_path):
    """A file an older llmmeter wrote: hourly rollup complete, no daily table, no mark. Read as it is (hourly
    only), copied next to it as another host's file; then today's writer opens it and adds the daily rollup."""
    path = tmp_path / FILE_NAME
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in schema.create_statements():
        if schema.DAILY_TABLE not in statement:
            conn.execute(statement)
    conn.executemany(schema.insert_statement(), [row(i, c) for i, c in enumerate(CALLS)])
    for statement in schema.rollup_statements():
        conn.execute(statement, (0, len(CALLS)))
    conn.execute(f"INSERT INTO {schema.META_TABLE} VALUES (?, ?)", (schema.ROLLUP_UPTO, str(len(CALLS))))
    conn.close()
    read, scan, files = report(tmp_path)
    assert files == [(f"f0.{schema.ROLLUP_TABLE}", None, None)]
    assert read == scan == expected(CALLS)
    shutil.copy(path, tmp_path / "other-host.sqlite")

    writer = LedgerWriter(tmp_path)  # today's clock: 2025-11-20 is long over
    writer.add(row(100, LATE))
    writer.close()
    assert mark(path) == D21 * 24  # one day folded in the writer's first batch
    assert daily_rows(path)[(D20, "cy")] == (1, 900, 0.375, 0)
    read, scan, files = report(tmp_path)
    assert files == [(f"f0.{schema.ROLLUP_TABLE}", f"f0.{schema.DAILY_TABLE}", D21 * 24),
                     (f"f1.{schema.ROLLUP_TABLE}", None, None)]
    twice = {user: tuple(2 * v for v in acc) for user, acc in expected(CALLS).items()}  # both files have CALLS
    late = expected([LATE])["cy"]
    twice["cy"] = tuple(a + b for a, b in zip(twice["cy"], late, strict=True))
    assert read == scan == twice
    for window in ((ns("2025-11-20T09:30:00"), ns("2025-11-21T12:31:00")), (ns("2025-11-21T00:00:00"), None)):
        read, scan, _files = report(tmp_path, *window)
        assert read == scan
