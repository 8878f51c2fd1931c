"""The cost ledger: every counted LLM call as one row you can query (``llmmeter report``).

Metrics answer "how much per feature, tenant, model"; the ledger answers what labels cannot: which
sessions, conversations, prompts or users cost most, what one agent run cost call by call. It is fed from
the span processor's counting path (one row per counted inference span, exactly the calls the metrics
count, whatever the trace sampler decided) through :attr:`LLMMeterSpanProcessor.sinks`, off the app's
thread, into SQLite (:mod:`llmmeter.ledger.writer`).

On when ``LLMMETER_LEDGER=<dir>`` or ``llmmeter.configure(ledger=<dir>)``; ``llmmeter demo`` and apps set up
by ``llmmeter.configure()`` without an OTLP endpoint use :func:`default_directory`. ``LLMMETER_LEDGER=off``
turns it off everywhere. Nothing here is imported unless the ledger is on.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from llmmeter import names
from llmmeter.ledger.writer import FILE_NAME, LedgerWriter

_log = logging.getLogger("llmmeter.ledger")

OFF = "off"
ENV_XDG_DATA_HOME = "XDG_DATA_HOME"
__all__ = ["FILE_NAME", "LedgerSink", "LedgerWriter", "attach", "default_directory", "resolve"]


def default_directory() -> Path:
    """Where the zero-infrastructure mode keeps the ledger: ``$XDG_DATA_HOME/llmmeter/ledger``
    (``~/.local/share/llmmeter/ledger`` when XDG_DATA_HOME is unset). ``llmmeter report`` reads it by default."""
    base = os.environ.get(ENV_XDG_DATA_HOME) or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "llmmeter" / "ledger"


def resolve(configured: str | os.PathLike[str] | None, *, zero_infrastructure: bool) -> Path | None:
    """The ledger directory to write, or None for off.

    ``configured`` is ``LLMMETER_LEDGER`` / ``configure(ledger=...)``: a directory, ``"off"``, or None (unset),
    which means the default place in the zero-infrastructure mode (no OTLP endpoint) and off otherwise."""
    if configured is None:
        return default_directory() if zero_infrastructure else None
    if isinstance(configured, str) and configured.strip().lower() in (OFF, "false", "0", "no", ""):
        return None
    return Path(configured).expanduser()


class LedgerSink:
    """A processor sink: turns each counted call (its CallRecord, and its span for the resource) into a
    ledger row and queues it. Runs on the processor's counting path, never on the app's call."""

    def __init__(self, writer: LedgerWriter) -> None:
        from llmmeter.ledger import record

        self.writer = writer
        self._row = record.row
        self._service = record.service_of

    def __call__(self, call: Any, span: Any = None) -> None:
        self.writer.add(self._row(call, self._service(span)))

    def close(self) -> None:
        self.writer.close()
        if self.writer in _WRITERS:
            _WRITERS.remove(self.writer)


_WRITERS: list[LedgerWriter] = []  # writers of this process, for record_outcome() rows


def _on_outcome(name: str, success: bool, count: int, values: dict[str, str], agent: str | None) -> None:
    import json
    import time

    from llmmeter.ledger import schema

    row = (time.time_ns(), name, 1 if success else 0, count, agent,
           *(values.get(key) for key in schema.ATTRIBUTION_COLUMNS),
           json.dumps(values, sort_keys=True, separators=(",", ":")) if values else None)
    for writer in _WRITERS:
        writer.add_outcome(row)


def _on_cache(name: str, hit: bool, model: str | None, input_tokens: int | None, output_tokens: int | None,
              values: dict[str, str]) -> None:
    import json
    import time

    from llmmeter.ledger import schema

    saved = None
    if hit and model and (input_tokens or output_tokens):
        from llmmeter.pricing import price_usage
        from llmmeter.usage import Usage

        cost = price_usage(None, model, Usage(input=input_tokens, output=output_tokens))
        saved = float(cost.usd) if cost.priced and cost.usd is not None else None
    row = (time.time_ns(), name, 1 if hit else 0, model, input_tokens, output_tokens, saved,
           *(values.get(key) for key in schema.ATTRIBUTION_COLUMNS),
           json.dumps(values, sort_keys=True, separators=(",", ":")) if values else None)
    for writer in _WRITERS:
        writer.add_cache_lookup(row)


def attach(processor: Any, directory: str | os.PathLike[str], meter: Any = None) -> LedgerSink:
    """Write every call ``processor`` counts to the ledger in ``directory`` (idempotent per processor)."""
    for sink in processor.sinks:
        if isinstance(sink, LedgerSink):
            return sink
    writer = LedgerWriter(directory)
    sink = LedgerSink(writer)
    processor.sinks.append(sink)
    _WRITERS.append(writer)
    from llmmeter import hooks

    hooks.register_outcome(_on_outcome)
    hooks.register_cache(_on_cache)
    if meter is not None:
        from opentelemetry.metrics import Observation

        def observe(_options: Any) -> list[Any]:
            return [Observation(count, labels) for count, labels in writer.dropped_observations()]

        meter.create_observable_counter(
            names.METRIC_LEDGER_DROPPED, [observe], names.METRIC_SPECS[names.METRIC_LEDGER_DROPPED][1],
            "Ledger records dropped (queue full, or the ledger could not be written), by reason.",
        )
    _log.debug("llmmeter: cost ledger at %s", writer.path)
    return sink
