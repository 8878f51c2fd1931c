"""Business outcomes next to LLM spend: ``llmmeter.record_outcome("ticket_resolved", success=True)``.

Counted in ``llmmeter.outcomes`` with the same attribution labels as the cost and token counters
(tenant, feature, ... as configured) plus the agent name inside an agent run, so "cost per resolved
ticket" is one PromQL division::

    sum by (tenant) (rate(llmmeter_cost_USD_total[1d]))
      / sum by (tenant) (rate(llmmeter_outcomes_total{llmmeter_outcome="ticket_resolved",llmmeter_success="true"}[1d]))

The outcome is also a span event on the current span, so a trace shows what the run achieved.
Label values are capped per key like the processor's (past the cap they fold into ``__overflow__``).
"""

from __future__ import annotations

import logging
import threading

from opentelemetry import trace

from llmmeter import _providers, agents, attribution, config, hooks, names

_log = logging.getLogger("llmmeter.outcomes")

_lock = threading.Lock()
_seen: dict[str, set[str]] = {}
_OUTCOMES = _providers.Counter(
    names.METRIC_OUTCOMES, unit="{outcome}",
    description="Business outcomes (record_outcome), by outcome, success and attribution.",
)


def _bounded(key: str, value: str, cap: int) -> str:
    seen = _seen.get(key)
    if seen is not None and value in seen:
        return value
    with _lock:
        seen = _seen.setdefault(key, set())
        if value in seen or len(seen) < cap:
            seen.add(value)
            return value
    return names.OVERFLOW_VALUE


def record_outcome(name: str, success: bool = True, *, count: int = 1) -> None:
    """Count ``count`` outcomes called ``name`` (e.g. ``"ticket_resolved"``), successful or not.

    Labels: ``llmmeter.outcome``, ``llmmeter.success`` ("true"/"false"), the configured attribution
    keys of the current context, and ``gen_ai.agent.name`` inside an agent run.
    """
    if attribution.sanitize_value(name) is None:
        raise ValueError(
            f"llmmeter.record_outcome: name must be 1-128 letters, digits, space or _.:@/+=-, got {name!r}"
        )
    if not isinstance(success, bool):
        raise ValueError(f"llmmeter.record_outcome: success must be True or False, got {success!r}")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"llmmeter.record_outcome: count must be a positive integer, got {count!r}")
    try:
        settings = config.settings()
        values = attribution.current()
        labels: dict[str, str] = {names.LABEL_OUTCOME: name, names.LABEL_SUCCESS: "true" if success else "false"}
        for key in settings.label_keys:
            value = values.get(key)
            if value is not None:
                labels[names.ATTRIBUTION_LABEL_PREFIX + key] = _bounded(key, value, settings.max_values_per_label)
        run = agents.current_run()
        if run is not None:
            labels[names.AGENT_NAME] = run.name
        _OUTCOMES.add(count, labels)
        for hook in hooks.ON_OUTCOME:  # the cost ledger's outcome rows (cost per successful outcome)
            hook(name, success, count, values, run.name if run is not None else None)
        event = {names.LABEL_OUTCOME: name, names.LABEL_SUCCESS: success}
        span = trace.get_current_span()
        if span.is_recording():
            span.add_event(names.EVENT_OUTCOME, event)
        if run is not None and run.span is not span:
            run.span.add_event(names.EVENT_OUTCOME, event)
    except Exception:
        _log.debug("llmmeter: could not record an outcome", exc_info=True)


def _reset_for_tests() -> None:
    with _lock:
        _seen.clear()
