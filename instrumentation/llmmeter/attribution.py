"""Who and what a call is for: ``llmmeter.attributes(tenant=..., feature=..., user=...)``.

Attribution travels as W3C Baggage (entries ``llmmeter.<key>``) so it crosses process boundaries with
the standard OTel propagators. Baggage from other services is untrusted input: only allow-listed keys
are read, values are length- and charset-limited, and inbound baggage can be ignored altogether.
The span processor copies the result onto every GenAI span (``llmmeter.attr.<key>``) when it starts,
so spans from other instrumentors are attributed too.
"""

from __future__ import annotations

import contextvars
import dataclasses
import functools
import hashlib
import inspect
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from opentelemetry import baggage
from opentelemetry import context as otel_context

from llmmeter import _providers, config, names

_log = logging.getLogger("llmmeter.attribution")

MAX_VALUE_LENGTH = 128
# fullmatch, never `$`: `$` also matches before a trailing newline ("acme\n" would pass).
_VALUE_OK = re.compile(r"[A-Za-z0-9_.:@/+=\- ]{1," + str(MAX_VALUE_LENGTH) + r"}")
_KEY_OK = re.compile(r"[a-z][a-z0-9_]{0,31}")
# A value outside the charset or the length is replaced by this prefix and the first HASH_HEX_DIGITS hex
# digits of the SHA-256 of its UTF-8 bytes: stable across processes and hosts (a budget or a dashboard can
# name it), label-safe, and it does not put an e-mail address or a name into a metric label.
HASHED_PREFIX = "sha256:"
HASH_HEX_DIGITS = 16
# What happened to a value (the names.LABEL_ATTRIBUTION_CHANGE label of names.METRIC_ATTRIBUTION_NORMALIZED).
CHANGE_TRIMMED = "trimmed"  # surrounding whitespace removed; the rest was fine
CHANGE_HASHED = "hashed"  # outside the charset or longer than MAX_VALUE_LENGTH: replaced by its short hash
CHANGE_DROPPED = "dropped"  # empty (after trimming): not set at all
# The attribution set in this process by `attributes`. A context value, not baggage: propagators never
# write it to the wire nor read it from there, so it is what counts when inbound baggage is not trusted.
_LOCAL_KEY = otel_context.create_key("llmmeter-attribution-local")
# The context tokens of the scopes entered in this context (thread / asyncio task), innermost last, each
# with the scope object that entered it. Kept per context, not on the scope object: one object (a
# decorator's, a module-level one) may be entered by many threads and tasks at once, and each exit must
# detach the token its own entry attached.
_ENTERED: contextvars.ContextVar[tuple[tuple[object, object], ...]] = contextvars.ContextVar(
    "llmmeter_attribution_entered", default=()
)

F = TypeVar("F", bound=Callable[..., Any])


def _check_key(key: str) -> None:
    if not isinstance(key, str) or not _KEY_OK.fullmatch(key):
        raise ValueError(f"llmmeter.attributes: key {key!r} must match {_KEY_OK.pattern}")


def sanitize_value(value: object) -> str | None:
    """The value as a label-safe string, or None when it is not one (too long, odd characters)."""
    text = str(value)
    return text if _VALUE_OK.fullmatch(text) else None


def hashed_value(text: str) -> str:
    """The label-safe stand-in for a value that is not one: ``sha256:`` + 16 hex digits of its UTF-8."""
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return HASHED_PREFIX + digest[:HASH_HEX_DIGITS]


def normalize_value(value: object) -> tuple[str | None, str | None]:
    """(label-safe value or None to drop it, what was changed or None). Never raises.

    Attribution values are user input (names, e-mail addresses, ids of any length): surrounding
    whitespace is trimmed, an empty value is dropped, and a value still outside the charset
    (letters, digits, space, ``_.:@/+=-``) or longer than MAX_VALUE_LENGTH is replaced by
    :func:`hashed_value` of the trimmed text -- so ``user="O'Brien"`` is ``sha256:`` + the first 16
    hex digits of ``sha256(b"O'Brien")``.
    """
    try:
        text = value if isinstance(value, str) else str(value)
    except Exception:  # a __str__ that raises: the app's object, not our problem to surface
        text = object.__repr__(value)
    trimmed = text.strip()
    if not trimmed:
        return None, CHANGE_DROPPED
    if _VALUE_OK.fullmatch(trimmed):
        return trimmed, (None if trimmed is text or trimmed == text else CHANGE_TRIMMED)
    return hashed_value(trimmed), CHANGE_HASHED


_NORMALIZED = _providers.Counter(
    names.METRIC_ATTRIBUTION_NORMALIZED, unit="{value}",
    description="Attribution values that were not label-safe and were trimmed, hashed or dropped.",
)


def _count_change(key: str, change: str) -> None:
    """Count one changed value (names.METRIC_ATTRIBUTION_NORMALIZED), by key and change. Never raises."""
    try:
        _NORMALIZED.add(1, {names.LABEL_ATTRIBUTION_KEY: key, names.LABEL_ATTRIBUTION_CHANGE: change})
    except Exception:
        _log.debug("llmmeter: could not count a normalized attribution value", exc_info=True)


class attributes:
    """Attribute the LLM calls made inside to a user, tenant, feature, route, ...

    Works as a context manager (``with llmmeter.attributes(feature="search"):``) and as a decorator on
    sync and async functions. Nested scopes merge, the inner value winning for a key. One object may be
    entered by many threads and asyncio tasks at once: each entry's state lives in its own context.

    Values never raise: they are trimmed, hashed or dropped (see :func:`normalize_value`) and counted in
    ``llmmeter.attribution.normalized``. A key that is not an identifier raises ValueError (a bug in the
    code that wrote it, found where it is written).
    """

    def __init__(self, **values: object) -> None:
        clean_values: dict[str, str] = {}
        for key, value in values.items():
            _check_key(key)
            if value is None:
                continue
            clean, change = normalize_value(value)
            if change is not None:
                _count_change(key, change)
            if clean is not None:
                clean_values[key] = clean
        self._values = clean_values

    def __enter__(self) -> attributes:
        ctx = otel_context.get_current()
        for key, value in self._values.items():
            ctx = baggage.set_baggage(names.BAGGAGE_PREFIX + key, value, context=ctx)
        local = otel_context.get_value(_LOCAL_KEY, ctx)
        merged = {**local, **self._values} if isinstance(local, dict) else dict(self._values)
        ctx = otel_context.set_value(_LOCAL_KEY, merged, ctx)
        token = otel_context.attach(ctx)
        _ENTERED.set((*_ENTERED.get(), (self, token)))
        return self

    def __exit__(self, *exc: object) -> None:
        entered = _ENTERED.get()
        for index in range(len(entered) - 1, -1, -1):
            if entered[index][0] is self:
                token = entered[index][1]
                _ENTERED.set(entered[:index] + entered[index + 1:])
                otel_context.detach(token)  # type: ignore[arg-type]
                return
        # Exited in a context it was not entered in (a generator resumed elsewhere): nothing of ours to undo.
        _log.debug("llmmeter.attributes: exit without a matching entry in this context")

    def __call__(self, func: F) -> F:
        values = self._values

        def scope() -> attributes:
            fresh = attributes.__new__(attributes)  # values already normalized (and counted) once
            fresh._values = values
            return fresh

        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_inner(*args: Any, **kwargs: Any) -> Any:
                with scope():
                    return await func(*args, **kwargs)

            return async_inner  # type: ignore[return-value]

        @functools.wraps(func)
        def inner(*args: Any, **kwargs: Any) -> Any:
            with scope():
                return func(*args, **kwargs)

        return inner  # type: ignore[return-value]


def _check_keys(keys: Iterable[str], what: str) -> tuple[str, ...]:
    result = tuple(dict.fromkeys(keys))
    for key in result:
        if not isinstance(key, str) or not _KEY_OK.fullmatch(key):
            raise config.ConfigError(
                f"llmmeter.attribution.configure: {what} item {key!r} must match {_KEY_OK.pattern}"
            )
    return result


def configure(
    *,
    label_keys: Iterable[str] | None = None,
    include_user: bool | None = None,
    trust_inbound_baggage: bool | None = None,
    max_values_per_label: int | None = None,
) -> None:
    """Set, in code, what the ``LLMMETER_LABEL_KEYS`` / ``LLMMETER_TRUST_INBOUND_BAGGAGE`` /
    ``LLMMETER_MAX_VALUES_PER_LABEL`` environment variables set.

    ``label_keys``: the attribution keys that become metric labels (default tenant, feature, team, route,
    environment). ``user`` is left out by default because per-user series are what blows up metric
    backends; ``include_user=True`` adds it (the series cap still applies). ``trust_inbound_baggage=False``
    ignores attribution that arrived from other services, keeping only what this process set with
    :class:`attributes`. Call before llmmeter is set up: the span processor reads the label keys once.
    """
    current_settings = config.settings()
    changes: dict[str, Any] = {}
    keys = current_settings.label_keys if label_keys is None else _check_keys(label_keys, "label_keys")
    if include_user is True and "user" not in keys:
        keys = (*keys, "user")
    elif include_user is False:
        keys = tuple(k for k in keys if k != "user")
    changes["label_keys"] = keys
    if trust_inbound_baggage is not None:
        changes["trust_inbound_baggage"] = bool(trust_inbound_baggage)
    if max_values_per_label is not None:
        if isinstance(max_values_per_label, bool) or not isinstance(max_values_per_label, int) or (
            max_values_per_label < 1
        ):
            raise config.ConfigError(
                f"llmmeter.attribution.configure: max_values_per_label must be an integer >= 1, "
                f"got {max_values_per_label!r}"
            )
        changes["max_values_per_label"] = max_values_per_label
    config.set_settings(dataclasses.replace(current_settings, **changes))


def label_keys() -> tuple[str, ...]:
    """The attribution keys that become metric labels (configured; see :func:`configure`)."""
    return config.settings().label_keys


_allowed_cache: tuple[object, tuple[str, ...]] | None = None


def allowed_keys() -> tuple[str, ...]:
    """The attribution keys llmmeter reads at all: the known ones plus any configured label key."""
    global _allowed_cache
    current_settings = config.settings()
    cached = _allowed_cache
    if cached is not None and cached[0] is current_settings:
        return cached[1]
    keys = tuple(dict.fromkeys((*names.KNOWN_ATTRIBUTION_KEYS, *current_settings.label_keys)))
    _allowed_cache = (current_settings, keys)
    return keys


def current(context: otel_context.Context | None = None, keys: tuple[str, ...] | None = None) -> dict[str, str]:
    """The attribution in ``context`` (default: current), restricted to ``keys`` (default: :func:`allowed_keys`).

    Baggage may come from another service, so every value is re-checked (length, characters) and only
    allow-listed keys are read. With ``trust_inbound_baggage`` off, baggage is not read at all: only
    values set in this process by :class:`attributes` count.
    """
    allowed = keys if keys is not None else allowed_keys()
    if not config.settings().trust_inbound_baggage:
        local = otel_context.get_value(_LOCAL_KEY, context)
        if not isinstance(local, dict) or not local:
            return {}
        return {key: local[key] for key in allowed if key in local}
    entries: Mapping[str, object] = baggage.get_all(context)
    if not entries:
        return {}
    result: dict[str, str] = {}
    for key in allowed:
        raw = entries.get(names.BAGGAGE_PREFIX + key)
        if raw is None:
            continue
        clean = sanitize_value(raw)
        if clean is not None:
            result[key] = clean
    return result
