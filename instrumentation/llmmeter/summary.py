"""The embedded default: a cost table on stderr when the program exits, with no collector to set up.

Someone trying llmmeter on a script wants the answer ("what did that run cost?") without running a
collector, Prometheus and Grafana first. So, unless an OTLP endpoint is configured (then the numbers go
there) or ``LLMMETER_SUMMARY=off``, the span processor's in-process :class:`Tally` is printed as a table
at interpreter exit. The tally is bounded: after :data:`MAX_ROWS` distinct (model, feature) rows, the
rest fold into an ``other`` row, so a long-running service cannot grow it without limit.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

MAX_ROWS = 50
OTHER = "other"
NO_FEATURE = "-"
UNKNOWN_MODEL = "unknown"

# Any of these set means "the telemetry goes to a backend": the auto mode then stays quiet.
OTLP_ENDPOINT_VARS: tuple[str, ...] = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
)


@dataclass(slots=True)
class Row:
    """Totals for one (model, feature)."""

    calls: int = 0
    input: int = 0
    output: int = 0
    cache_read: int = 0
    reasoning: int = 0
    cost_usd: float = 0.0
    unpriced_calls: int = 0
    estimated_calls: int = 0

    def add(self, other: Row) -> None:
        self.calls += other.calls
        self.input += other.input
        self.output += other.output
        self.cache_read += other.cache_read
        self.reasoning += other.reasoning
        self.cost_usd += other.cost_usd
        self.unpriced_calls += other.unpriced_calls
        self.estimated_calls += other.estimated_calls


class Tally:
    """Per (model, feature) totals of the calls seen in this process; bounded, thread-safe."""

    def __init__(self, max_rows: int = MAX_ROWS, before_read: Callable[[], object] | None = None) -> None:
        self._max_rows = max(2, max_rows) - 1  # the last row is "other"
        self._rows: dict[tuple[str, str], Row] = {}
        self._lock = threading.Lock()
        # Called before every read: the span processor counts the spans it has queued (llmmeter.deferred).
        self._before_read = before_read

    def record(
        self,
        model: str | None,
        feature: str | None,
        *,
        input: int = 0,
        output: int = 0,
        cache_read: int = 0,
        reasoning: int = 0,
        cost_usd: float | None = None,
        estimated: bool = False,
    ) -> None:
        key = (model or UNKNOWN_MODEL, feature or NO_FEATURE)
        with self._lock:
            row = self._rows.get(key)
            if row is None:
                if len(self._rows) >= self._max_rows:
                    key = (OTHER, OTHER)
                    row = self._rows.get(key)
                if row is None:
                    row = self._rows[key] = Row()
            row.calls += 1
            row.input += input
            row.output += output
            row.cache_read += cache_read
            row.reasoning += reasoning
            if cost_usd is None:
                row.unpriced_calls += 1
            else:
                row.cost_usd += cost_usd
            if estimated:
                row.estimated_calls += 1

    def reset(self) -> None:
        """Forget every row (a forked child: the parent's calls are the parent's). Fresh lock too."""
        self._lock = threading.Lock()
        self._rows = {}

    def rows(self) -> dict[tuple[str, str], Row]:
        """A snapshot copy of the rows."""
        self._flush()
        with self._lock:
            return {k: Row(**{f: getattr(v, f) for f in Row.__slots__}) for k, v in self._rows.items()}

    def __len__(self) -> int:
        self._flush()
        return len(self._rows)

    def _flush(self) -> None:
        if self._before_read is not None:
            self._before_read()  # the processor's DeferredQueue.drain, which never raises


def _cost_cell(row: Row) -> str:
    if row.calls and row.unpriced_calls == row.calls:
        return "[bold yellow]unpriced[/]"
    text = f"${row.cost_usd:,.6f}" if row.cost_usd < 1 else f"${row.cost_usd:,.4f}"
    if row.estimated_calls:
        text = "~" + text
    if row.unpriced_calls:
        text += f" [bold yellow]+{row.unpriced_calls} unpriced[/]"
    return text


def render_summary(tally: Tally | Mapping[tuple[str, str], Row], console: Any, footer: str | None = None) -> bool:
    """Print the tally as a table on ``console`` (a :class:`rich.console.Console`).

    Returns False (printing nothing) when no LLM call was seen. ``~`` marks costs that include
    tiktoken estimates; ``unpriced`` marks calls whose model has no price, which are never shown as $0.
    """
    from rich.table import Table

    rows = tally.rows() if isinstance(tally, Tally) else dict(tally)
    if not rows:
        return False
    table = Table(title="llmmeter: LLM usage in this run", title_justify="left")
    # Narrow terminals wrap names rather than cut them: a truncated model or cost is a wrong answer.
    table.add_column("model", overflow="fold")
    table.add_column("feature", overflow="fold")
    for name in ("calls", "input", "output", "cached", "reasoning"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("cost (USD)", justify="right", no_wrap=True)
    total = Row()
    ordered = sorted(rows.items(), key=lambda kv: (kv[0] == (OTHER, OTHER), -kv[1].cost_usd, kv[0]))
    for (model, feature), row in ordered:
        total.add(row)
        table.add_row(
            model, feature, f"{row.calls:,}", f"{row.input:,}", f"{row.output:,}", f"{row.cache_read:,}",
            f"{row.reasoning:,}", _cost_cell(row),
        )
    table.add_section()
    table.add_row(
        "[bold]total[/]", "", f"{total.calls:,}", f"{total.input:,}", f"{total.output:,}", f"{total.cache_read:,}",
        f"{total.reasoning:,}", _cost_cell(total),
    )
    console.print(table)
    if total.estimated_calls:
        console.print("~ some token counts were estimated with tiktoken (the provider reported no usage)")
    if total.unpriced_calls:
        console.print("unpriced: no price known for the model; add it with LLMMETER_PRICE_FILE")
    if footer:
        console.print(footer)
    return True


def exporting(environ: Mapping[str, str] | None = None) -> bool:
    """Whether an OTLP endpoint is configured (then the numbers go to a backend)."""
    env = os.environ if environ is None else environ
    return any(env.get(var, "").strip() for var in OTLP_ENDPOINT_VARS)


def should_print(mode: str, environ: Mapping[str, str] | None = None) -> bool:
    """Whether the exit summary is wanted: ``always``; ``auto`` only when no OTLP endpoint is set."""
    if mode == "always":
        return True
    return mode == "auto" and not exporting(environ)


_registered: set[int] = set()
_register_lock = threading.Lock()


def register(tally: Tally, mode: str) -> bool:
    """Print ``tally`` on stderr at interpreter exit if ``mode`` asks for it. Idempotent per tally.

    The decision is taken now (start-up), with the environment the process was started with.
    """
    if not should_print(mode):
        return False
    with _register_lock:
        if id(tally) in _registered:
            return True
        _registered.add(id(tally))
    atexit.register(_print_at_exit, tally)
    return True


# Configuration problems the process runs with (LLMMETER_ON_CONFIG_ERROR=warn): printed at exit even when no
# LLM call was made, because a disabled budget or price file is exactly what must not go unnoticed.
MAX_PROBLEMS = 20
_problems: list[str] = []


def add_problem(text: str) -> None:
    """A line for the exit summary about a part of llmmeter disabled at start-up (bounded, deduplicated)."""
    with _register_lock:
        if text not in _problems and len(_problems) < MAX_PROBLEMS:
            _problems.append(text)


def problems() -> tuple[str, ...]:
    with _register_lock:
        return tuple(_problems)


def render_problems(console: Any) -> bool:
    lines = problems()
    for line in lines:
        console.print(f"[bold red]llmmeter: {line}[/]")
    return bool(lines)


NOT_EXPORTED = (
    "spans and metrics were not exported: no exporter is configured "
    "(set OTEL_EXPORTER_OTLP_ENDPOINT to send them to a collector)"
)


LOG_WIDTH = 200  # columns when the output is not a terminal (a log, CI): rich's default 80 folds numbers


def _console(file: Any, *, soft_wrap: bool = False) -> Any:
    """llmmeter's one console-width policy (exit summary, demo, CLI): the terminal's width on a terminal,
    :data:`LOG_WIDTH` columns anywhere else, so a cost or model name is never folded or cut in a log.
    ``soft_wrap``: for message lines, which stay one line whatever the width (grep-able)."""
    from rich.console import Console

    console = Console(file=file, soft_wrap=soft_wrap)
    return console if console.is_terminal else Console(file=file, width=LOG_WIDTH, soft_wrap=soft_wrap)


def print_summary(tally: Tally, footer: str | None = None) -> bool:
    """Print the table on stderr (what the exit handler does); False when nothing was printed. Never raises."""
    try:
        console = _console(sys.stderr)
        printed = render_summary(tally, console, footer)
        return render_problems(console) or printed
    except Exception:  # at exit, a broken terminal must not turn into a traceback
        return False


def _print_at_exit(tally: Tally) -> None:
    # llmmeter's own setup paths use llmmeter.shutdown instead (bounded export, then this table with a
    # footer saying what happened to the telemetry).
    print_summary(tally, NOT_EXPORTED if not exporting() else None)
