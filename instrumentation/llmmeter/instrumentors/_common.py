"""Small pieces every non-OpenAI/Anthropic instrumentor needs, kept in one place so they are not copied.

* :func:`given` / :func:`str_or_none` / :func:`number_attributes`: read SDK call arguments, whose
  "not passed" sentinels differ per SDK (``NOT_GIVEN``, ``omit``, ``UNSET``, Fern's ``OMIT = ...``).
* :class:`TextBuffer`: the bounded output text a stream keeps for an estimate when its usage never comes.
* :func:`async_iterator_wrapper`: for SDK methods that are plain ``def``s returning an async iterator
  (async generator functions), which neither ``sync_wrapper`` (no proxy for async iteration) nor
  ``async_wrapper`` (awaits the result) fits.
* :class:`Targets`: the (module, class, method) -> wrapper table of one instrumentor, wrapped on
  ``instrument()`` and restored on ``uninstrument()``. It keeps no per-instance state because
  ``BaseInstrumentor`` is a singleton whose ``__init__`` may run again between the two.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import wrapt
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.trace import Tracer

from llmmeter.call import AttributeValue
from llmmeter.instrumentors._wrap import Translation, begin_call, is_ours, mark_ours, unwrap_ours
from llmmeter.streams import AsyncStreamProxy

_log = logging.getLogger(__name__)

# Output text kept per stream for an estimate. A response is bounded by max_tokens anyway; the cap only
# guards memory against a misbehaving server.
MAX_TEXT_CHARS = 1_000_000
_SENTINEL_TYPES = frozenset({"Omit", "NotGiven", "Unset", "ellipsis", "_NotGiven"})


def given(value: Any) -> bool:
    """False for None and for the SDKs' "argument not passed" sentinels."""
    return value is not None and value is not Ellipsis and type(value).__name__ not in _SENTINEL_TYPES


def str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def number_attributes(source: Any, mapping: Mapping[str, str]) -> dict[str, AttributeValue]:
    """``{attribute: value}`` for each ``source[key]`` (dict or object) that is a real number."""
    attrs: dict[str, AttributeValue] = {}
    for key, name in mapping.items():
        value = source.get(key) if isinstance(source, Mapping) else getattr(source, key, None)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            attrs[name] = value
    return attrs


def finish_reasons(values: Iterable[Any]) -> tuple[str, ...] | None:
    """Finish reasons as lower-case strings (enum members by value), None when there are none."""
    out = []
    for value in values:
        value = getattr(value, "value", value)
        if isinstance(value, str) and value:
            out.append(value.lower())
    return tuple(out) or None


class TextBuffer:
    """Output text collected from stream chunks, capped at :data:`MAX_TEXT_CHARS`."""

    __slots__ = ("_len", "_parts")

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._len = 0

    def add(self, text: Any) -> None:
        if isinstance(text, str) and text and self._len < MAX_TEXT_CHARS:
            self._parts.append(text)
            self._len += len(text)

    def text(self) -> str:
        return "".join(self._parts)


def async_iterator_wrapper(get_tracer: Callable[[], Tracer], translation: Translation) -> Callable[..., Any]:
    """Wrapper for a ``def`` that returns an async iterator (nothing is sent until it is iterated)."""

    def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        call = begin_call(get_tracer(), translation, instance, args, kwargs)
        if call is None:
            return wrapped(*args, **kwargs)
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            call.finish(None, exc)
            raise
        try:
            return AsyncStreamProxy(result, call, translation.accumulator(call.request))
        except Exception:
            _log.debug("llmmeter: could not proxy a stream", exc_info=True)
            call.finish(None)
            return result

    return mark_ours(wrapper)


@dataclass(frozen=True)
class Target:
    module: str
    cls: str
    method: str
    make: Callable[[Callable[[], Tracer]], Callable[..., Any]]  # get_tracer -> wrapt wrapper


def find_class(module_name: str, class_name: str) -> type | None:
    try:
        cls = getattr(importlib.import_module(module_name), class_name, None)
    except Exception:  # an SDK version without that module
        return None
    return cls if isinstance(cls, type) else None


class Targets:
    """The methods one instrumentor wraps; absent ones (other SDK versions) are skipped quietly."""

    def __init__(self, targets: Iterable[Target]) -> None:
        self.targets = tuple(targets)

    def wrap(self, get_tracer: Callable[[], Tracer]) -> None:
        for target in self.targets:
            cls = find_class(target.module, target.cls)
            if cls is None or target.method not in cls.__dict__:
                _log.debug("llmmeter: %s.%s.%s not in this SDK version", target.module, target.cls, target.method)
                continue
            if is_ours(cls.__dict__[target.method]):  # already wrapped by us
                continue
            wrapt.wrap_function_wrapper(cls, target.method, target.make(get_tracer))

    def unwrap(self) -> None:
        for target in self.targets:
            cls = find_class(target.module, target.cls)
            if cls is not None:
                unwrap_ours(cls, target.method)

    def owners(self) -> list[tuple[Any, str]]:
        """``(class, method)`` pairs present in the installed SDK (for uninstrument tests)."""
        pairs = []
        for target in self.targets:
            cls = find_class(target.module, target.cls)
            if cls is not None and target.method in cls.__dict__:
                pairs.append((cls, target.method))
        return pairs


def instrument_targets(targets: Targets, scope: str, version: str, kwargs: Mapping[str, Any]) -> None:
    """What every ``_instrument`` does: validate settings at start-up, make the tracer, warm the tokenizer, wrap."""
    from opentelemetry import trace

    from llmmeter import config, estimate

    config.settings()  # a bad LLMMETER_* / capture variable fails here, at start-up, not mid-call
    tracer = trace.get_tracer(scope, version, tracer_provider=kwargs.get("tracer_provider"))
    estimate.warm_up()  # vocabularies load in the background, never on an app's call

    def get_tracer() -> Tracer:
        return tracer

    targets.wrap(get_tracer)


class TargetsInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """A provider's ``BaseInstrumentor`` when all it does is wrap a :class:`Targets` list.

    Subclasses set ``targets`` and ``dependencies`` (what ``instrumentation_dependencies()`` declares, so
    ``opentelemetry-instrument`` skips the provider quietly when its SDK is missing).
    """

    targets: Targets
    dependencies: tuple[str, ...] = ()
    version = "0.1.0"

    def instrumentation_dependencies(self) -> Collection[str]:
        return self.dependencies

    def _instrument(self, **kwargs: Any) -> None:
        instrument_targets(self.targets, type(self).__module__, self.version, kwargs)

    def _uninstrument(self, **kwargs: Any) -> None:
        self.targets.unwrap()
