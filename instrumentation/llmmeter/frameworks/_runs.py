"""What every framework instrumentor shares: starting and finishing an agent run, per-agent guard limits,
and wrapping methods that a given framework release may not have.

A framework run is the same :class:`llmmeter.Run` as ``with llmmeter.agent(...)`` makes (same span
shape, totals, loop guard and metrics); only its start and end are split, because a framework often
starts a run in one call and finishes it in another task (a streamed run ends when its background task
does). Its limits come from :mod:`llmmeter.frameworks.guards` by agent name.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import logging
import sys
import threading
from collections.abc import Callable, Collection
from typing import Any, ClassVar

import wrapt
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.trace import SpanKind

from llmmeter import _providers, config, names
from llmmeter import agents as _agents
from llmmeter.frameworks import guards
from llmmeter.instrumentors._wrap import is_ours, mark_ours, unwrap_ours

_log = logging.getLogger("llmmeter.frameworks")


class RunHandle:
    """A started framework run: ``detach()`` in the context that started it, ``finish()`` once, anywhere."""

    __slots__ = ("_finished", "_lock", "_otel_ctx", "_otel_token", "_run_token", "run")

    def __init__(self, run: _agents.Run, otel_token: Any, otel_ctx: Any, run_token: Any) -> None:
        self.run = run
        self._otel_token, self._otel_ctx, self._run_token = otel_token, otel_ctx, run_token
        self._finished = False
        self._lock = threading.Lock()

    def detach(self) -> None:
        """Make the enclosing run current again; a no-op when called from another context (never raises)."""
        token, self._run_token = self._run_token, None
        if token is not None:
            try:
                _agents._current_run.reset(token)
            except (ValueError, RuntimeError):
                pass
        otel_token, self._otel_token = self._otel_token, None
        if otel_token is not None and otel_context.get_current() is self._otel_ctx:
            otel_context.detach(otel_token)

    def finish(self, error: BaseException | None = None) -> None:
        """End the span with the run's totals and record the run metrics (once; later calls are ignored)."""
        with self._lock:
            if self._finished:
                return
            self._finished = True
        try:
            _agents._finish_run(self.run, error)
        except Exception:
            _log.debug("llmmeter: could not finish a framework run", exc_info=True)
            try:
                self.run.span.end()
            except Exception:
                pass


def start_run(
    name: str, framework: str, attributes: dict[str, Any] | None = None, *, attach: bool = True
) -> RunHandle:
    """Open ``invoke_agent {name}`` as a child of the current span and run (nested runs roll up).

    With ``attach`` the run and its span become current in this context (the framework's LLM calls and
    tools then nest under it) until :meth:`RunHandle.detach`.
    """
    _agents._install()
    attrs: dict[str, Any] = {names.OPERATION: names.OP_INVOKE_AGENT, names.AGENT_NAME: name,
                             names.AGENT_FRAMEWORK: framework}
    if attributes:
        attrs.update({k: v for k, v in attributes.items() if v is not None})
    span = _providers.tracer().start_span(f"{names.OP_INVOKE_AGENT} {name}", kind=SpanKind.INTERNAL, attributes=attrs)
    run = _agents.Run(name, span, _agents._current_run.get(), guards.guard_for(name))
    run.framework = framework
    if not attach:
        return RunHandle(run, None, None, None)
    ctx = trace.set_span_in_context(span)
    otel_token = otel_context.attach(ctx)
    run_token = _agents._current_run.set(run)
    return RunHandle(run, otel_token, ctx, run_token)


def start_child_span(name: str, attributes: dict[str, Any], parent: trace.Span | None = None) -> trace.Span:
    """A framework step span (tool, handoff, guardrail) under ``parent`` or the current span; not attached."""
    ctx = trace.set_span_in_context(parent) if parent is not None else None
    return _providers.tracer().start_span(name, context=ctx, kind=SpanKind.INTERNAL, attributes=attributes)


# --- wrapping what a framework release has ---------------------------------------------------------

_missing_logged: set[str] = set()
_missing_lock = threading.Lock()


def log_missing_once(what: str, framework: str) -> None:
    """One INFO line per process for a method or hook this framework release does not have."""
    with _missing_lock:
        if what in _missing_logged:
            return
        _missing_logged.add(what)
    _log.info("llmmeter %s: %s not found in the installed version; not instrumented", framework, what)


def resolve(module_name: str, qualname: str) -> tuple[Any, str] | None:
    """``(owner, attribute)`` for ``module:Class.method`` if it exists and is callable, else None."""
    try:
        owner: Any = importlib.import_module(module_name)
    except Exception:
        return None
    *path, attribute = qualname.split(".")
    for part in path:
        owner = getattr(owner, part, None)
        if owner is None:
            return None
    if not callable(getattr(owner, attribute, None)):
        return None
    return owner, attribute


class Wrapped(list):  # type: ignore[type-arg]
    """The ``(owner, attribute)`` pairs wrapped so far; wrapping of modules imported later stops when inactive."""

    active = True


def wrap_targets(framework: str, targets: tuple[tuple[str, str, Callable[..., Any]], ...]) -> Wrapped:
    """Wrap each ``(module, "Class.method", wrapper)`` that exists; log once each one that does not.

    A framework the app has not imported yet is not imported here (importing LangGraph, pydantic-ai or LiteLLM
    costs seconds, and LiteLLM fetches a price map at import): its methods are wrapped when the app imports it
    (a wrapt post-import hook). Never raises: a release that renamed a method loses that method's spans, not
    the app. Returns what was wrapped (filled in later for deferred modules), for :func:`unwrap_all`.
    """
    done = Wrapped()
    for module_name, qualname, wrapper in targets:
        top = module_name.split(".", 1)[0]
        if top in sys.modules or importlib.util.find_spec(top) is None:
            _wrap_one(done, framework, module_name, qualname, wrapper)
            continue
        wrapt.register_post_import_hook(
            functools.partial(_wrap_on_import, done, framework, module_name, qualname, wrapper), module_name
        )
    return done


def _wrap_on_import(
    done: Wrapped, framework: str, module_name: str, qualname: str, wrapper: Callable[..., Any], module: Any
) -> None:
    if done.active:
        _wrap_one(done, framework, module_name, qualname, wrapper)


def _wrap_one(done: Wrapped, framework: str, module_name: str, qualname: str, wrapper: Callable[..., Any]) -> None:
    try:
        found = resolve(module_name, qualname)
        if found is None:
            log_missing_once(f"{module_name}.{qualname}", framework)
            return
        owner, attribute = found
        if is_ours(vars(owner).get(attribute) if isinstance(owner, type) else getattr(owner, attribute, None)):
            return  # already wrapped (instrumented twice through two paths)
        wrapt.wrap_function_wrapper(owner, attribute, mark_ours(wrapper))
        done.append((owner, attribute))
    except Exception:
        log_missing_once(f"{module_name}.{qualname} (could not be wrapped)", framework)


def unwrap_all(done: list[tuple[Any, str]]) -> None:
    """Remove our wrappers (and only ours, even under another instrumentor's) from what was wrapped."""
    if isinstance(done, Wrapped):
        done.active = False  # hooks for modules not imported yet do nothing now
    for owner, attribute in done:
        try:
            if isinstance(owner, type):
                unwrap_ours(owner, attribute)
            else:
                current = getattr(owner, attribute, None)
                if is_ours(current):
                    setattr(owner, attribute, current.__wrapped__)
        except Exception:
            _log.debug("llmmeter: could not unwrap %r.%s", owner, attribute, exc_info=True)
    done.clear()


class FrameworkInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """A framework's ``BaseInstrumentor`` when what it does is wrap its ``TARGETS`` and switch its module on.

    Subclasses set ``framework`` (a ``names.FRAMEWORK_*``), ``targets`` (for :func:`wrap_targets`),
    ``dependencies`` (what ``instrumentation_dependencies()`` declares) and ``state`` (the module's object
    whose ``enabled`` its wrappers read); ``loads_guards = False`` for one that runs no agent (MCP). Settings
    and the guard file are read at ``instrument()``, so a bad one fails at start-up, not mid-run.
    """

    framework: str
    targets: tuple[tuple[str, str, Callable[..., Any]], ...]
    dependencies: tuple[str, ...] = ()
    state: Any
    loads_guards = True
    _wrapped: ClassVar[list[tuple[Any, str]]] = []  # set per subclass by _instrument

    def instrumentation_dependencies(self) -> Collection[str]:
        return self.dependencies

    def _instrument(self, **kwargs: Any) -> None:
        config.settings()
        if self.loads_guards:
            guards.load()  # a bad LLMMETER_AGENT_GUARDS file fails here, at start-up
        type(self)._wrapped = wrap_targets(self.framework, self.targets)
        self._on_instrument()
        self.state.enabled = True

    def _on_instrument(self) -> None:
        """What a framework needs besides its wrappers (the OpenAI Agents SDK: its trace processor)."""

    def _uninstrument(self, **kwargs: Any) -> None:
        self.state.enabled = False
        unwrap_all(type(self)._wrapped)
