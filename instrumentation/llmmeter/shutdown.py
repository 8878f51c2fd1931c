"""A bounded exit: a dead collector costs at most ``LLMMETER_EXPORT_TIMEOUT`` seconds, and says so once.

At interpreter exit the OTel SDK flushes every exporter from its own atexit handlers, one after the
other, each with the exporter's full retry budget: with ``OTEL_EXPORTER_OTLP_ENDPOINT`` on a closed port
an app took 13-14 s to exit (six "Transient error ... retrying" lines), and 33-48 s against a collector
that accepts connections and never answers (the exporters' retries plus the span processor's 30 s join),
after which the data was lost without a word from llmmeter.

So llmmeter's exit handler (registered once llmmeter is attached, i.e. after the SDK providers it
attaches to were built, so it runs before their handlers) takes the exit over:

1. it counts the spans still queued in llmmeter's processor, so the metrics include every call;
2. it shuts the TracerProvider and MeterProvider down in parallel on daemon threads (their final
   exports), and waits at most ``LLMMETER_EXPORT_TIMEOUT`` seconds (default 3) for both; the SDK's own
   atexit handlers for those providers are unregistered, so nothing waits again after that;
3. it names, in one line, what could not be exported (timed out or failed), and where it was going;
4. it prints the exit summary (:mod:`llmmeter.summary`) when its mode asks for it, and in ``auto`` mode
   also whenever the export failed (then the table is the run's only record), with a last line that says
   what actually happened to the telemetry: exported (through which exporters), not exported (none
   configured), or what failed.

An exporter still retrying when the time is up is shut down (its retries stop); a request still
waiting for an answer is abandoned with its daemon thread when the interpreter
exits. Providers created after llmmeter was set up register their atexit handlers later, so they run
first and keep the SDK's unbounded behaviour.
"""

from __future__ import annotations

import atexit
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from llmmeter import config, summary

_registered: set[int] = set()
_lock = threading.Lock()


@dataclass
class Exporters:
    """The exporters found on a TracerProvider and a MeterProvider, described for a person."""

    traces: list[tuple[str, Any]] = field(default_factory=list)  # (description, exporter)
    metrics: list[tuple[str, Any]] = field(default_factory=list)  # (description, exporter or pull reader)

    def __bool__(self) -> bool:
        return bool(self.traces or self.metrics)

    def described(self) -> str:
        return ", ".join(d for d, _ in (*self.traces, *self.metrics))


@dataclass
class Outcome:
    """How the exit export went."""

    exporters: Exporters
    timed_out: list[str] = field(default_factory=list)  # "traces" / "metrics"
    failed: set[str] = field(default_factory=set)  # exporter descriptions whose export returned FAILURE
    timeout_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.timed_out and not self.failed

    def problem(self) -> str | None:
        """One line naming what could not be exported, or None."""
        if self.ok:
            return None
        parts = []
        if self.timed_out:
            where = ", ".join(d for kind in self.timed_out for d, _ in getattr(self.exporters, kind)) or "-"
            parts.append(
                f"{' and '.join(self.timed_out)} not exported: the export did not finish within "
                f"{self.timeout_s:g} s ({config.ENV_EXPORT_TIMEOUT}) [{where}]"
            )
        failed = sorted(self.failed - {d for kind in self.timed_out for d, _ in getattr(self.exporters, kind)})
        if failed:
            parts.append(f"the last export failed [{', '.join(failed)}]")
        return "llmmeter: " + "; ".join(parts) + "; what was not yet delivered is lost"


def register(processor: Any, tracer_provider: Any = None, meter_provider: Any = None) -> None:
    """Run :func:`_at_exit` for ``processor`` at interpreter exit (idempotent per processor).

    ``tracer_provider`` / ``meter_provider``: the SDK providers the processor's spans and metrics go
    through; None means the global ones, looked up at exit.
    """
    with _lock:
        if id(processor) in _registered:
            return
        _registered.add(id(processor))
    atexit.register(_at_exit, processor, tracer_provider, meter_provider)


def _at_exit(processor: Any, tracer_provider: Any, meter_provider: Any) -> None:
    try:
        tracer_provider, meter_provider = _sdk_providers(tracer_provider, meter_provider)
        outcome = export_within(processor, tracer_provider, meter_provider, processor.settings.export_timeout_s)
        _report(processor, outcome)
    except Exception:  # at exit, nothing may turn into a traceback
        pass


def _sdk_providers(tracer_provider: Any, meter_provider: Any) -> tuple[Any, Any]:
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider

    tracer_provider = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
    meter_provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
    return (
        tracer_provider if isinstance(tracer_provider, TracerProvider) else None,
        meter_provider if isinstance(meter_provider, MeterProvider) else None,
    )


def find_exporters(tracer_provider: Any, meter_provider: Any) -> Exporters:
    """The span exporters and metric readers attached to the SDK providers (llmmeter's processor aside)."""
    found = Exporters()
    multi = getattr(tracer_provider, "_active_span_processor", None)
    for span_processor in getattr(multi, "_span_processors", ()) or ():
        exporter = getattr(span_processor, "span_exporter", None)  # SimpleSpanProcessor
        if exporter is None:  # BatchSpanProcessor (opentelemetry-sdk 1.45 keeps it in its BatchProcessor)
            exporter = getattr(getattr(span_processor, "_batch_processor", None), "_exporter", None)
        if exporter is not None:
            found.traces.append((_describe(exporter), exporter))
    for reader in getattr(meter_provider, "_metric_readers", ()) or ():
        exporter = getattr(reader, "_exporter", None)  # PeriodicExportingMetricReader
        found.metrics.append((_describe(exporter) if exporter is not None else type(reader).__name__,
                              exporter if exporter is not None else reader))
    return found


def _describe(exporter: Any) -> str:
    endpoint = getattr(exporter, "_endpoint", None)
    name = type(exporter).__name__
    return f"{name} -> {endpoint}" if isinstance(endpoint, str) and endpoint else name


def _watch(exporter: Any, description: str, failed: set[str]) -> None:
    """Note when ``exporter.export`` reports FAILURE (the SDK only logs it). Exit-time only."""
    export = getattr(exporter, "export", None)
    if not callable(export):
        return

    def watched(*args: Any, **kwargs: Any) -> Any:
        result = export(*args, **kwargs)
        if getattr(result, "name", None) == "FAILURE":
            failed.add(description)
        return result

    try:
        exporter.export = watched
    except Exception:
        pass


def export_within(processor: Any, tracer_provider: Any, meter_provider: Any, timeout_s: float) -> Outcome:
    """Shut both providers down (their final export) in parallel, waiting at most ``timeout_s`` seconds."""
    exporters = find_exporters(tracer_provider, meter_provider)
    outcome = Outcome(exporters, timeout_s=timeout_s)
    try:
        processor.force_flush()  # count every queued span before the meter provider's last collection
    except Exception:
        pass
    for description, exporter in (*exporters.traces, *exporters.metrics):
        _watch(exporter, description, outcome.failed)
    deadline = time.monotonic() + timeout_s
    threads: list[tuple[str, threading.Thread]] = []
    for kind, provider in (("traces", tracer_provider), ("metrics", meter_provider)):
        if provider is None or getattr(provider, "_shutdown", False) is True:
            continue  # none, or the app shut it down already (a second shutdown only logs a warning)
        shutdown = provider.shutdown
        atexit.unregister(shutdown)  # the SDK's own handler would wait again, unbounded
        thread = threading.Thread(target=_quietly(shutdown), name=f"llmmeter-exit-{kind}", daemon=True)
        thread.start()
        threads.append((kind, thread))
    for kind, thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive() and getattr(exporters, kind):
            outcome.timed_out.append(kind)
    for kind in outcome.timed_out:
        for _description, exporter in getattr(exporters, kind):
            _stop_retrying(exporter)
    return outcome


def _stop_retrying(exporter: Any) -> None:
    """Shut an exporter that is still retrying down, so it stops (and stops logging retries) now.

    The OTLP exporters' shutdown sets the event their retry back-off waits on
    (``opentelemetry/exporter/otlp/common/http.py``: ``_shutdown_event.wait(backoff)``); a request
    already waiting for an answer still runs to its own timeout, on a daemon thread the exit abandons.
    """
    shutdown = getattr(exporter, "shutdown", None)
    if callable(shutdown) and hasattr(exporter, "export"):
        try:
            shutdown()
        except Exception:
            pass


def _quietly(func: Callable[[], Any]) -> Callable[[], None]:
    def run() -> None:
        try:
            func()
        except Exception:
            pass

    return run


def _report(processor: Any, outcome: Outcome) -> None:
    problem = outcome.problem()
    mode = processor.settings.summary
    if summary.should_print(mode) or (mode == "auto" and problem is not None):
        summary.print_summary(processor.tally, footer=None if problem is not None else _footer(outcome))
    if problem is not None:  # one plain line (never wrapped by the table's console): easy to find in a log
        sys.stderr.write(problem + "\n")
        sys.stderr.flush()


def _footer(outcome: Outcome) -> str:
    if not outcome.exporters:
        return summary.NOT_EXPORTED
    return f"spans and metrics were exported through {outcome.exporters.described()}"
