"""Reading a ledger directory: one SQLite connection with a ``calls`` view over every ledger file in it.

The view has :data:`schema.COLUMN_NAMES` plus ``day`` (the call's UTC date, ``YYYY-MM-DD``), restricted to the
time window asked for; the ClickHouse path (:mod:`llmmeter.report.clickhouse`) builds the same relation from
``otel_traces``, so the report queries (:mod:`llmmeter.report.queries`) are the same text on both.

Besides ``ledger.sqlite`` (what the writer writes) a directory may hold other ``*.sqlite`` ledger files (copied
from other hosts, older schema versions): each is attached and unioned; one that cannot be read (corrupt,
truncated, not a ledger) is named in :attr:`LedgerStore.problems` and left out, and the rest are still read.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from llmmeter.ledger import schema
from llmmeter.ledger.writer import FILE_NAME

MAX_FILES = 10  # SQLite's compiled-in SQLITE_MAX_ATTACHED (10 on Debian's build) bounds the files one view unions
DAY_SQLITE = "strftime('%Y-%m-%d', start_ns / 1000000000, 'unixepoch')"


class LedgerNotFound(FileNotFoundError):
    """The ledger directory has no readable ledger file."""


@dataclass
class LedgerStore:
    """An open ledger directory (see the module docstring)."""

    conn: sqlite3.Connection
    files: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    since_ns: int | None = None
    until_ns: int | None = None
    # True when every file's hourly rollup covers all its rows: then the TEMP view `calls_hourly` unions them.
    rollup_ready: bool = False
    # Per file: (its hourly rollup table, its daily rollup table or None, the first hour not folded into the
    # daily one or None): `top` reads each file's rollups on their own (llmmeter.report.queries.top_rollup).
    rollup_tables: list[tuple[str, str | None, int | None]] = field(default_factory=list)

    def close(self) -> None:
        self.conn.close()


def _ledger_files(directory: Path) -> list[Path]:
    main = directory / FILE_NAME
    others = sorted(p for p in directory.glob("*.sqlite") if p.name != FILE_NAME)
    return ([main] if main.exists() else []) + others


def open_store(directory: str | Path, since_ns: int | None = None, until_ns: int | None = None) -> LedgerStore:
    """Open every ledger file in ``directory`` and define the TEMP view ``calls`` over them."""
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise LedgerNotFound(f"no ledger directory {directory} (set LLMMETER_LEDGER, or pass --ledger DIR)")
    conn = sqlite3.connect(":memory:", isolation_level=None)
    store = LedgerStore(conn, since_ns=since_ns, until_ns=until_ns)
    selects: list[str] = []
    rollups: list[str] = []
    outcomes: list[str] = []
    lookups: list[str] = []
    for path in _ledger_files(directory):
        if len(store.files) >= MAX_FILES:
            store.problems.append(f"{path}: not read (more than {MAX_FILES} ledger files in {directory})")
            continue
        alias = f"f{len(store.files)}"
        try:
            conn.execute(f"ATTACH DATABASE ? AS {alias}", (str(path),))
            have = {row[1] for row in conn.execute(f"PRAGMA {alias}.table_info({schema.TABLE})")}
            if not have:
                raise sqlite3.DatabaseError(f"no {schema.TABLE} table")
            conn.execute(f"SELECT start_ns FROM {alias}.{schema.TABLE} ORDER BY rowid DESC LIMIT 1").fetchall()
        except sqlite3.Error as error:
            store.problems.append(f"{path}: skipped, not a readable ledger file ({error})")
            try:
                conn.execute(f"DETACH DATABASE {alias}")
            except sqlite3.Error:
                pass
            continue
        store.files.append(path)
        cols = ", ".join(name if name in have else f"NULL AS {name}" for name in schema.COLUMN_NAMES)
        selects.append(f"SELECT {cols} FROM {alias}.{schema.TABLE}")
        have_outcomes = {row[1] for row in conn.execute(f"PRAGMA {alias}.table_info({schema.OUTCOMES_TABLE})")}
        if have_outcomes:
            ocols = ", ".join(n if n in have_outcomes else f"NULL AS {n}" for n in schema.OUTCOME_COLUMN_NAMES)
            outcomes.append(f"SELECT {ocols} FROM {alias}.{schema.OUTCOMES_TABLE}")
        have_lookups = {row[1] for row in conn.execute(f"PRAGMA {alias}.table_info({schema.CACHE_TABLE})")}
        if have_lookups:
            lcols = ", ".join(n if n in have_lookups else f"NULL AS {n}" for n in schema.CACHE_COLUMN_NAMES)
            lookups.append(f"SELECT {lcols} FROM {alias}.{schema.CACHE_TABLE}")
        if _rollup_complete(conn, alias):
            rollups.append(f"SELECT * FROM {alias}.{schema.ROLLUP_TABLE}")
            store.rollup_tables.append((f"{alias}.{schema.ROLLUP_TABLE}", *_daily_rollup(conn, alias)))
    if not selects:
        conn.close()
        detail = "; ".join(store.problems) if store.problems else "no ledger file"
        raise LedgerNotFound(f"no readable ledger in {directory}: {detail}")
    where = []
    if since_ns is not None:
        where.append(f"start_ns >= {int(since_ns)}")
    if until_ns is not None:
        where.append(f"start_ns < {int(until_ns)}")
    if len(rollups) == len(selects):
        conn.execute(f"CREATE TEMP VIEW calls_hourly AS {' UNION ALL '.join(rollups)}")
        store.rollup_ready = True
    if not outcomes:  # no file has outcomes yet: an empty relation with the columns
        outcomes.append("SELECT " + ", ".join(f"NULL AS {n}" for n in schema.OUTCOME_COLUMN_NAMES) + " WHERE 0")
    window = " AND ".join(w.replace("start_ns", "time_ns") for w in where)
    conn.execute(f"CREATE TEMP VIEW outcomes AS SELECT * FROM ({' UNION ALL '.join(outcomes)})"
                 + (f" WHERE {window}" if window else ""))
    if not lookups:
        lookups.append("SELECT " + ", ".join(f"NULL AS {n}" for n in schema.CACHE_COLUMN_NAMES) + " WHERE 0")
    conn.execute(f"CREATE TEMP VIEW cache_lookups AS SELECT * FROM ({' UNION ALL '.join(lookups)})"
                 + (f" WHERE {window}" if window else ""))
    union = "\nUNION ALL\n".join(selects)
    # Every row, no window: `top` from the rollups reads its window's partial edge hours from it, each as ONE
    # start_ns range (over `calls`, SQLite would range-scan by the window's bound and filter by the edge's).
    conn.execute(f"CREATE TEMP VIEW calls_unwindowed AS {union}")
    conn.execute(
        f"CREATE TEMP VIEW calls AS SELECT *, {DAY_SQLITE} AS day FROM ({union})"
        + (f" WHERE {' AND '.join(where)}" if where else "")
    )
    return store


def _rollup_complete(conn: sqlite3.Connection, alias: str) -> bool:
    """Whether the file's hourly rollup sums every row of it (see llmmeter.ledger.schema)."""
    try:
        found = conn.execute(f"SELECT value FROM {alias}.{schema.META_TABLE} WHERE key = ?",
                             (schema.ROLLUP_UPTO,)).fetchone()
        last = conn.execute(f"SELECT COALESCE(MAX(rowid), 0) FROM {alias}.{schema.TABLE}").fetchone()[0]
        conn.execute(f"SELECT 1 FROM {alias}.{schema.ROLLUP_TABLE} LIMIT 1").fetchall()
    except sqlite3.Error:  # an older file: no rollup or no meta table
        return False
    return last == 0 or (found is not None and int(found[0]) == last)


def _daily_rollup(conn: sqlite3.Connection, alias: str) -> tuple[str | None, int | None]:
    """The file's daily rollup table and the first hour not folded into it; (None, None) when it has none (a
    file no writer of this version has rolled up yet). Read before the report's statement, which may see a
    later snapshot: the mark only moves forward and a fold leaves the hourly rows as they are, so days before
    an older mark from the daily table plus the hours after it from the hourly one still count each call once."""
    try:
        found = conn.execute(f"SELECT value FROM {alias}.{schema.META_TABLE} WHERE key = ?",
                             (schema.DAILY_UPTO,)).fetchone()
        conn.execute(f"SELECT 1 FROM {alias}.{schema.DAILY_TABLE} LIMIT 1").fetchall()
    except sqlite3.Error:
        return None, None
    if found is None:
        return None, None
    return f"{alias}.{schema.DAILY_TABLE}", int(found[0])
