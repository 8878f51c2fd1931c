"""Loop-guard limits for runs that a framework starts (no ``llmmeter.agent(...)`` in the app's code).

The app cannot pass limits to a run it does not open itself, so they are looked up by agent name:

* in code: ``llmmeter.frameworks.set_agent_guard("triage", max_llm_calls=20, mode="hard")``
  (``"*"`` is the default for every agent without its own entry);
* from a file named by ``LLMMETER_AGENT_GUARDS`` (YAML or JSON), read once at start-up::

      "*":      {max_llm_calls: 50, mode: soft}
      triage:   {max_llm_calls: 10, max_repeated_tool_calls: 3, mode: hard}

Limits set in code win over the file's entry for the same name. A bad file (unknown field, a limit that
is not a positive number, an unknown mode) fails at start-up with the file, agent and field named.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any

import yaml

from llmmeter.agents import MODE_HARD, MODE_SOFT, LoopGuard
from llmmeter.config import ConfigError

ENV_AGENT_GUARDS = "LLMMETER_AGENT_GUARDS"
DEFAULT_KEY = "*"
FIELDS = ("max_llm_calls", "max_tokens", "max_cost_usd", "max_repeated_tool_calls", "mode")

_lock = threading.Lock()
_from_code: dict[str, LoopGuard] = {}
_from_file: dict[str, LoopGuard] | None = None
_NO_LIMITS = LoopGuard()


def set_agent_guard(
    agent_name: str,
    *,
    max_llm_calls: int | None = None,
    max_tokens: int | None = None,
    max_cost_usd: float | None = None,
    max_repeated_tool_calls: int | None = None,
    mode: str = MODE_HARD,
) -> LoopGuard:
    """Set the limits of every framework run of ``agent_name`` (``"*"``: agents without their own)."""
    if not isinstance(agent_name, str) or not agent_name:
        raise ValueError(f"llmmeter.frameworks.set_agent_guard: agent_name must be a non-empty string: {agent_name!r}")
    guard = LoopGuard(max_llm_calls, max_tokens, max_cost_usd, max_repeated_tool_calls, mode)
    with _lock:
        _from_code[agent_name] = guard
    return guard


def clear_agent_guards() -> None:
    """Forget limits set in code and re-read ``LLMMETER_AGENT_GUARDS`` on next use (tests, reconfiguration)."""
    global _from_file
    with _lock:
        _from_code.clear()
        _from_file = None


def guard_for(agent_name: str) -> LoopGuard:
    """The limits of a run of ``agent_name``: code, then file, by name, then ``"*"``; else no limits."""
    file_guards = load()
    with _lock:
        for source in (_from_code, file_guards):
            if agent_name in source:
                return source[agent_name]
        for source in (_from_code, file_guards):
            if DEFAULT_KEY in source:
                return source[DEFAULT_KEY]
    return _NO_LIMITS


def load(environ: Mapping[str, str] | None = None) -> dict[str, LoopGuard]:
    """The file's guards (read once per process; an instrumentor calls this at start-up to fail fast)."""
    global _from_file
    if environ is None and _from_file is not None:
        return _from_file
    env = os.environ if environ is None else environ
    path = (env.get(ENV_AGENT_GUARDS) or "").strip()
    parsed = parse_file(path) if path else {}
    if environ is None:
        with _lock:
            _from_file = parsed
    return parsed


def parse_file(path: str) -> dict[str, LoopGuard]:
    where = f"{ENV_AGENT_GUARDS}={path}"
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)  # JSON is YAML
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read the file: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML/JSON: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of agent name -> limits, got {type(data).__name__}")
    return {str(name): parse_entry(where, str(name), entry) for name, entry in data.items()}


def parse_entry(where: str, name: str, entry: Any) -> LoopGuard:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: agent {name!r}: expected a mapping of limits, got {entry!r}")
    unknown = sorted(str(k) for k in entry if k not in FIELDS)
    if unknown:
        raise ConfigError(
            f"{where}: agent {name!r}: unknown field(s) {', '.join(unknown)} (known: {', '.join(FIELDS)})"
        )
    mode = entry.get("mode", MODE_HARD)
    if mode not in (MODE_SOFT, MODE_HARD):
        raise ConfigError(f"{where}: agent {name!r}: field mode: expected 'soft' or 'hard', got {mode!r}")
    limits = {k: entry.get(k) for k in FIELDS if k != "mode"}
    for field_name, value in limits.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
            raise ConfigError(f"{where}: agent {name!r}: field {field_name}: expected a positive number, got {value!r}")
    return LoopGuard(mode=mode, **limits)
