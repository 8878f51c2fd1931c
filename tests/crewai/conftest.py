"""CrewAI tests run in their own venv (``.venv-crewai``, ``make test-crewai``): CrewAI 1.15 pins ``openai<3`` and
``pydantic<2.13``, which cannot sit beside the main test venv's openai 3.x. The main run ignores this directory
(``--ignore=tests/crewai`` in pyproject's addopts); ``tests/conftest.py``'s fixtures apply here too.

CrewAI's own telemetry and trace upload are switched off before it is imported, with the variables its source
reads (crewai_core/telemetry.py: ``CREWAI_DISABLE_TELEMETRY`` / ``CREWAI_DISABLE_TRACKING``;
crewai/events/listeners/tracing/utils.py: ``CREWAI_TRACING_ENABLED=false``, ``CREWAI_TESTING=true`` so it never
asks on stdin; console_formatter.py: ``CREWAI_DISABLE_VERSION_CHECK``). ``OTEL_SDK_DISABLED`` would do it too
but also turns off the OTel SDK these tests measure with.
"""

from __future__ import annotations

import os

import pytest
from crew_support import CREWAI_QUIET

os.environ.update(CREWAI_QUIET)


@pytest.fixture
def tel(telemetry):
    """The ``telemetry`` pipeline with llmmeter's CrewAI instrumentor on it, undone afterwards."""
    # imported here, as the test modules do, only once CREWAI_QUIET is in the environment
    from guard_support import framework_instrumented
    from llmmeter.frameworks.crewai import CrewAIInstrumentor

    with framework_instrumented(telemetry, CrewAIInstrumentor()) as instrumented:
        yield instrumented
