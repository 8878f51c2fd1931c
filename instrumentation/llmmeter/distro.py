"""Zero-code setup under ``opentelemetry-instrument``: distro, configurator and post-instrument hook.

``opentelemetry-instrument python app.py`` loads, in this order: the first ``opentelemetry_distro``
entry point (:class:`LLMMeterDistro`: OTLP/HTTP defaults, settings validated), the first
``opentelemetry_configurator`` (:class:`LLMMeterConfigurator`: the SDK with llmmeter's span processor),
every ``opentelemetry_instrumentor``, then every ``opentelemetry_post_instrument`` hook
(:func:`attach_to_global_providers`).

Only the *first* configurator runs. When ``opentelemetry-distro`` (or another vendor's distro) is also
installed, its configurator may win and ours never runs; the post-instrument hook then attaches the
processor to whatever SDK TracerProvider was installed. Every path checks for an attached llmmeter
processor first: two of them would count every call twice.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import Any

from opentelemetry import trace
from opentelemetry.environment_variables import OTEL_METRICS_EXPORTER, OTEL_TRACES_EXPORTER
from opentelemetry.instrumentation.distro import BaseDistro
from opentelemetry.sdk._configuration import _OTelSDKConfigurator
from opentelemetry.sdk.environment_variables import OTEL_EXPORTER_OTLP_PROTOCOL
from opentelemetry.sdk.trace import TracerProvider

from llmmeter import config, sampling, shutdown, summary
from llmmeter.config import ConfigError, Settings
from llmmeter.processor import LLMMeterSpanProcessor, find_processor
from llmmeter.startup import EXIT_CONFIG_ERROR  # one exit code for start-up and check-config

_log = logging.getLogger(__name__)
_attach_lock = threading.Lock()



def validate_settings() -> Settings:
    """Read and validate every ``LLMMETER_*`` setting, the price table and the budgets now, at start-up.

    :func:`llmmeter.startup.run`, the one check ``llmmeter check-config`` also runs. Raises
    :class:`ConfigError` naming the variable (or file), the field and the value, unless
    ``LLMMETER_ON_CONFIG_ERROR=warn`` keeps the app up with the broken part disabled.
    """
    from llmmeter import startup

    config.set_settings(None)
    return startup.run()


def _fail_fast(error: ConfigError) -> None:
    """Stop the process with the configuration error, before the app runs.

    auto-instrumentation logs and swallows every Exception from a distro (the app would then run
    without telemetry, silently), and a SystemExit from sitecustomize aborts the interpreter with a
    "Fatal Python error" dump. Nothing of the app has run yet, so a plain message and exit code is
    both the clearest and the safest outcome.
    """
    sys.stderr.write(f"llmmeter: configuration error: {error}\n")
    sys.stderr.flush()
    os._exit(EXIT_CONFIG_ERROR)


_validated = False


def _settings_or_exit() -> None:
    """Validate once per process, whichever auto-instrumentation entry point runs first.

    Another distro may have been chosen (``OTEL_PYTHON_DISTRO``) while our configurator or hook still
    runs; a bad value must stop start-up there too, not be logged and swallowed.
    """
    global _validated
    if _validated:
        return
    try:
        validate_settings()
    except ConfigError as error:
        _fail_fast(error)
    _validated = True


class LLMMeterDistro(BaseDistro):
    """OTLP over HTTP/protobuf by default (what a local collector and most vendors accept).

    Without any ``OTEL_EXPORTER_OTLP_*ENDPOINT`` the exporters default to ``none`` instead: that is the
    "no collector" case the exit summary serves, and OTLP exporters aimed at an absent localhost:4318
    print connection errors and hold the exit for about ten seconds of retries. Explicit
    ``OTEL_TRACES_EXPORTER`` / ``OTEL_METRICS_EXPORTER`` values are always kept.
    """

    def _configure(self, **kwargs: Any) -> None:
        exporter = "otlp" if summary.exporting() else "none"
        os.environ.setdefault(OTEL_TRACES_EXPORTER, exporter)
        os.environ.setdefault(OTEL_METRICS_EXPORTER, exporter)
        os.environ.setdefault(OTEL_EXPORTER_OTLP_PROTOCOL, "http/protobuf")
        _settings_or_exit()


def _zero_infrastructure_ledger() -> None:
    """With no OTLP endpoint (the exit-summary mode) and LLMMETER_LEDGER unset, the cost ledger goes to its
    default place, so `llmmeter report` has the run's calls (llmmeter.ledger.default_directory)."""
    current = config.settings()
    if current.ledger is None and not summary.exporting():
        from llmmeter.pipeline import _with_ledger

        _with_ledger(current, None, zero_infrastructure=True)


def _activate(processor: LLMMeterSpanProcessor, tracer_provider: Any = None) -> None:
    """What every setup path does once a processor is attached: exit summary, and
    GenAI spans recorded whatever the sampler decides (:mod:`llmmeter.sampling`)."""
    sampling.record_genai_spans(tracer_provider if tracer_provider is not None else trace.get_tracer_provider())
    shutdown.register(processor, tracer_provider)  # bounded exit export, then the summary


class LLMMeterConfigurator(_OTelSDKConfigurator):
    """The OTel SDK's standard configuration, plus llmmeter's span processor on the TracerProvider."""

    def _configure(self, **kwargs: Any) -> None:
        _settings_or_exit()
        existing = find_processor(trace.get_tracer_provider())
        if existing is not None:
            return
        # The meter comes from the global proxy: the SDK sets the MeterProvider after the
        # TracerProvider, and the processor's instruments bind to it as soon as it is set.
        _zero_infrastructure_ledger()
        processor = LLMMeterSpanProcessor()
        kwargs["span_processors"] = [processor, *(kwargs.get("span_processors") or ())]
        super()._configure(**kwargs)
        if find_processor(trace.get_tracer_provider()) is processor:
            _activate(processor)
        # else OTEL_CONFIG_FILE built the SDK without our kwargs: attach_to_global_providers() attaches.


def attach_to_global_providers() -> LLMMeterSpanProcessor | None:
    """Attach llmmeter's processor to the global SDK TracerProvider unless one is attached already.

    Registered as the ``opentelemetry_post_instrument`` entry point, so it runs after whichever
    configurator won. Returns the attached processor, or None when no SDK TracerProvider is installed
    (nothing to attach to; the app's own ``llmmeter.configure()`` may do it later). Never raises; a bad
    ``LLMMETER_*`` setting stops start-up like in the distro.
    """
    _settings_or_exit()
    try:
        provider = trace.get_tracer_provider()
        if not isinstance(provider, TracerProvider):
            _log.debug("llmmeter: no SDK TracerProvider installed; span processor not attached")
            return None
        with _attach_lock:
            existing = find_processor(provider)
            if existing is not None:
                return existing
            _zero_infrastructure_ledger()
            processor = LLMMeterSpanProcessor()
            provider.add_span_processor(processor)
        _activate(processor, provider)
        return processor
    except Exception:
        _log.warning("llmmeter: could not attach its span processor", exc_info=True)
        return None
