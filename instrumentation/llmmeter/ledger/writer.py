"""The ledger writer: rows queued by the counting path, written in batches by a thread of its own.

Engine: SQLite from the standard library, one file ``<dir>/ledger.sqlite`` in WAL mode shared by every
process of the app (gunicorn workers, multiprocessing): SQLite's file locks serialise the writers, each
batch is one transaction (so a SIGKILL loses at most the batch not yet committed, and a transaction cut
short is rolled back by the next opener: the file always opens), and ``UNIQUE (trace_id, span_id)`` with
``INSERT OR IGNORE`` makes a row written twice (a fork that copied the queue, a retried batch) one row.
Why SQLite and not DuckDB / chDB / Parquet: ``benchmarks/ledger_engines.md`` (measured).

The app never waits for it and never sees it fail:

* ``add`` is a bounded-deque append; past ``max_queued`` rows a row is dropped and counted
  (``llmmeter.ledger.dropped{llmmeter.ledger.reason="queue_full"}``), so memory stays bounded however slow
  or full the disk is;
* a batch that cannot be written (unwritable directory, full disk, locked too long) is dropped and counted
  (``reason="write_failed"``) with ONE warning per writer, and the file is re-opened on the next batch;
* after ``fork`` the child starts with an empty queue, a fresh lock and no connection (SQLite connections
  must not cross a fork), and opens the same file itself.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from llmmeter import names
from llmmeter.ledger import schema

_log = logging.getLogger("llmmeter.ledger")

FILE_NAME = "ledger.sqlite"
MAX_QUEUED = 50_000  # rows waiting at most (~25 MB at ~500 B a row); beyond: dropped and counted
BATCH = 2_000  # rows per transaction at most
FLUSH_INTERVAL_S = 1.0  # a quiet app's rows are written at most this long after the call counted them
BUSY_TIMEOUT_S = 10.0  # how long a batch waits for another process's transaction
ROLLUP_CATCH_UP = 100_000  # rows of an older file summed into the rollup per transaction, at most

REASON_QUEUE_FULL = "queue_full"
REASON_WRITE_FAILED = "write_failed"

_LIVE: weakref.WeakSet[LedgerWriter] = weakref.WeakSet()
_FORK_ORPHANS: list[Any] = []  # parents' connections in a forked child: never used, never closed (not ours)


def connect(path: Path, timeout_s: float = BUSY_TIMEOUT_S) -> sqlite3.Connection:
    """Open (creating or upgrading) a ledger file for writing."""
    conn = sqlite3.connect(str(path), timeout=timeout_s, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a committed batch survives a process kill
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in schema.create_statements():
            conn.execute(statement)
        have = {row[1] for row in conn.execute(f"PRAGMA table_info({schema.TABLE})")}
        for name, sqltype, _doc in schema.COLUMNS:
            if name not in have:  # a file written by an older llmmeter: add what this version writes
                conn.execute(f"ALTER TABLE {schema.TABLE} ADD COLUMN {name} {sqltype}")
        conn.execute(
            f"INSERT INTO {schema.META_TABLE} (key, value) VALUES ('schema_version', ?) "
            "ON CONFLICT(key) DO UPDATE SET value = max(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER))",
            (str(schema.SCHEMA_VERSION),),
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        conn.close()
        raise
    return conn


def roll_up(conn: sqlite3.Connection, limit: int = ROLLUP_CATCH_UP, allowance: int = BATCH,
            now_ns: int | None = None) -> bool:
    """Sum the rows not yet in the hourly rollup into it: all of them when at most ``limit + allowance`` (the
    batch just inserted), else the next ``limit`` (an older file catching up); rows of hours already folded
    into the daily rollup go into it too; then fold the next finished UTC day (``now_ns``: the writer's clock).
    Call inside the writing transaction. True when the hourly rollup now covers every row."""
    found = conn.execute(f"SELECT value FROM {schema.META_TABLE} WHERE key = ?", (schema.ROLLUP_UPTO,)).fetchone()
    upto = int(found[0]) if found else 0
    last = conn.execute(f"SELECT COALESCE(MAX(rowid), 0) FROM {schema.TABLE}").fetchone()[0]
    target = last
    if last > upto:
        # Rows this process inserted are all above `upto` (rowids grow); an older file catches up `limit` at a time.
        target = last if last - upto <= limit + allowance else upto + limit
        for statement in _ROLLUP_STATEMENTS:
            conn.execute(statement, (upto, target))
        mark = _meta_int(conn, schema.DAILY_UPTO)
        if mark is not None and conn.execute(
                f"SELECT 1 FROM {schema.TABLE} WHERE rowid > ? AND rowid <= ? "
                f"AND COALESCE(start_ns, 0) / {schema.HOUR_NS} < ? LIMIT 1", (upto, target, mark)).fetchone():
            for statement in _DAILY_LATE_STATEMENTS:  # calls of hours already folded: into both rollups
                conn.execute(statement, (upto, target, mark))
        _set_meta(conn, schema.ROLLUP_UPTO, target)
    fold_day(conn, time.time_ns() if now_ns is None else now_ns)
    return target == last


def fold_day(conn: sqlite3.Connection, now_ns: int) -> bool:
    """Fold the hourly rollup's next UTC day that ended before ``now_ns`` into the daily rollup and move the
    mark past it (hours without calls are skipped). Call inside the writing transaction. True when every day
    before ``now_ns``'s is folded."""
    probe = next(iter(schema.ROLLUP_KEYS))  # every rolled-up call is summed under every key: any key sees all hours
    mark = _meta_int(conn, schema.DAILY_UPTO)
    first = conn.execute(f"SELECT MIN(hour) FROM {schema.ROLLUP_TABLE} WHERE key = ?"
                         + ("" if mark is None else " AND hour >= ?"),
                         (probe,) if mark is None else (probe, mark)).fetchone()[0]
    if first is None:
        return True
    today = now_ns // schema.HOUR_NS // schema.DAY_HOURS * schema.DAY_HOURS
    start = first // schema.DAY_HOURS * schema.DAY_HOURS
    if mark is None:  # a new file, or one an older llmmeter wrote: the daily rollup starts empty before `start`
        _set_meta(conn, schema.DAILY_UPTO, start)
        mark = start
    end = start + schema.DAY_HOURS
    if end > today:
        return True
    for statement in _DAILY_FOLD_STATEMENTS:
        conn.execute(statement, (mark, end))
    _set_meta(conn, schema.DAILY_UPTO, end)
    return False


def _meta_int(conn: sqlite3.Connection, key: str) -> int | None:
    found = conn.execute(f"SELECT value FROM {schema.META_TABLE} WHERE key = ?", (key,)).fetchone()
    return None if found is None else int(found[0])


def _set_meta(conn: sqlite3.Connection, key: str, value: int) -> None:
    conn.execute(f"INSERT INTO {schema.META_TABLE} (key, value) VALUES (?, ?) "
                 "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, str(value)))


_ROLLUP_STATEMENTS = schema.rollup_statements()
_DAILY_LATE_STATEMENTS = schema.daily_late_statements()
_DAILY_FOLD_STATEMENTS = schema.daily_fold_statements()


class LedgerWriter:
    """Queues ledger rows and writes them to ``<directory>/ledger.sqlite`` off the app's thread."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        max_queued: int = MAX_QUEUED,
        batch: int = BATCH,
        flush_interval_s: float = FLUSH_INTERVAL_S,
    ) -> None:
        self.directory = Path(directory).expanduser()
        self.path = self.directory / FILE_NAME
        self.max_queued = max_queued
        self.batch = batch
        self.flush_interval_s = flush_interval_s
        self.dropped: dict[str, int] = {REASON_QUEUE_FULL: 0, REASON_WRITE_FAILED: 0}
        self.written = 0
        self._queue: deque[tuple[Any, ...]] = deque()
        # (INSERT statement, row) of record_outcome() / record_cache() rows, written with the next batch.
        self._outcomes: deque[tuple[str, tuple[Any, ...]]] = deque()
        self._insert = schema.insert_statement()
        self._insert_outcome = schema.outcome_insert_statement()
        self._insert_cache = schema.cache_insert_statement()
        self._conn: sqlite3.Connection | None = None
        self._write_lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._warned = False
        _LIVE.add(self)

    # --- the counting path ------------------------------------------------------------------------
    def add(self, row: tuple[Any, ...]) -> None:
        """Queue one row (drop and count it when the queue is full). Never raises, never blocks."""
        queue = self._queue
        if len(queue) >= self.max_queued or self._closed:
            self.dropped[REASON_QUEUE_FULL] += 1
            return
        queue.append(row)
        if self._thread is None:
            self._start()
        elif len(queue) >= self.batch:
            self._wake.set()

    def add_outcome(self, row: tuple[Any, ...]) -> None:
        """Queue one outcome row (same bound and drop counting as calls). Never raises, never blocks."""
        self._add_other(self._insert_outcome, row)

    def add_cache_lookup(self, row: tuple[Any, ...]) -> None:
        """Queue one app-cache lookup row (same bound and drop counting as calls). Never raises, never blocks."""
        self._add_other(self._insert_cache, row)

    def _add_other(self, statement: str, row: tuple[Any, ...]) -> None:
        if len(self._outcomes) >= self.max_queued or self._closed:
            self.dropped[REASON_QUEUE_FULL] += 1
            return
        self._outcomes.append((statement, row))
        if self._thread is None:
            self._start()

    # --- writing ------------------------------------------------------------------------------------
    def flush(self) -> int:
        """Write every queued row now, on the caller's thread; the rows written. Never raises."""
        written = 0
        with self._write_lock:
            while self._queue or self._outcomes:
                rows = _take(self._queue, self.batch)
                outcomes = _take(self._outcomes, self.batch)
                written += self._write(rows, outcomes)
        return written

    def _write(self, rows: list[tuple[Any, ...]], outcomes: list[tuple[str, tuple[Any, ...]]] | None = None) -> int:
        outcomes = outcomes or []
        try:
            conn = self._conn
            if conn is None:
                self.directory.mkdir(parents=True, exist_ok=True)
                conn = self._conn = connect(self.path)
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(self._insert, rows)
                for statement, row in outcomes:
                    conn.execute(statement, row)
                roll_up(conn)
                conn.execute("COMMIT")
            except BaseException:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                raise
        except Exception as error:
            self.dropped[REASON_WRITE_FAILED] += len(rows) + len(outcomes)
            self._disconnect()
            if not self._warned:
                self._warned = True
                _log.warning(
                    "llmmeter: cannot write the cost ledger %s (%s: %s); its records are dropped and counted "
                    "in %s (the app is not affected)", self.path, type(error).__name__, error,
                    names.METRIC_LEDGER_DROPPED,
                )
            return 0
        self.written += len(rows)
        return len(rows)

    def _start(self) -> None:
        with _START_LOCK:
            if self._thread is not None or self._closed:
                return
            thread = threading.Thread(target=_loop, args=(weakref.ref(self),), name="llmmeter-ledger", daemon=True)
            try:
                thread.start()
            except RuntimeError:  # interpreter shutting down: rows wait for close()/flush()
                return
            self._thread = thread

    def close(self, timeout_s: float = 5.0) -> None:
        """Write what is queued and stop the thread; later rows are dropped and counted."""
        self._closed = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)
        self.flush()
        with self._write_lock:
            self._disconnect()

    def _disconnect(self) -> None:
        """Close the connection, quietly (after a failed write it may be unusable): the next write reopens."""
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                pass
            self._conn = None

    def dropped_observations(self) -> Iterable[tuple[int, dict[str, str]]]:
        return [(count, {names.LABEL_LEDGER_REASON: reason}) for reason, count in self.dropped.items()]

    def _after_fork_in_child(self) -> None:
        if self._conn is not None:
            _FORK_ORPHANS.append(self._conn)
        self._conn = None
        self._queue.clear()  # the parent writes these
        self._outcomes.clear()
        self._write_lock = threading.Lock()
        self._wake = threading.Event()
        self._thread = None


def _take(queue: deque[Any], n: int) -> list[Any]:
    rows: list[Any] = []
    pop = queue.popleft
    try:
        for _ in range(n):
            rows.append(pop())
    except IndexError:
        pass
    return rows


def _loop(ref: weakref.ReferenceType[LedgerWriter]) -> None:
    while True:
        owner = ref()
        if owner is None:
            return
        wake, interval = owner._wake, owner.flush_interval_s
        del owner
        wake.wait(interval)
        owner = ref()
        if owner is None:
            return
        wake.clear()
        owner.flush()
        if owner._closed:
            return
        del owner


_START_LOCK = threading.Lock()


def _reset_after_fork() -> None:
    global _START_LOCK
    _START_LOCK = threading.Lock()
    for writer in list(_LIVE):
        writer._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
