"""``llmmeter.configure()``: programmatic setup for apps that build the OTel SDK themselves.

Apps that run under ``opentelemetry-instrument`` need none of this. Apps that create their own
TracerProvider/MeterProvider (or none at all: a script that only wants the exit summary) call
:func:`configure` once at start-up.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.instrumentation.environment_variables import OTEL_PYTHON_DISABLED_INSTRUMENTATIONS
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.util._importlib_metadata import entry_points

from llmmeter import _providers, config, sampling, shutdown, startup, summary
from llmmeter.config import Settings
from llmmeter.processor import LLMMeterSpanProcessor, find_processor

_log = logging.getLogger(__name__)
_lock = threading.Lock()

INSTRUMENTOR_GROUP = "opentelemetry_instrumentor"
INSTRUMENTOR_PREFIX = "llmmeter_"


def configure(
    tracer_provider: TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
    instrument: bool = True,
    settings: Settings | None = None,
    ledger: str | os.PathLike[str] | None = None,
) -> LLMMeterSpanProcessor:
    """Attach llmmeter's span processor to a TracerProvider and instrument the installed LLM SDKs.

    Metrics are made from finished spans, so the processor has to sit on the TracerProvider the LLM
    spans go through; that is all this does, plus instrumenting every ``llmmeter_*`` instrumentor
    whose SDK is installed. Calling it again returns the processor already attached (never a second
    one, which would count every call twice).

    Args:
        tracer_provider: the SDK TracerProvider to attach to; default the global one. When no SDK
            TracerProvider is installed at all, one without exporters is created and made global, so
            the exit summary works in a plain script.
        meter_provider: where the metrics go; default the global MeterProvider (through the API proxy,
            so it may be set after this call).
        instrument: also instrument the LLM SDKs (llmmeter's own instrumentors only).
        settings: overrides the ``LLMMETER_*`` environment for this process.
        ledger: the cost ledger's directory (``LLMMETER_LEDGER``), or ``"off"``. Unset, a script with no
            OTLP endpoint and no TracerProvider of its own writes it to :func:`llmmeter.ledger.default_directory`
            (the zero-infrastructure mode); anything else has it off.

    Example::

        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.trace import TracerProvider
        import llmmeter
        from llmmeter.views import llmmeter_views

        tracer_provider = TracerProvider()
        meter_provider = MeterProvider(metric_readers=[reader], views=llmmeter_views())
        llmmeter.configure(tracer_provider=tracer_provider, meter_provider=meter_provider)
    """
    if settings is not None:
        config.set_settings(settings)
    settings = startup.run_once()  # the one start-up check (LLMMETER_ON_CONFIG_ERROR decides what a problem does)
    with _lock:
        zero_infrastructure = tracer_provider is None and not isinstance(trace.get_tracer_provider(), TracerProvider)
        provider = tracer_provider if tracer_provider is not None else _global_sdk_tracer_provider()
        settings = _with_ledger(settings, ledger, zero_infrastructure)
        processor = find_processor(provider)
        if processor is None:
            processor = LLMMeterSpanProcessor(meter_provider=meter_provider, settings=settings)
            provider.add_span_processor(processor)
            shutdown.register(processor, provider, meter_provider)  # bounded exit export + summary
        elif settings.ledger not in (None, "off"):  # set up before; the ledger asked for now
            from llmmeter.ledger import attach

            attach(processor, settings.ledger)
        sampling.record_genai_spans(provider)  # counted whatever the sampler decides (llmmeter.sampling)
    if tracer_provider is not None or meter_provider is not None:
        _providers.use(tracer_provider, meter_provider)  # agent/tool spans and guard metrics follow the app's
    if instrument:
        instrument_all(provider)
    return processor


def _with_ledger(settings: Settings, ledger: str | os.PathLike[str] | None, zero_infrastructure: bool) -> Settings:
    """The settings with the ledger directory resolved (explicit argument, LLMMETER_LEDGER, or the default place
    in the zero-infrastructure mode: no OTLP endpoint and no TracerProvider of the app's own)."""
    configured = os.fspath(ledger) if ledger is not None else settings.ledger
    if configured is None and not (zero_infrastructure and not summary.exporting()):
        return settings
    from llmmeter.ledger import resolve

    directory = resolve(configured, zero_infrastructure=True)
    resolved = str(directory) if directory is not None else "off"
    if resolved == settings.ledger:
        return settings
    settings = dataclasses.replace(settings, ledger=resolved)
    config.set_settings(settings)
    return settings


def _global_sdk_tracer_provider() -> TracerProvider:
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        return provider
    created = TracerProvider()
    trace.set_tracer_provider(created)
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):  # a non-SDK provider was set meanwhile
        raise TypeError(
            f"llmmeter.configure: the global TracerProvider is a {type(provider).__name__}, not an SDK "
            "TracerProvider; pass tracer_provider= explicitly"
        )
    return provider


def instrument_all(tracer_provider: Any = None) -> list[str]:
    """Instrument every installed ``llmmeter_*`` instrumentor; returns the names instrumented.

    Skips instrumentors listed in ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS`` and those whose SDK is
    not installed (their import or dependency check fails); already-instrumented ones are left as is.
    """
    disabled = {name.strip() for name in os.environ.get(OTEL_PYTHON_DISABLED_INSTRUMENTATIONS, "").split(",")}
    done: list[str] = []
    for entry_point in entry_points(group=INSTRUMENTOR_GROUP):
        name = entry_point.name
        if not name.startswith(INSTRUMENTOR_PREFIX) or name in disabled or "*" in disabled:
            continue
        try:
            instrumentor = entry_point.load()()
        except ImportError as error:  # the provider SDK (or an optional dependency) is not installed
            _log.debug("llmmeter: skipping %s: %s", name, error)
            continue
        except Exception:
            _log.warning("llmmeter: could not load instrumentor %s", name, exc_info=True)
            continue
        try:
            if instrumentor.is_instrumented_by_opentelemetry:
                done.append(name)
                continue
            if instrumentor._check_dependency_conflicts() is not None:
                _log.debug("llmmeter: skipping %s: its SDK is not installed", name)
                continue
            instrumentor.instrument(tracer_provider=tracer_provider)
            if instrumentor.is_instrumented_by_opentelemetry:
                done.append(name)
        except Exception:
            _log.warning("llmmeter: could not instrument %s", name, exc_info=True)
    return done


def uninstrument_all() -> list[str]:
    """Undo :func:`instrument_all`: every instrumented ``llmmeter_*`` instrumentor restores its SDK."""
    done: list[str] = []
    for entry_point in entry_points(group=INSTRUMENTOR_GROUP):
        if not entry_point.name.startswith(INSTRUMENTOR_PREFIX):
            continue
        try:
            instrumentor = entry_point.load()()  # BaseInstrumentor is a singleton: the instance instrumented
            if instrumentor.is_instrumented_by_opentelemetry:
                instrumentor.uninstrument()
                done.append(entry_point.name)
        except Exception:
            _log.debug("llmmeter: could not uninstrument %s", entry_point.name, exc_info=True)
    return done
