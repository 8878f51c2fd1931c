"""Who and what a call is for: ``llmmeter.attributes(tenant=..., feature=..., user=...)``.

Attribution travels as W3C Baggage (entries ``llmmeter.<key>``) so it crosses process boundaries with
the standard OTel propagators. Baggage from other services is untrusted input: only allow-listed keys
are read, values are length- and charset-limited, and inbound baggage can be ignored altogether.
The span processor copies the result onto every GenAI span (``llmmeter.attr.<key>``) when it starts,
so spans from other instrumentors are attributed too.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from opentelemetry import baggage
from opentelemetry import context as otel_context

from llmmeter import config, names

MAX_VALUE_LENGTH = 128
_VALUE_OK = re.compile(r"^[A-Za-z0-9_.:@/+=\- ]{1," + str(MAX_VALUE_LENGTH) + r"}$")
_KEY_OK = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
# The attribution set in this process by `attributes`. A context value, not baggage: propagators never
# write it to the wire nor read it from there, so it is what counts when inbound baggage is not trusted.
_LOCAL_KEY = otel_context.create_key("llmmeter-attribution-local")

F = TypeVar("F", bound=Callable[..., Any])


def _check_key(key: str) -> None:
    if not _KEY_OK.match(key):
        raise ValueError(f"llmmeter.attributes: key {key!r} must match {_KEY_OK.pattern}")


def sanitize_value(value: object) -> str | None:
    """The value as a label-safe string, or None when it is not one (too long, odd characters)."""
    text = str(value)
    return text if _VALUE_OK.match(text) else None


class attributes:
    """Attribute the LLM calls made inside to a user, tenant, feature, route, ...

    Works as a context manager (``with llmmeter.attributes(feature="search"):``) and as a decorator on
    sync and async functions. Nested scopes merge, the inner value winning for a key.
    """

    def __init__(self, **values: object) -> None:
        self._values: dict[str, str] = {}
        for key, value in values.items():
            _check_key(key)
            if value is None:
                continue
            clean = sanitize_value(value)
            if clean is None:
                raise ValueError(
                    f"llmmeter.attributes: value for {key!r} must be 1-{MAX_VALUE_LENGTH} characters of "
                    f"letters, digits, space and _.:@/+=-, got {value!r}"
                )
            self._values[key] = clean
        self._tokens: list[object] = []

    def __enter__(self) -> attributes:
        ctx = otel_context.get_current()
        for key, value in self._values.items():
            ctx = baggage.set_baggage(names.BAGGAGE_PREFIX + key, value, context=ctx)
        local = otel_context.get_value(_LOCAL_KEY, ctx)
        merged = {**local, **self._values} if isinstance(local, dict) else dict(self._values)
        ctx = otel_context.set_value(_LOCAL_KEY, merged, ctx)
        self._tokens.append(otel_context.attach(ctx))
        return self

    def __exit__(self, *exc: object) -> None:
        otel_context.detach(self._tokens.pop())  # type: ignore[arg-type]

    def __call__(self, func: F) -> F:
        values = self._values
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_inner(*args: Any, **kwargs: Any) -> Any:
                with attributes(**values):
                    return await func(*args, **kwargs)

            return async_inner  # type: ignore[return-value]

        @functools.wraps(func)
        def inner(*args: Any, **kwargs: Any) -> Any:
            with attributes(**values):
                return func(*args, **kwargs)

        return inner  # type: ignore[return-value]



def _check_keys(keys: Iterable[str], what: str) -> tuple[str, ...]:
    result = tuple(dict.fromkeys(keys))
    for key in result:
        if not isinstance(key, str) or not _KEY_OK.match(key):
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
