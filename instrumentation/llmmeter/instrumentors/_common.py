"""Small pieces every non-OpenAI/Anthropic instrumentor needs, kept in one place so they are not copied.

* :func:`str_or_none` / :func:`number_attributes`: read SDK call arguments (``given``, ``TextBuffer`` and
  ``find_class`` live in :mod:`llmmeter.instrumentors._sdk` and are re-exported here).
* :class:`ProviderTranslation` / :class:`UsageStreamAccumulator` / :func:`with_output_text`: the request,
  response and stream reading that Google GenAI, Mistral, Cohere and Ollama share; each provider's module
  keeps only what its SDK spells differently (argument names, usage fields, chunk shapes).
* :func:`async_iterator_wrapper`: for SDK methods that are plain ``def``s returning an async iterator
  (async generator functions), which neither ``sync_wrapper`` (no proxy for async iteration) nor
  ``async_wrapper`` (awaits the result) fits.
* :class:`Targets`: the (module, class, method) -> wrapper table of one instrumentor, wrapped when the app
  imports each module (post-import hooks, see :func:`instrument_targets`) and restored on
  ``uninstrument()``. It keeps no per-instance state because ``BaseInstrumentor`` is a singleton whose
  ``__init__`` may run again between the two.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import wrapt
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.trace import Tracer

from llmmeter import names
from llmmeter.call import AttributeValue, RequestInfo, ResponseInfo
from llmmeter.instrumentors._sdk import MAX_TEXT_CHARS, TextBuffer, find_class, given  # noqa: F401  (re-exported)
from llmmeter.instrumentors._wrap import Translation, begin_call, is_ours, mark_ours, unwrap_ours
from llmmeter.streams import AsyncStreamProxy, StreamAccumulator
from llmmeter.usage import Usage

_log = logging.getLogger(__name__)


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


def with_output_text(info: ResponseInfo, output_text: Callable[[], str]) -> ResponseInfo:
    """``info`` with the reply's text set when its output count is unknown, so the span can estimate it.

    The text is read only then: a call whose usage was reported pays nothing for assembling text.
    """
    usage = info.usage
    if usage is None or usage.output is None:
        info.output_text = output_text()
    return info


class ProviderTranslation(Translation):
    """A :class:`Translation` for an SDK whose wrapped method is either plain or streamed (``stream``).

    Subclasses set ``provider`` and ``operation`` and read their SDK's arguments and responses; a call is
    proxied as a stream only when it was one and the SDK returned an iterator (sync or async).
    """

    provider: str = ""
    operation: str = names.OP_CHAT

    def __init__(self, stream: bool = False) -> None:
        self.stream = stream

    def request_info(
        self, model: Any, attributes: dict[str, AttributeValue], prompt_text: Callable[[], str],
        provider: str | None = None,
    ) -> RequestInfo:
        """The call's :class:`RequestInfo`; a ``model`` argument that is not a string is unknown (None)."""
        return RequestInfo(
            provider=provider or self.provider,
            operation=self.operation,
            model=model if isinstance(model, str) else None,
            attributes=attributes,
            stream=self.stream,
            prompt_text=prompt_text,
        )

    def is_stream(self, request: RequestInfo, result: Any) -> bool:
        return request.stream and (hasattr(result, "__next__") or hasattr(result, "__anext__"))


class UsageStreamAccumulator(StreamAccumulator):
    """Stream state that most SDKs' chunks fill: the text so far, the last usage block, finish reasons,
    model and response id.

    Subclasses fill these in ``on_chunk`` (per chunk, so kept to plain attribute writes) and say in
    :meth:`normalize` how their raw usage block becomes :class:`Usage`; the rest happens once, at the end.
    """

    __slots__ = ("_finish", "_id", "_model", "_text", "_usage")

    def __init__(self) -> None:
        super().__init__()
        self._text = TextBuffer()
        self._usage: Any = None
        self._finish: tuple[str, ...] | None = None
        self._model: str | None = None
        self._id: str | None = None

    def normalize(self, raw: Any, unmeasured: list[str]) -> Usage | None:  # pragma: no cover - overridden
        raise NotImplementedError

    def result(self) -> ResponseInfo:
        unmeasured: list[str] = []
        usage = self.normalize(self._usage, unmeasured)
        info = ResponseInfo(model=self._model, id=self._id, finish_reasons=self._finish, usage=usage,
                            unmeasured=unmeasured)
        return with_output_text(info, self._text.text)


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


class Targets:
    """The methods one instrumentor wraps; absent ones (other SDK versions) are skipped quietly."""

    def __init__(self, targets: Iterable[Target]) -> None:
        self.targets = tuple(targets)

    def modules(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(target.module for target in self.targets))

    def wrap(self, get_tracer: Callable[[], Tracer], module: str | None = None) -> None:
        """Wrap every target (importing its module), or only those of ``module`` (already imported)."""
        for target in self.targets:
            if module is not None and target.module != module:
                continue
            cls = find_class(target.module, target.cls)
            if cls is None or target.method not in cls.__dict__:
                _log.debug("llmmeter: %s.%s.%s not in this SDK version", target.module, target.cls, target.method)
                continue
            if is_ours(cls.__dict__[target.method]):  # already wrapped by us
                continue
            wrapt.wrap_function_wrapper(cls, target.method, target.make(get_tracer))

    def unwrap(self) -> None:
        for target in self.targets:
            cls = find_class(target.module, target.cls, import_=False)  # a module never imported was never wrapped
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


class _Generation:
    """One ``instrument()``: the post-import hooks it registered act only while it is the current one."""

    __slots__ = ()


def instrument_targets(
    owner: type, targets: Targets, scope: str, version: str, kwargs: Mapping[str, Any]
) -> None:
    """What every ``_instrument`` does: validate settings, make the tracer, wrap each SDK module when the
    app imports it (now, for modules already imported).

    Post-import hooks (``wrapt.register_post_import_hook``) keep start-up free of SDK imports: an app that
    never imports ``anthropic`` never pays its ~1.9 s of import CPU because the SDK is installed. A hook
    cannot be unregistered, so each one checks that its ``instrument()`` is still the current one:
    after ``uninstrument()`` (or a new ``instrument()``) it does nothing.
    """
    from opentelemetry import trace

    from llmmeter import config

    config.settings()  # a bad LLMMETER_* / capture variable fails here, at start-up, not mid-call
    tracer = trace.get_tracer(scope, version, tracer_provider=kwargs.get("tracer_provider"))
    generation = _Generation()
    owner._llmmeter_generation = generation  # type: ignore[attr-defined]

    def get_tracer() -> Tracer:
        return tracer

    for module_name in targets.modules():

        def on_import(module: Any, module_name: str = module_name) -> None:
            if getattr(owner, "_llmmeter_generation", None) is not generation:
                return  # uninstrumented (or instrumented again) since this hook was registered
            try:
                targets.wrap(get_tracer, module_name)
            except Exception:  # never break the app's import
                _log.warning("llmmeter: could not instrument %s", module_name, exc_info=True)

        wrapt.register_post_import_hook(on_import, module_name)


class TargetsInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """A provider's ``BaseInstrumentor`` when all it does is wrap a :class:`Targets` list.

    Subclasses set ``targets`` and ``dependencies`` (what ``instrumentation_dependencies()`` declares, so
    ``opentelemetry-instrument`` skips the provider quietly when its SDK is missing).
    """

    targets: Targets
    dependencies: tuple[str, ...] = ()
    version = "0.1.0"
    scope: str | None = None  # the tracer's instrumentation scope; default the provider module's name

    def instrumentation_dependencies(self) -> Collection[str]:
        return self.dependencies

    def _instrument(self, **kwargs: Any) -> None:
        instrument_targets(type(self), self.targets, self.scope or type(self).__module__, self.version, kwargs)

    def _uninstrument(self, **kwargs: Any) -> None:
        type(self)._llmmeter_generation = None  # type: ignore[attr-defined]  # pending import hooks: no-ops
        self.targets.unwrap()
