"""The exceptions llmmeter raises on purpose: a guard refused an LLM call before it was sent.

Both subclass :class:`llmmeter.hooks.GuardError`, the only kind of exception llmmeter lets reach the app,
so ``except llmmeter.hooks.GuardError`` catches every refusal. They carry what an operator needs to act
(which limit, how much was used, when it resets) as attributes, and say it in the message.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from llmmeter.hooks import GuardError

if TYPE_CHECKING:
    from llmmeter.budgets.model import Budget


class BudgetExceeded(GuardError):
    """A hard budget is used up for this window; the call was not sent (no tokens were spent).

    Attributes: ``budget`` (the :class:`~llmmeter.budgets.model.Budget`), ``value`` (the label value it
    was counted for, e.g. the tenant), ``spent`` and ``limit`` in the budget's unit (``unit``: usd, tokens
    or calls), ``resets_at`` (UTC datetime when the window ends and spending starts from zero).
    """

    def __init__(
        self,
        budget: Budget,
        value: str,
        spent: float | None,
        limit: float,
        unit: str,
        resets_at: datetime,
        in_flight: float = 0.0,
    ) -> None:
        self.budget = budget
        self.value = value
        self.spent = spent
        self.limit = limit
        self.unit = unit
        self.resets_at = resets_at
        self.in_flight = in_flight  # reserved by calls still running when this one was refused
        spent_text = "unknown (spend store unavailable)" if spent is None else amount_text(spent, unit)
        flight_text = f" (+{amount_text(in_flight, unit)} in flight)" if in_flight else ""
        super().__init__(
            f"llmmeter budget {budget.name!r} exceeded for {budget.key}={value}: spent {spent_text}{flight_text} of "
            f"{amount_text(limit, unit)} per {budget.window_text}; resets at {resets_at.isoformat()}"
        )


class BudgetStoreUnavailable(BudgetExceeded):
    """The spend store (e.g. Redis) could not be reached and the budget is configured to fail closed.

    A subclass of :class:`BudgetExceeded` so an app that handles refusals handles this one too;
    ``spent`` is None because it is unknown.
    """


class AgentLoopDetected(GuardError):
    """An agent run crossed a loop-guard limit in hard mode; its next LLM call was not sent.

    Attributes: ``agent`` (the run's agent name), ``reason`` (``max_llm_calls``, ``max_tokens``,
    ``max_cost_usd`` or ``repeated_tool_call``), ``limit`` and ``value`` (what was reached; for
    ``max_llm_calls``, the calls sent before this refused one), ``detail``
    (for repeated tool calls: the tool name).
    """

    def __init__(self, agent: str, reason: str, limit: float, value: float, detail: str | None = None) -> None:
        self.agent = agent
        self.reason = reason
        self.limit = limit
        self.value = value
        self.detail = detail
        extra = f" ({detail})" if detail else ""
        if reason == "max_llm_calls":  # value: the LLM calls the run had sent (or had in flight)
            text = f"{value:g} LLM calls sent (limit {limit:g}); this call was refused"
        else:
            text = f"{reason}{extra} reached {value:g} (limit {limit:g}); this call was refused"
        super().__init__(f"llmmeter loop guard stopped agent {agent!r}: {text}")


def amount_text(value: float, unit: str) -> str:
    """An amount of a budget unit as people read it: ``$0.0123``, ``1500 tokens``, ``3 calls``."""
    if unit == "usd":
        return f"${value:.4f}"
    return f"{value:g} {unit}"


def error_type(error: BaseException) -> str:
    """``error.type`` of a span: the exception's qualified class name (builtins without the module)."""
    cls = type(error)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
