"""Agent runs: ``llmmeter.agent("support")`` and ``llmmeter.tool("search")`` spans, run totals, loop guard.

An agent run is one ``invoke_agent {name}`` span (semconv, kind INTERNAL) with everything it causes
underneath: the LLM calls (their spans nest under it) and ``execute_tool {name}`` spans. A run object in
a contextvar collects, from the after-call hook, what each LLM call used; before the agent span ends it
carries the totals (``llmmeter.run.*``: calls, tool calls, tokens by type, cost, unpriced calls), so one
span answers "what did this run cost?". Nested runs roll their totals up to every enclosing run.

The loop guard is the answer to the stuck agent that burns tokens in a loop: per-run limits on LLM calls,
tokens, cost, and identical tool calls (same tool, same arguments, N times). Crossing one adds a span
event and counts a trip; in hard mode the run's next LLM call raises :class:`llmmeter.AgentLoopDetected`
before it is sent.
"""

from __future__ import annotations

import contextvars
import functools
import hashlib
import inspect
import json
import logging
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from llmmeter import _providers, background, hooks, names
from llmmeter.errors import AgentLoopDetected, error_type

_log = logging.getLogger("llmmeter.agents")

F = TypeVar("F", bound=Callable[..., Any])

MODE_SOFT = "soft"
MODE_HARD = "hard"
GUARD_MAX_LLM_CALLS = "max_llm_calls"
GUARD_MAX_TOKENS = "max_tokens"
GUARD_MAX_COST = "max_cost_usd"
GUARD_REPEATED_TOOL_CALL = "repeated_tool_call"
MAX_TRACKED_TOOL_SIGNATURES = 10_000  # per run; a run with more distinct tool calls is not a loop

_STATUS_OK = "ok"
_STATUS_ERROR = "error"
_STATUS_BLOCKED = "blocked"

_current_run: contextvars.ContextVar[Run | None] = contextvars.ContextVar("llmmeter_agent_run", default=None)


@dataclass(frozen=True)
class LoopGuard:
    """Per-run limits; None disables one. ``mode="hard"`` refuses the run's next LLM call once one is crossed."""

    max_llm_calls: int | None = None
    max_tokens: int | None = None
    max_cost_usd: float | None = None
    max_repeated_tool_calls: int | None = None
    mode: str = MODE_HARD

    def __post_init__(self) -> None:
        for field_name in ("max_llm_calls", "max_tokens", "max_cost_usd", "max_repeated_tool_calls"):
            value = getattr(self, field_name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
                raise ValueError(f"llmmeter.agent: {field_name} must be a positive number or None, got {value!r}")
        if self.mode not in (MODE_SOFT, MODE_HARD):
            raise ValueError(f"llmmeter.agent: mode must be 'soft' or 'hard', got {self.mode!r}")


class Run:
    """One agent run: its span, its totals so far, and its loop-guard state. Thread-safe."""

    def __init__(self, name: str, span: trace.Span, parent: Run | None, guard: LoopGuard) -> None:
        self.name = name
        self.span = span
        self.parent = parent
        self.guard = guard
        self.llm_calls = 0
        self.tool_calls = 0
        self.input_tokens = 0
        self.output_tokens = 0
        self.cache_read_tokens = 0
        self.cache_creation_tokens = 0
        self.reasoning_tokens = 0
        self.cost_usd = 0.0
        self.unpriced_calls = 0
        self.trips: dict[str, tuple[float, float, str | None]] = {}  # reason -> (limit, value, detail)
        self.stopped_by: str | None = None  # the trip that made a hard guard refuse a call
        self.stopped_error: AgentLoopDetected | None = None
        self.framework: str | None = None  # set by llmmeter.frameworks instrumentors; a metric label when set
        self._started = 0  # LLM calls admitted (in flight or done); checked against max_llm_calls
        self._signatures: dict[str, int] = {}
        self._lock = threading.Lock()

    def chain(self) -> Iterator[Run]:
        """This run and every enclosing run, innermost first."""
        run: Run | None = self
        while run is not None:
            yield run
            run = run.parent

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def totals(self) -> dict[str, int | float]:
        """The run totals as span attributes (``llmmeter.run.*``)."""
        with self._lock:
            return {
                names.RUN_LLM_CALLS: self.llm_calls,
                names.RUN_TOOL_CALLS: self.tool_calls,
                names.RUN_INPUT_TOKENS: self.input_tokens,
                names.RUN_OUTPUT_TOKENS: self.output_tokens,
                names.RUN_CACHE_READ_TOKENS: self.cache_read_tokens,
                names.RUN_CACHE_CREATION_TOKENS: self.cache_creation_tokens,
                names.RUN_REASONING_TOKENS: self.reasoning_tokens,
                names.RUN_COST_USD: self.cost_usd,
                names.RUN_UNPRICED_CALLS: self.unpriced_calls,
            }

    def record_tool_call(self, name: str, arguments: Any = None) -> None:
        """Count a tool call (this run and enclosing runs) and check the repeated-call limit.

        ``llmmeter.tool(...)`` calls this; call it directly for tools that run without a tool span.
        """
        signature = _signature(name, arguments)
        for run in self.chain():
            limit = run.guard.max_repeated_tool_calls
            with run._lock:
                run.tool_calls += 1
                if limit is None:
                    continue
                count = run._signatures.get(signature)
                if count is None:
                    if len(run._signatures) >= MAX_TRACKED_TOOL_SIGNATURES:
                        continue
                    count = 0
                count += 1
                run._signatures[signature] = count
            if count >= limit:
                _trip(run, GUARD_REPEATED_TOOL_CALL, limit, count, name)


def current_run() -> Run | None:
    """The innermost agent run of the current context, if any."""
    return _current_run.get()


def _signature(name: str, arguments: Any) -> str:
    try:
        text = json.dumps(arguments, sort_keys=True, default=repr, separators=(",", ":"))
    except Exception:
        text = repr(arguments)
    return name + ":" + hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:32]


# --- instruments ----------------------------------------------------------------------------------

_instruments: tuple[int, Any, Any, Any, Any] | None = None


def _metrics() -> tuple[Any, Any, Any, Any]:
    global _instruments
    generation = _providers.generation()
    current = _instruments
    if current is None or current[0] != generation:
        meter = _providers.meter()
        runs = meter.create_counter(
            names.METRIC_AGENT_RUNS, unit="{run}", description="Agent runs, by agent and status."
        )
        cost = meter.create_histogram(
            names.METRIC_AGENT_RUN_COST, unit=names.UNIT_USD,
            description="Cost of one agent run in USD (runs whose every call was priced).",
            explicit_bucket_boundaries_advisory=list(names.COST_BUCKETS),
        )
        calls = meter.create_histogram(
            names.METRIC_AGENT_RUN_LLM_CALLS, unit="{call}", description="LLM calls made by one agent run.",
            explicit_bucket_boundaries_advisory=list(names.CALLS_BUCKETS),
        )
        trips = meter.create_counter(
            names.METRIC_LOOP_GUARD_TRIPS, unit="{trip}", description="Loop-guard limits crossed, by agent and guard."
        )
        current = _instruments = (generation, runs, cost, calls, trips)
    return current[1], current[2], current[3], current[4]


# --- loop guard -----------------------------------------------------------------------------------


def _trip(run: Run, reason: str, limit: float, value: float, detail: str | None = None) -> None:
    """Record a crossed limit once per run and reason: event on the agent span, counter, log line."""
    with run._lock:
        if reason in run.trips:
            return
        run.trips[reason] = (float(limit), float(value), detail)
    attrs: dict[str, Any] = {
        names.LABEL_GUARD: reason,
        names.LOOP_GUARD_LIMIT: float(limit),
        names.LOOP_GUARD_VALUE: float(value),
        names.LOOP_GUARD_MODE: run.guard.mode,
        names.AGENT_NAME: run.name,
    }
    if detail:
        attrs[names.LOOP_GUARD_DETAIL] = detail
    try:
        run.span.add_event(names.EVENT_LOOP_GUARD, attrs)
        _metrics()[3].add(1, {names.AGENT_NAME: run.name, names.LABEL_GUARD: reason})
    except Exception:
        _log.debug("llmmeter: could not record a loop-guard trip", exc_info=True)
    if reason == GUARD_MAX_LLM_CALLS:
        if run.guard.mode == MODE_HARD:
            _log.warning("llmmeter loop guard: agent %r reached max_llm_calls: %d LLM calls sent (limit %d); "
                         "the next one was refused", run.name, int(value), int(limit))
        else:
            _log.warning("llmmeter loop guard: agent %r crossed max_llm_calls: LLM call %d sent (limit %d, "
                         "soft mode)", run.name, int(value), int(limit))
        return
    _log.warning(
        "llmmeter loop guard: agent %r crossed %s%s (%g, limit %g)%s",
        run.name, reason, f" ({detail})" if detail else "", value, limit,
        "; its next LLM call will be refused" if run.guard.mode == MODE_HARD else "",
    )


_calls: weakref.WeakKeyDictionary[Any, Run] = weakref.WeakKeyDictionary()
_calls_lock = threading.Lock()


def _refuse(run: Run, guarded: Run, span: Any) -> None:
    """Raise the refusal for ``guarded``'s first crossed limit; mark the runs it stops."""
    with guarded._lock:
        reason, (limit, value, detail) = next(iter(guarded.trips.items()))
    refusal = AgentLoopDetected(guarded.name, reason, limit, value, detail)
    for stopped in run.chain():  # this run and the runs between it and the one whose limit it was
        if stopped.stopped_by is None:
            stopped.stopped_by, stopped.stopped_error = reason, refusal
        if stopped is guarded:
            break
    raise hooks.refuse(span, refusal)


def _before_call(request: Any, span: Any) -> None:
    run = _current_run.get()
    if run is None:
        return
    if span.is_recording():  # the run this call belongs to, for the cost ledger's per-run rows (not a label)
        span.set_attribute(names.AGENT_NAME, run.name)
        span.set_attribute(names.RUN_ID, format(run.span.get_span_context().span_id, "016x"))
    for r in run.chain():  # a hard limit crossed earlier (tokens, cost, tool calls, calls): refuse now
        if r.guard.mode == MODE_HARD and r.trips:
            _refuse(run, r, span)
    # Take one call slot in every enclosing run, each check-and-increment under that run's lock (two
    # acquisitions would let concurrent callers all read the same count and all pass).
    taken: list[Run] = []
    for r in run.chain():
        limit = r.guard.max_llm_calls
        with r._lock:
            if limit is None or r._started < limit:
                r._started += 1
                taken.append(r)
                continue
            sent = r._started
            if r.guard.mode != MODE_HARD:
                r._started += 1  # soft: this call goes out, past the limit
                taken.append(r)
        if r.guard.mode == MODE_HARD:
            _trip(r, GUARD_MAX_LLM_CALLS, limit, sent)
            _release_slots(taken)
            _refuse(run, r, span)
        _trip(r, GUARD_MAX_LLM_CALLS, limit, sent + 1)
    with _calls_lock:
        _calls[span] = run


def _release_slots(runs: list[Run]) -> None:
    for r in runs:
        with r._lock:
            r._started = max(0, r._started - 1)


def _after_call(request: Any, response: Any, cost: Any, span: Any) -> None:
    with _calls_lock:
        run = _calls.pop(span, None)
    if run is None:
        return
    attrs = getattr(span, "attributes", None) or {}
    if hooks.was_refused(span) or attrs.get(names.LLMMETER_BLOCKED) is True:
        _release_slots(list(run.chain()))  # refused by a later guard (a budget): not a call
        return
    # From the call's Usage (estimates included), not the span: a span the sampler dropped records nothing.
    usage = getattr(response, "usage", None)
    if usage is not None:
        counts = [_int(usage.input), _int(usage.output), _int(usage.cache_read), _int(usage.cache_creation),
                  _int(usage.reasoning)]
    else:
        counts = [_count(attrs, name) for name in (
            names.USAGE_INPUT_TOKENS, names.USAGE_OUTPUT_TOKENS, names.USAGE_CACHE_READ_TOKENS,
            names.USAGE_CACHE_CREATION_TOKENS, names.USAGE_REASONING_TOKENS,
        )]
    usd = float(cost.usd) if cost is not None and cost.priced and cost.usd is not None else None
    unpriced = cost is not None and not cost.priced
    for r in run.chain():
        with r._lock:
            r.llm_calls += 1
            r.input_tokens += counts[0]
            r.output_tokens += counts[1]
            r.cache_read_tokens += counts[2]
            r.cache_creation_tokens += counts[3]
            r.reasoning_tokens += counts[4]
            if usd is not None:
                r.cost_usd += usd
            if unpriced:
                r.unpriced_calls += 1
            tokens, spent = r.total_tokens, r.cost_usd
        guard = r.guard
        if guard.max_tokens is not None and tokens >= guard.max_tokens:
            _trip(r, GUARD_MAX_TOKENS, guard.max_tokens, tokens)
        if guard.max_cost_usd is not None and spent >= guard.max_cost_usd:
            _trip(r, GUARD_MAX_COST, guard.max_cost_usd, spent)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _count(attrs: Mapping[str, Any], name: str) -> int:
    value = attrs.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _install() -> None:
    hooks.register_before_call(_before_call)
    hooks.register_after_call(_after_call)


# --- spans ------------------------------------------------------------------------------------------


# What each entered agent/tool scope must undo at exit, per context (thread / asyncio task), innermost
# last, with the scope object that pushed it. Not on the object: one ``agent(...)`` object may be entered
# by many threads and tasks at once, and each exit must end its own span and reset its own tokens.
_ENTERED: contextvars.ContextVar[tuple[tuple[Any, tuple[Any, ...]], ...]] = contextvars.ContextVar(
    "llmmeter_agent_scopes_entered", default=()
)


class _Scope:
    """Shared machinery of ``agent`` and ``tool``: context manager (sync and async) and decorator."""

    def _push(self, state: tuple[Any, ...]) -> None:
        _ENTERED.set((*_ENTERED.get(), (self, state)))

    def _pop(self) -> tuple[Any, ...] | None:
        """The state this object's innermost entry in the current context pushed, or None."""
        entered = _ENTERED.get()
        for index in range(len(entered) - 1, -1, -1):
            if entered[index][0] is self:
                _ENTERED.set(entered[:index] + entered[index + 1:])
                return entered[index][1]
        _log.debug("llmmeter: %s exited without a matching entry in this context", type(self).__name__)
        return None

    def _fresh(self) -> _Scope:
        raise NotImplementedError

    def _enter(self, call_arguments: Any = None) -> Any:
        raise NotImplementedError

    def _exit(self, error: BaseException | None) -> None:
        raise NotImplementedError

    def __enter__(self) -> Any:
        return self._enter()

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self._exit(exc)

    async def __aenter__(self) -> Any:
        return self._enter()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self._exit(exc)

    def __call__(self, func: F) -> F:
        signature = _safe_signature(func)

        def arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            if signature is None:
                return {"args": args, "kwargs": kwargs}
            try:
                bound = signature.bind_partial(*args, **kwargs)
                return {k: v for k, v in bound.arguments.items() if k not in ("self", "cls")}
            except TypeError:
                return {"args": args, "kwargs": kwargs}

        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_inner(*args: Any, **kwargs: Any) -> Any:
                with _Called(self._fresh(), arguments(args, kwargs)):
                    return await func(*args, **kwargs)

            return async_inner  # type: ignore[return-value]

        @functools.wraps(func)
        def inner(*args: Any, **kwargs: Any) -> Any:
            with _Called(self._fresh(), arguments(args, kwargs)):
                return func(*args, **kwargs)

        return inner  # type: ignore[return-value]


class _Called:
    """One call of a function decorated with ``agent`` / ``tool``: the scope is entered with the call's
    arguments and exited with the exception if there was one, which propagates unchanged (the same for
    the sync and async wrappers)."""

    __slots__ = ("_arguments", "_scope")

    def __init__(self, scope: _Scope, call_arguments: Any) -> None:
        self._scope, self._arguments = scope, call_arguments

    def __enter__(self) -> None:
        self._scope._enter(self._arguments)

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        self._scope._exit(exc)
        return False


def _safe_signature(func: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(func)
    except (TypeError, ValueError):
        return None


def _end(span: trace.Span, error: BaseException | None) -> None:
    if error is not None:
        span.set_attribute(names.ERROR_TYPE, error_type(error))
        span.set_status(Status(StatusCode.ERROR, type(error).__name__))
    span.end()


class agent(_Scope):  # lower-case: used like a function, `with llmmeter.agent("support"):`
    """An agent run: ``with llmmeter.agent("support", max_llm_calls=20) as run:`` or ``@llmmeter.agent("x")``.

    Creates the ``invoke_agent {name}`` span (current for everything inside, so LLM and tool spans nest
    under it) and a :class:`Run`. Loop-guard limits (``max_llm_calls``, ``max_tokens``, ``max_cost_usd``,
    ``max_repeated_tool_calls``) apply to everything inside, nested runs included; ``mode="hard"``
    (default) refuses the next LLM call once one is crossed, ``"soft"`` only reports.
    """

    def __init__(
        self,
        name: str,
        *,
        max_llm_calls: int | None = None,
        max_tokens: int | None = None,
        max_cost_usd: float | None = None,
        max_repeated_tool_calls: int | None = None,
        mode: str = MODE_HARD,
        agent_id: str | None = None,
        conversation_id: str | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"llmmeter.agent: name must be a non-empty string, got {name!r}")
        self.name = name
        self.guard = LoopGuard(max_llm_calls, max_tokens, max_cost_usd, max_repeated_tool_calls, mode)
        self.agent_id = agent_id
        self.conversation_id = conversation_id

    def _fresh(self) -> agent:
        clone = agent.__new__(agent)
        clone.name, clone.guard = self.name, self.guard
        clone.agent_id, clone.conversation_id = self.agent_id, self.conversation_id
        return clone

    def _enter(self, call_arguments: Any = None) -> Run:
        _install()
        attributes: dict[str, Any] = {names.OPERATION: names.OP_INVOKE_AGENT, names.AGENT_NAME: self.name}
        if self.agent_id:
            attributes[names.AGENT_ID] = self.agent_id
        if self.conversation_id:
            attributes[names.CONVERSATION_ID] = self.conversation_id
        span = _providers.tracer().start_span(
            f"{names.OP_INVOKE_AGENT} {self.name}", kind=SpanKind.INTERNAL, attributes=attributes
        )
        run = Run(self.name, span, _current_run.get(), self.guard)
        token = otel_context.attach(trace.set_span_in_context(span))
        run_token = _current_run.set(run)
        self._push((run, token, run_token))
        return run

    def _exit(self, error: BaseException | None) -> None:
        state = self._pop()
        if state is None:
            return
        run, token, run_token = state
        try:
            _current_run.reset(run_token)
        except ValueError:  # exited in another context (generator misuse): leave the var alone
            pass
        try:
            otel_context.detach(token)
        except Exception:
            pass
        try:
            _finish_run(run, error)
        except Exception:
            _log.debug("llmmeter: could not finish an agent run", exc_info=True)
            run.span.end()


def _finish_run(run: Run, error: BaseException | None) -> None:
    background.wait_for_context()  # a call of this run may still be counted off-thread (llmmeter.background)
    span = run.span
    span.set_attributes(run.totals())
    if run.stopped_by is not None:
        span.set_attribute(names.RUN_STOPPED_BY, run.stopped_by)
    if error is None and run.stopped_error is not None:
        # The app caught the refusal inside the run; the run was still stopped by the guard.
        error = run.stopped_error
    if isinstance(error, AgentLoopDetected) or run.stopped_by is not None:
        status = _STATUS_BLOCKED
    elif error is not None:
        status = _STATUS_ERROR
    else:
        status = _STATUS_OK
    _end(span, error)
    runs, cost, calls, _ = _metrics()
    labels = {names.AGENT_NAME: run.name}
    if run.framework:
        labels[names.AGENT_FRAMEWORK] = run.framework
    runs.add(1, {**labels, names.LABEL_STATUS: status})
    calls.record(run.llm_calls, labels)
    if run.unpriced_calls == 0:  # a run with an unpriced call has no known cost: not recorded as a guess
        cost.record(run.cost_usd, labels)


class tool(_Scope):  # lower-case: used like a function, `with llmmeter.tool("search", arguments=args):`
    """A tool execution: ``with llmmeter.tool("search", arguments={"q": q}):`` or ``@llmmeter.tool("search")``.

    Creates the ``execute_tool {name}`` span and counts the call in the current run. ``arguments`` (as a
    decorator: the function's arguments) feed the repeated-call check; they are hashed, never recorded.
    """

    def __init__(
        self, name: str, arguments: Any = None, *, call_id: str | None = None, tool_type: str | None = None
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"llmmeter.tool: name must be a non-empty string, got {name!r}")
        self.name = name
        self.arguments = arguments
        self.call_id = call_id
        self.tool_type = tool_type

    def _fresh(self) -> tool:
        return tool(self.name, self.arguments, call_id=self.call_id, tool_type=self.tool_type)

    def _enter(self, call_arguments: Any = None) -> trace.Span:
        attributes: dict[str, Any] = {names.OPERATION: names.OP_EXECUTE_TOOL, names.TOOL_NAME: self.name}
        if self.call_id:
            attributes[names.TOOL_CALL_ID] = self.call_id
        if self.tool_type:
            attributes[names.TOOL_TYPE] = self.tool_type
        span = _providers.tracer().start_span(
            f"{names.OP_EXECUTE_TOOL} {self.name}", kind=SpanKind.INTERNAL, attributes=attributes
        )
        token = otel_context.attach(trace.set_span_in_context(span))
        self._push((span, token))
        run = _current_run.get()
        if run is not None:
            try:
                run.record_tool_call(self.name, self.arguments if self.arguments is not None else call_arguments)
            except Exception:
                _log.debug("llmmeter: could not record a tool call", exc_info=True)
        return span

    def _exit(self, error: BaseException | None) -> None:
        state = self._pop()
        if state is None:
            return
        span, token = state
        try:
            otel_context.detach(token)
        except Exception:
            pass
        _end(span, error)
