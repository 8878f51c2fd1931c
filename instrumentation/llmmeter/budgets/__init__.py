"""Budgets: limits on what calls for one tenant, user, feature or model may spend per window.

::

    import llmmeter.budgets as budgets
    budgets.add("tenant=acme: $50/day hard")             # refuse acme's calls past $50 per UTC day
    budgets.add("user=*: 200k tokens/hour")              # each user: soft limit, reported at 80% / 100%
    budgets.add(match="feature=summarize", limit=5, unit="usd", window="hour")
    budgets.configure(store=budgets.RedisStore("redis://cache:6379/0"), on_store_error="closed")

or from the environment at start-up (:func:`configure_from_env`): ``LLMMETER_BUDGETS_FILE`` (YAML/JSON),
``LLMMETER_BUDGETS`` (``;``-separated one-line specs), ``LLMMETER_BUDGET_STORE`` (``memory`` or a
``redis://`` URL) and ``LLMMETER_BUDGET_STORE_ON_ERROR`` (``open``/``closed``).

Budgets apply to calls made through llmmeter's instrumentors (they run before the request is sent);
spans from other instrumentors are counted in metrics but cannot be refused.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from llmmeter.budgets.enforcement import ON_ERROR_CLOSED, ON_ERROR_OPEN, Enforcer
from llmmeter.budgets.model import (
    MODE_HARD,
    MODE_SOFT,
    UNIT_CALLS,
    UNIT_TOKENS,
    UNIT_USD,
    Budget,
    from_mapping,
    load_file,
    parse_env_list,
    parse_spec,
)
from llmmeter.budgets.store import InMemoryStore, RedisStore, SpendStore, StoreUnavailable
from llmmeter.config import ConfigError, env_choice
from llmmeter.errors import BudgetExceeded, BudgetStoreUnavailable

__all__ = [
    "ENV_BUDGETS",
    "ENV_BUDGETS_FILE",
    "ENV_BUDGET_STORE",
    "ENV_BUDGET_STORE_ON_ERROR",
    "MODE_HARD",
    "MODE_SOFT",
    "UNIT_CALLS",
    "UNIT_TOKENS",
    "UNIT_USD",
    "Budget",
    "BudgetExceeded",
    "BudgetStoreUnavailable",
    "InMemoryStore",
    "RedisStore",
    "SpendStore",
    "StoreUnavailable",
    "add",
    "budgets",
    "clear",
    "configure",
    "configure_from_env",
    "enforcer",
    "load",
    "load_file",
    "parse_spec",
    "read_env",
    "spent",
]

ENV_BUDGETS_FILE = "LLMMETER_BUDGETS_FILE"
ENV_BUDGETS = "LLMMETER_BUDGETS"
ENV_BUDGET_STORE = "LLMMETER_BUDGET_STORE"
ENV_BUDGET_STORE_ON_ERROR = "LLMMETER_BUDGET_STORE_ON_ERROR"

_enforcer = Enforcer()


def enforcer() -> Enforcer:
    """The process-wide :class:`Enforcer` (its hooks are registered by the first :func:`add`)."""
    return _enforcer


def add(spec: str | Budget | Mapping[str, Any] | None = None, /, **fields: Any) -> Budget:
    """Add (or replace, by name) a budget, from a one-line spec, a :class:`Budget`, a mapping or keywords.

    ``add("tenant=acme: $50/day hard")``, ``add("user=*: 200k tokens/hour", mode="hard")``,
    ``add(match="feature=summarize", limit=5, unit="usd", window="hour", mode="soft")``.
    Raises :class:`~llmmeter.config.ConfigError` for a budget that cannot be read.
    """
    if isinstance(spec, Budget):
        budget = spec
    elif isinstance(spec, str):
        budget = from_mapping({"spec": spec, **fields}, "llmmeter.budgets.add", "budget")
    elif isinstance(spec, Mapping):
        budget = from_mapping({**spec, **fields}, "llmmeter.budgets.add", "budget")
    else:
        budget = from_mapping(fields, "llmmeter.budgets.add", "budget")
    _enforcer.add([budget])
    return budget


def load(path: str | os.PathLike[str]) -> list[Budget]:
    """Add every budget of a YAML/JSON file. The whole file is validated before any budget is added."""
    loaded = load_file(path)
    _enforcer.add(loaded)
    return loaded


def budgets() -> tuple[Budget, ...]:
    return _enforcer.budgets


def clear() -> None:
    """Remove every budget (spend already recorded in the store is kept until its window expires)."""
    _enforcer.clear()


def configure(
    *, store: SpendStore | None = None, on_store_error: str | None = None, default_output_tokens: int | None = None
) -> None:
    """Choose the spend store and what happens to hard budgets when it is unreachable.

    ``on_store_error="open"`` (default): calls go through unlimited, an error is logged once per outage.
    ``"closed"``: calls under a hard budget are refused with :class:`BudgetStoreUnavailable`.
    ``default_output_tokens``: the output bound a hard budget reserves for a call without ``max_tokens``
    before it has learned the model's outputs (default 4096; see :mod:`llmmeter.budgets.preflight`).
    """
    if default_output_tokens is not None:
        if isinstance(default_output_tokens, bool) or not isinstance(default_output_tokens, int) or (
            default_output_tokens < 1
        ):
            raise ConfigError(f"llmmeter.budgets.configure: default_output_tokens: expected an integer >= 1, "
                              f"got {default_output_tokens!r}")
        _enforcer.outputs.default = default_output_tokens
    if on_store_error is not None:
        if on_store_error not in (ON_ERROR_OPEN, ON_ERROR_CLOSED):
            raise ConfigError(f"llmmeter.budgets.configure: on_store_error: expected 'open' or 'closed', "
                              f"got {on_store_error!r}")
        _enforcer.on_store_error = on_store_error
    if store is not None:
        _enforcer.store = store
        _enforcer._store_down = False  # a new store gets its own outage log line


def spent(budget: Budget, value: str = "*", now: float | None = None) -> float:
    """What ``value`` has spent under ``budget`` in the current window (from the store)."""
    import time

    start, _ = budget.window(time.time() if now is None else now)
    return _enforcer.store.spent(f"{budget.name}|{value}|{start}")[0]


def configure_from_env(environ: Mapping[str, str] | None = None) -> list[Budget]:
    """Read the budget variables (see the module doc); every one is validated before anything changes.

    Meant for start-up (llmmeter's setup calls it): a bad file or variable raises ConfigError there.
    """
    found, store, on_error = read_env(environ)
    configure(store=store, on_store_error=on_error)
    if found:
        _enforcer.add(found)
    return found


def read_env(environ: Mapping[str, str] | None = None) -> tuple[list[Budget], SpendStore | None, str]:
    """(budgets, store or None for in-memory, on_store_error) from the budget variables, changing nothing.

    Raises ConfigError for the first bad variable (llmmeter.startup checks each on its own under
    ``LLMMETER_ON_CONFIG_ERROR=warn``).
    """
    env = os.environ if environ is None else environ
    found: list[Budget] = []
    path = env.get(ENV_BUDGETS_FILE)
    if path and path.strip():
        found.extend(load_file(path.strip()))
    inline = env.get(ENV_BUDGETS)
    if inline and inline.strip():
        found.extend(parse_env_list(inline, ENV_BUDGETS))
    on_error = env_choice(ENV_BUDGET_STORE_ON_ERROR, (ON_ERROR_OPEN, ON_ERROR_CLOSED), ON_ERROR_OPEN, env)
    store: SpendStore | None = None
    raw_store = (env.get(ENV_BUDGET_STORE) or "").strip()
    if raw_store and raw_store != "memory":
        if not raw_store.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(f"environment variable {ENV_BUDGET_STORE}: expected 'memory' or a redis:// URL, "
                              f"got a value starting {raw_store[:8]!r}")
        try:
            store = RedisStore(raw_store)
        except ImportError:
            raise ConfigError(f"environment variable {ENV_BUDGET_STORE}: a Redis store needs the redis package, "
                              "which is not installed: pip install 'llmmeter[redis]'") from None
        except ValueError as exc:
            # The URL may hold a password: name the problem, never echo the value.
            raise ConfigError(f"environment variable {ENV_BUDGET_STORE}: cannot use the Redis URL it names "
                              f"({type(exc).__name__})") from None
    return found, store, on_error



_env_loaded = False


def configure_from_env_once(environ: Mapping[str, str] | None = None) -> list[Budget]:
    """:func:`configure_from_env` the first time it is called in a process; later calls do nothing.

    Both start-up paths (the distro under ``opentelemetry-instrument`` and :func:`llmmeter.configure`) call
    it, and an app may use both: budgets must not be added twice.
    """
    global _env_loaded
    if _env_loaded:
        return []
    found = configure_from_env(environ)
    _env_loaded = True
    return found
