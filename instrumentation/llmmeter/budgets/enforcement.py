"""Applies budgets around every LLM call, through the before/after-call hooks of :mod:`llmmeter.hooks`.

Before a call: find the budgets it counts under (from its attribution and model); for each hard budget,
reserve an upper bound of what the call may spend (:mod:`llmmeter.budgets.preflight`: prompt bytes,
``max_tokens`` or a learned/default output bound, priced) in the store, which admits it atomically only
if it fits beside the calls in flight, or alone when nothing is in flight (see
:mod:`llmmeter.budgets.store`). A refusal raises :class:`llmmeter.BudgetExceeded` before the SDK sends
anything. After the call: swap reservations for the real amount (cost, tokens or 1 call), and report
crossings of 80% / 100% (span event, counter, log line), in soft and hard mode alike.

The pre-flight work on the app's thread is bounded: the byte bound costs microseconds whatever the
prompt's size; tiktoken runs only when that bound is refused for not fitting beside calls in flight and a
precise count might fit (``benchmarks/bench_budget_preflight.py`` measures both).
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from opentelemetry.metrics import CallbackOptions, Observation

from llmmeter import _providers, attribution, hooks, names
from llmmeter.budgets.model import MODE_HARD, UNIT_CALLS, UNIT_TOKENS, Budget
from llmmeter.budgets.preflight import OutputBounds, Preflight
from llmmeter.budgets.store import InMemoryStore, SpendStore, StoreUnavailable
from llmmeter.errors import BudgetExceeded, BudgetStoreUnavailable, amount_text

_log = logging.getLogger("llmmeter.budgets")

ON_ERROR_OPEN = "open"
ON_ERROR_CLOSED = "closed"
# A window's store key lives a little past the window's end, so a call finishing just after it still
# reconciles into the window it was admitted in.
_TTL_GRACE_SECONDS = 300


@dataclass(slots=True)
class _Entry:
    budget: Budget
    value: str
    key: str
    ttl: int
    window_end: int
    reserved: float


class _CallState:
    __slots__ = ("entries",)

    def __init__(self, entries: list[_Entry]) -> None:
        self.entries = entries


class Enforcer:
    """The process's budgets, their store, and the hooks that apply them."""

    def __init__(self, store: SpendStore | None = None, on_store_error: str = ON_ERROR_OPEN) -> None:
        self.budgets: tuple[Budget, ...] = ()
        self.store: SpendStore = store if store is not None else InMemoryStore()
        self.on_store_error = on_store_error
        self._lock = threading.Lock()
        self._calls: weakref.WeakKeyDictionary[Any, _CallState] = weakref.WeakKeyDictionary()
        self.outputs = OutputBounds()  # learned output bounds per model (calls without max_tokens)
        self.preflight_tokenizations = 0  # calls whose prompt had to be tokenized before being sent
        # budget name -> (window end, fraction) of the most-spent value seen by this process.
        self._peak: dict[str, tuple[int, float]] = {}
        self._store_down = False
        self._instruments: tuple[int, Any, Any] | None = None

    # --- configuration -----------------------------------------------------------------------
    def add(self, budgets: Iterable[Budget]) -> None:
        with self._lock:
            known = {b.name for b in self.budgets}
            added = list(self.budgets)
            for budget in budgets:
                if budget.name in known:
                    added = [budget if b.name == budget.name else b for b in added]
                else:
                    added.append(budget)
                    known.add(budget.name)
            self.budgets = tuple(added)
        hooks.register_before_call(self.before_call)
        hooks.register_after_call(self.after_call)
        self._gauge_instruments()

    def clear(self) -> None:
        with self._lock:
            self.budgets = ()
            self._peak.clear()
            self.preflight_tokenizations = 0
        self.outputs.clear()

    # --- instruments -------------------------------------------------------------------------
    def _gauge_instruments(self) -> tuple[Any, Any]:
        generation = _providers.generation()
        current = self._instruments
        if current is not None and current[0] == generation:
            return current[1], current[2]
        meter = _providers.meter()
        crossings = meter.create_counter(
            names.METRIC_BUDGET_CROSSINGS, unit="{crossing}",
            description="Budget thresholds (80%, 100% of the limit) crossed, by budget and threshold.",
        )
        blocked = meter.create_counter(
            names.METRIC_BUDGET_BLOCKED, unit="{request}",
            description="LLM calls refused by a hard budget before they were sent.",
        )
        meter.create_observable_gauge(
            names.METRIC_BUDGET_SPEND, callbacks=[self._observe_spend], unit="1",
            description="Fraction of the budget's limit spent in the current window (wildcard budgets: the "
                        "most-spent value this process has seen).",
        )
        self._instruments = (generation, crossings, blocked)
        return crossings, blocked

    def _observe_spend(self, options: CallbackOptions) -> Iterable[Observation]:
        now = time.time()
        result = []
        for budget in self.budgets:
            window_end, fraction = self._peak.get(budget.name, (0, 0.0))
            if window_end <= now:
                fraction = 0.0
            result.append(Observation(fraction, {names.LABEL_BUDGET: budget.name}))
        return result

    # --- hooks -------------------------------------------------------------------------------
    def before_call(self, request: Any, span: Any) -> None:
        budgets = self.budgets
        if not budgets:
            return
        values = attribution.current()
        model = request.model
        now = time.time()
        entries: list[_Entry] = []
        preflight: Preflight | None = None
        for budget in budgets:
            value = budget.counted_value(values, model)
            if value is None:
                continue
            start, end = budget.window(now)
            key = f"{budget.name}|{value}|{start}"
            ttl = budget.window_seconds + _TTL_GRACE_SECONDS
            entry = _Entry(budget, value, key, ttl, end, 0.0)
            if budget.mode == MODE_HARD:
                if preflight is None:
                    preflight = Preflight(request, self.outputs)
                amount = preflight.amount(budget.unit)
                try:
                    admitted, spent, reserved = self.store.reserve(key, amount, budget.limit, ttl)
                    if not admitted and spent < budget.limit and budget.unit != UNIT_CALLS and preflight.can_refine:
                        # The byte bound does not fit beside the calls in flight: the decision now depends
                        # on the precise count, so (only now) tokenize and try again with it.
                        if not preflight.tokenized:
                            with self._lock:
                                self.preflight_tokenizations += 1
                        precise = preflight.amount(budget.unit, precise=True)
                        if precise < amount:
                            amount = precise
                            admitted, spent, reserved = self.store.reserve(key, amount, budget.limit, ttl)
                    self._store_ok()
                except StoreUnavailable as exc:
                    if self._store_failed(exc):
                        self._release(entries)
                        self._refuse(span, entry, None, 0.0, amount, BudgetStoreUnavailable)
                    entries.append(entry)  # failing open: counted as soft
                    continue
                if not admitted:
                    self._release(entries)
                    self._refuse(span, entry, spent, reserved, amount, BudgetExceeded)
                entry.reserved = amount
            entries.append(entry)
        if entries:
            with self._lock:
                self._calls[span] = _CallState(entries)

    def after_call(self, request: Any, response: Any, cost: Any, span: Any) -> None:
        with self._lock:
            state = self._calls.pop(span, None)
        if state is None:
            return
        attrs = getattr(span, "attributes", None) or {}
        blocked = hooks.was_refused(span) or attrs.get(names.LLMMETER_BLOCKED) is True
        usage = getattr(response, "usage", None)
        tokens = _tokens(attrs, usage)
        usd = float(cost.usd) if cost is not None and cost.priced and cost.usd is not None else 0.0
        if not blocked and usage is not None and isinstance(usage.output, int) and usage.output >= 0:
            choices = request.attributes.get(names.REQUEST_CHOICE_COUNT) if request.attributes else None
            self.outputs.observe(request.model, usage.output, choices if isinstance(choices, int) else 1)
        for entry in state.entries:
            budget = entry.budget
            if blocked:
                actual = 0.0
            elif budget.unit == UNIT_CALLS:
                actual = 1.0
            elif budget.unit == UNIT_TOKENS:
                actual = float(tokens)
            else:
                actual = usd
            if actual == 0.0 and entry.reserved == 0.0:
                continue
            try:
                before, after = self.store.commit(entry.key, entry.reserved, actual, entry.ttl)
                self._store_ok()
            except StoreUnavailable as exc:
                self._store_failed(exc)
                continue
            self._report(span, entry, before, after)

    # --- internals ---------------------------------------------------------------------------
    def _release(self, entries: list[_Entry]) -> None:
        for entry in entries:
            if entry.reserved:
                try:
                    self.store.commit(entry.key, entry.reserved, 0.0, entry.ttl)
                except StoreUnavailable:
                    pass

    def _refuse(
        self, span: Any, entry: _Entry, spent: float | None, reserved: float, amount: float, error: type
    ) -> None:
        budget = entry.budget
        resets_at = datetime.fromtimestamp(entry.window_end, tz=timezone.utc)
        try:
            attrs = _event_attrs(entry, spent, resets_at)
            attrs[names.BUDGET_IN_FLIGHT] = float(reserved)
            attrs[names.BUDGET_RESERVATION] = float(amount)
            span.add_event(names.EVENT_BUDGET_EXCEEDED, attrs)
            self._gauge_instruments()[1].add(1, {names.LABEL_BUDGET: budget.name})
        except Exception:
            _log.debug("llmmeter: could not record a budget refusal", exc_info=True)
        raise hooks.refuse(span, error(budget, entry.value, spent, budget.limit, budget.unit, resets_at, reserved))

    def _report(self, span: Any, entry: _Entry, before: float, after: float) -> None:
        budget = entry.budget
        limit = budget.limit
        fraction = after / limit
        peak = self._peak.get(budget.name)
        if peak is None or peak[0] != entry.window_end or fraction > peak[1] or not budget.wildcard:
            self._peak[budget.name] = (entry.window_end, fraction)
        crossed = [t for t in budget.thresholds if before < t * limit <= after]
        if not crossed:
            return
        counter = self._gauge_instruments()[0]
        resets_at = datetime.fromtimestamp(entry.window_end, tz=timezone.utc)
        for threshold in crossed:
            label = f"{threshold:g}"
            attrs = _event_attrs(entry, after, resets_at)
            attrs[names.LABEL_THRESHOLD] = label
            try:
                span.add_event(names.EVENT_BUDGET_THRESHOLD, attrs)
            except Exception:
                pass
            counter.add(1, {names.LABEL_BUDGET: budget.name, names.LABEL_THRESHOLD: label})
            _log.warning(
                "llmmeter budget %r: %s=%s crossed %d%% of its limit (spent %s of %s per %s, %s mode, resets %s)",
                budget.name, budget.key, entry.value, round(threshold * 100), amount_text(after, budget.unit),
                budget.limit_text, budget.window_text, budget.mode, resets_at.isoformat(),
            )

    def _store_failed(self, exc: Exception) -> bool:
        """Log the outage (once per outage); True when calls must be refused (fail closed)."""
        closed = self.on_store_error == ON_ERROR_CLOSED
        if not self._store_down:
            self._store_down = True
            _log.error(
                "llmmeter budgets: the spend store is unavailable (%s); failing %s: %s",
                exc, self.on_store_error,
                "calls under hard budgets are refused" if closed else "calls are not limited until it is back",
            )
        return closed

    def _store_ok(self) -> None:
        if self._store_down:
            self._store_down = False
            _log.warning("llmmeter budgets: the spend store is reachable again; budgets are enforced")


def _tokens(attrs: Mapping[str, Any], usage: Any) -> int:
    """Input + output tokens of the call: its Usage (tiktoken estimates included; a span the sampler
    dropped records no attributes), else the span's attributes."""
    if usage is not None and (usage.input is not None or usage.output is not None):
        return max(0, usage.input or 0) + max(0, usage.output or 0)
    total = 0
    for name in (names.USAGE_INPUT_TOKENS, names.USAGE_OUTPUT_TOKENS):
        value = attrs.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            total += value
    return total




def _event_attrs(entry: _Entry, spent: float | None, resets_at: datetime) -> dict[str, Any]:
    budget = entry.budget
    attrs: dict[str, Any] = {
        names.LABEL_BUDGET: budget.name,
        names.BUDGET_KEY: budget.key,
        names.BUDGET_VALUE: entry.value,
        names.BUDGET_UNIT: budget.unit,
        names.BUDGET_LIMIT: float(budget.limit),
        names.BUDGET_RESETS_AT: resets_at.isoformat(),
        names.BUDGET_MODE: budget.mode,
    }
    if spent is not None:
        attrs[names.BUDGET_SPENT] = float(spent)
    return attrs
