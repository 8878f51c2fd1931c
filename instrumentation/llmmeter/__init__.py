"""llmmeter: what every LLM call costs, in tokens and money, per user, tenant, feature, route and model.

The public API is what this module exports; everything else may change between releases.

* Zero code: ``opentelemetry-instrument python app.py`` (the distro, configurator and instrumentors are
  found through entry points).
* Programmatic: :func:`configure` attaches llmmeter to an SDK pipeline the app built itself.
* Attribution: :class:`attributes`; guards: :mod:`llmmeter.budgets`, :func:`agent`, :func:`tool`;
  business outcomes: :func:`record_outcome`.
"""

from __future__ import annotations

from importlib import metadata as _metadata

from llmmeter import budgets, pricing
from llmmeter.agents import Run, agent, current_run, tool
from llmmeter.attribution import attributes
from llmmeter.attribution import configure as configure_attribution
from llmmeter.cache import cached, record_cache
from llmmeter.config import ConfigError
from llmmeter.errors import AgentLoopDetected, BudgetExceeded, BudgetStoreUnavailable
from llmmeter.hooks import GuardError
from llmmeter.outcomes import record_outcome
from llmmeter.pipeline import configure
from llmmeter.processor import LLMMeterSpanProcessor
from llmmeter.views import llmmeter_views

try:
    __version__ = _metadata.version("llmmeter")
except _metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "AgentLoopDetected",
    "BudgetExceeded",
    "BudgetStoreUnavailable",
    "ConfigError",
    "GuardError",
    "LLMMeterSpanProcessor",
    "Run",
    "__version__",
    "agent",
    "attributes",
    "budgets",
    "cached",
    "configure",
    "configure_attribution",
    "current_run",
    "llmmeter_views",
    "pricing",
    "record_cache",
    "record_outcome",
    "tool",
]
