"""Fresh processes started the way users start them: ``opentelemetry-instrument python -c ...`` and the
``llmmeter`` script of this venv, with no ``LLMMETER_*`` / ``OTEL_*`` variable leaking in from the test run."""

from __future__ import annotations

import os
import subprocess
import sys

BIN = os.path.dirname(sys.executable)
QUIET_EXPORTERS = {"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none"}


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMMETER_", "OTEL_"))}
    env.update(QUIET_EXPORTERS)
    env.update(extra or {})
    return env


def instrumented_run(extra: dict[str, str] | None = None, code: str = "print('app ran')",
                     instrument: bool = True) -> subprocess.CompletedProcess[str]:
    """``opentelemetry-instrument python -c code`` (plain ``python -c`` without ``instrument``)."""
    argv = [sys.executable, "-c", code]
    if instrument:
        argv = [os.path.join(BIN, "opentelemetry-instrument"), *argv]
    return subprocess.run(argv, env=clean_env(extra), capture_output=True, text=True, timeout=180)


def llmmeter_cli(*args: str, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([os.path.join(BIN, "llmmeter"), *args], env=clean_env(extra), capture_output=True,
                          text=True, timeout=120)
