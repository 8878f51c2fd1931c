"""The cost ledger (:mod:`llmmeter.ledger`, one row per counted call) as a :class:`MeteredSource`.

Exact where Prometheus is approximate: every call is a row with its start time, so a day is the sum of the calls
that started in it (UTC), with no ``increase()`` extrapolation and nothing lost when a process restarts. One
GROUP BY over the ledger's ``calls`` view (:func:`llmmeter.ledger.store.open_store`: every ledger file of the
directory, older schemas included), read-only, so reconciling never blocks or changes what the app writes.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

from llmmeter.ledger.store import LedgerNotFound, open_store
from llmmeter.reconcile.client import ReconcileError
from llmmeter.reconcile.report import midnight
from llmmeter.reconcile.sources import Metered, MeteredByDay

# Blocked calls were never sent to the provider; failed calls carry whatever cost was metered for them.
QUERY = ("SELECT day, model, SUM(cost_usd), SUM(input_tokens), SUM(output_tokens) FROM calls "
         "WHERE provider = ? AND status != 'blocked' GROUP BY day, model")


class LedgerSource:
    def __init__(self, path: str | Path) -> None:
        given = Path(path).expanduser()
        self.directory = given.parent if given.is_file() else given
        self.description = f"ledger {self.directory}"

    def metered(self, provider: str, start: dt.date, end: dt.date) -> MeteredByDay:
        since_ns = int(midnight(start).timestamp()) * 10**9
        until_ns = int(midnight(end).timestamp()) * 10**9
        try:
            store = open_store(self.directory, since_ns, until_ns)
        except LedgerNotFound as exc:
            raise ReconcileError(f"--ledger: {exc}") from None
        if store.problems:  # unreadable files are left out: say so where the figures are attributed
            self.description = f"ledger {self.directory} (left out: {'; '.join(store.problems)})"
        try:
            rows = store.conn.execute(QUERY, (provider,)).fetchall()
        except sqlite3.Error as exc:
            raise ReconcileError(f"--ledger {self.directory}: cannot read it ({exc})") from None
        finally:
            store.close()
        return {(dt.date.fromisoformat(day), model or ""): Metered(float(usd or 0.0), int(inp or 0), int(out or 0))
                for day, model, usd, inp, out in rows}
