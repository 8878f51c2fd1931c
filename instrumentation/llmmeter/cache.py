"""The app's own caches in front of the model: ``llmmeter.record_cache(hit, name=...)`` and ``@llmmeter.cached``.

A semantic or exact cache that answers instead of the model is spend avoided; whether it still answers is worth
watching. Every lookup is counted in ``llmmeter.app_cache.lookups`` by cache name and result (hit/miss). With
the cost ledger on, every lookup is also a row (``llm_cache_lookups``): a hit carries what the call it replaced
would have cost, estimated from the model and token counts given (the price table's rates), and marked as an
estimate, so ``llmmeter report cache --app`` shows each cache's hit rate and the dollars it saved.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from llmmeter import _providers, attribution, hooks, names

_log = logging.getLogger("llmmeter.cache")
F = TypeVar("F", bound=Callable[..., Any])
HIT = "hit"
MISS = "miss"
_LOOKUPS = _providers.Counter(
    names.METRIC_APP_CACHE_LOOKUPS, unit=names.METRIC_SPECS[names.METRIC_APP_CACHE_LOOKUPS][1],
    description="Lookups in the app's own LLM caches (record_cache), by cache and result.",
)


def record_cache(hit: bool, name: str, *, model: str | None = None, input_tokens: int | None = None,
                 output_tokens: int | None = None) -> None:
    """Count one lookup in the app's cache ``name``. ``model`` and the token counts say what the call would
    have been (for the ledger's estimate of what a hit saved); all optional."""
    if not isinstance(hit, bool):
        raise ValueError(f"llmmeter.record_cache: hit must be True or False, got {hit!r}")
    if attribution.sanitize_value(name) is None:
        raise ValueError(f"llmmeter.record_cache: name must be 1-128 letters, digits, space or _.:@/+=-, got {name!r}")
    for label, value in (("input_tokens", input_tokens), ("output_tokens", output_tokens)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ValueError(f"llmmeter.record_cache: {label} must be a non-negative integer, got {value!r}")
    try:
        _LOOKUPS.add(1, {names.LABEL_APP_CACHE: name, names.LABEL_APP_CACHE_RESULT: HIT if hit else MISS})
        if hooks.ON_CACHE:
            values = attribution.current()
            for hook in hooks.ON_CACHE:
                hook(name, hit, model, input_tokens, output_tokens, values)
    except Exception:
        _log.debug("llmmeter: could not record a cache lookup", exc_info=True)


def cached(name: str, *, model: str | None = None) -> Callable[[F], F]:
    """Decorate a cache lookup function: a ``None`` result is a miss, anything else a hit (sync or async)."""

    def decorate(func: F) -> F:
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_inner(*args: Any, **kwargs: Any) -> Any:
                result = await func(*args, **kwargs)
                record_cache(result is not None, name, model=model)
                return result

            return async_inner  # type: ignore[return-value]

        @functools.wraps(func)
        def inner(*args: Any, **kwargs: Any) -> Any:
            result = func(*args, **kwargs)
            record_cache(result is not None, name, model=model)
            return result

        return inner  # type: ignore[return-value]

    return decorate
