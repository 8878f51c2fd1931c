"""Extension points around every LLM call, for guards (budgets, loop guard) and agent-run totals.

Kept as plain lists so that an app using none of them pays one empty-list check per call.
``before_call`` hooks run before the request is sent; a hook may raise a :class:`GuardError` on
purpose (hard budgets) and that exception reaches the app. Any other exception from a hook is a bug in
llmmeter and is logged, never raised.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmmeter.call import RequestInfo


class GuardError(Exception):
    """Base of the exceptions llmmeter raises on purpose, before a call is sent."""


BeforeCall = Callable[["RequestInfo", Any], None]  # (request, span)
AfterCall = Callable[["RequestInfo", Any, Any, Any], None]  # (request, response: ResponseInfo, cost: Cost, span)

BEFORE_CALL: list[BeforeCall] = []
AFTER_CALL: list[AfterCall] = []
# record_outcome(): (name, success, count, attribution values, agent name or None) -- the cost ledger's outcome rows.
Outcome = Callable[[str, bool, int, "dict[str, str]", "str | None"], None]
ON_OUTCOME: list[Outcome] = []
# record_cache(): (cache name, hit, model, input tokens, output tokens, attribution values) -- the ledger's rows.
CacheLookup = Callable[[str, bool, "str | None", "int | None", "int | None", "dict[str, str]"], None]
ON_CACHE: list[CacheLookup] = []


def register_before_call(hook: BeforeCall) -> None:
    if hook not in BEFORE_CALL:
        BEFORE_CALL.append(hook)


def register_after_call(hook: AfterCall) -> None:
    if hook not in AFTER_CALL:
        AFTER_CALL.append(hook)


# Spans of calls a guard refused before they were sent. After-call hooks must not count such a call as
# made (nor its budget reservation as spent) whether or not the span records attributes: a sampled-out
# span carries no ``llmmeter.blocked`` attribute to read back. Weak: an entry lives as long as its span.
_refused: weakref.WeakSet[Any] = weakref.WeakSet()
_refused_lock = threading.Lock()


def refuse(span: Any, error: GuardError) -> GuardError:
    """Mark ``span``'s call as refused by a guard and return ``error`` for the hook to raise."""
    try:
        with _refused_lock:
            _refused.add(span)
    except TypeError:  # a span type that cannot be weakly referenced: the span attribute still says it
        pass
    return error


def was_refused(span: Any) -> bool:
    """True when a before-call guard refused this span's call (it was never sent)."""
    try:
        with _refused_lock:
            return span in _refused
    except TypeError:
        return False


def register_outcome(hook: Outcome) -> None:
    if hook not in ON_OUTCOME:
        ON_OUTCOME.append(hook)


def register_cache(hook: CacheLookup) -> None:
    if hook not in ON_CACHE:
        ON_CACHE.append(hook)
