"""Report rows to a terminal table (rich), JSON or CSV, and ``--since`` / ``--between`` to nanoseconds."""

from __future__ import annotations

import csv
import json
import re
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.tree import Tree

FORMATS = ("table", "json", "csv")
# `top --format json` is a public contract: exactly these fields, in this order.
TOP_JSON_FIELDS = ("key", "calls", "input_tokens", "output_tokens", "cost_usd", "share")
_DURATION = re.compile(r"^(\d+)\s*([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(value: str, now_s: float | None = None) -> int:
    """``24h`` / ``7d`` / ``30m`` / ``2w`` (ago) or an ISO date/time (UTC if no zone) -> Unix ns."""
    match = _DURATION.match(value.strip())
    if match:
        now = time.time() if now_s is None else now_s
        return int((now - int(match.group(1)) * _UNIT_S[match.group(2)]) * 1e9)
    return parse_time(value)


def parse_time(value: str) -> int:
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"{value!r}: expected a duration like 24h / 7d or an ISO date like 2026-11-28") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000


def _cell(field: str, value: Any) -> str:
    if value is None:
        return "-"
    if field in ("share", "cache_read_share", "change", "jump"):
        return f"{value * 100:+.1f} %" if field in ("change", "jump") else f"{value * 100:.1f} %"
    if field.startswith("cost") or field.endswith("_usd"):
        return f"${value:,.6f}"
    if field.endswith("_ns"):
        return datetime.fromtimestamp(value / 1e9, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


# Table headers where the field name is long (JSON and CSV keep the field names).
HEADERS = {"input_tokens": "input", "output_tokens": "output", "cache_read_tokens": "cache read",
           "cache_creation_tokens": "cache write", "reasoning_tokens": "reasoning", "cost_usd": "cost",
           "unpriced_calls": "unpriced", "cache_read_share": "cache read share", "avg_input_tokens": "avg input"}


def table(title: str, rows: Sequence[dict[str, Any]], fields: Sequence[str]) -> Table:
    out = Table(title=title, title_justify="left")
    for field in fields:
        numeric = rows and isinstance(rows[0].get(field), (int, float))
        out.add_column(HEADERS.get(field, field.replace("_", " ")), justify="right" if numeric else "left")
    for row in rows:
        out.add_row(*(_cell(field, row.get(field)) for field in fields))
    return out


def emit(console: Console, fmt: str, title: str, rows: list[dict[str, Any]], fields: Sequence[str]) -> None:
    """Print ``rows`` (only ``fields``, in that order) as a table, JSON (a list of objects) or CSV."""
    picked = [{field: row.get(field) for field in fields} for row in rows]
    if fmt == "json":
        sys.stdout.write(json.dumps(picked, indent=2) + "\n")
    elif fmt == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=list(fields), lineterminator="\n")
        writer.writeheader()
        writer.writerows(picked)
    else:
        console.print(table(title, picked, fields))


def run_tree(trace_id: str, rows: list[dict[str, Any]]) -> Tree:
    """One trace's calls as a tree: agent runs, and calls nested under the call (span) they were made in."""
    total = sum(row["cost_usd"] or 0 for row in rows)
    root = Tree(f"trace {trace_id}: {len(rows)} LLM calls, ${total:,.6f}")
    by_span = {row["span_id"]: row for row in rows}
    runs: dict[str, Tree] = {}
    nodes: dict[str, Tree] = {}
    for row in rows:
        parent_row = by_span.get(row["parent_span_id"])
        if parent_row is not None and row["parent_span_id"] in nodes:
            parent = nodes[row["parent_span_id"]]
        elif row["agent_run_id"]:
            parent = runs.get(row["agent_run_id"])
            if parent is None:
                label = f"agent {row['agent'] or '?'} (run {row['agent_run_id']})"
                parent = runs[row["agent_run_id"]] = root.add(label)
        else:
            parent = root
        cost = "unpriced" if not row["priced"] else f"${(row['cost_usd'] or 0):,.6f}"
        nodes[row["span_id"]] = parent.add(
            f"{row['model'] or '?'}  in {row['input_tokens']:,} / out {row['output_tokens']:,}  {cost}  "
            f"{row['status']}  span {row['span_id']}"
        )
    return root
