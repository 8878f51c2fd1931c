"""llmmeter's settings, read from ``LLMMETER_*`` environment variables once and validated at start-up.

A bad value is a deployment mistake that would otherwise show up days later as wrong numbers on a
dashboard, so it fails fast with :class:`ConfigError` naming the variable and the value.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

TRUE_VALUES = frozenset({"1", "true", "yes", "on"})
FALSE_VALUES = frozenset({"0", "false", "no", "off", ""})

ENV_CAPTURE_CONTENT = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
ENV_STREAM_USAGE = "LLMMETER_STREAM_INCLUDE_USAGE"
ENV_SUMMARY = "LLMMETER_SUMMARY"
ENV_LABEL_KEYS = "LLMMETER_LABEL_KEYS"
ENV_TRUST_INBOUND_BAGGAGE = "LLMMETER_TRUST_INBOUND_BAGGAGE"
ENV_MAX_SERIES_PER_KEY = "LLMMETER_MAX_VALUES_PER_LABEL"
ENV_PRICE_FILE = "LLMMETER_PRICE_FILE"
ENV_MODEL_ALIASES = "LLMMETER_MODEL_ALIASES"
ENV_EXPORT_TIMEOUT = "LLMMETER_EXPORT_TIMEOUT"  # seconds the exit export may take (llmmeter.shutdown)
DEFAULT_EXPORT_TIMEOUT_S = 3.0
ENV_LEDGER = "LLMMETER_LEDGER"  # a directory for the cost ledger, or "off" (llmmeter.ledger)
# Prices (llmmeter.pricing): negotiated discounts, and the opt-in in-process refresh of the price table.
ENV_DISCOUNTS = "LLMMETER_DISCOUNTS"
ENV_PRICE_REFRESH = "LLMMETER_PRICE_REFRESH"
ENV_PRICE_REFRESH_FROM = "LLMMETER_PRICE_REFRESH_FROM"


class ConfigError(ValueError):
    """A price file, config file or environment variable llmmeter cannot use.

    The message always names where the value came from (file or variable), the field and the value,
    so the operator can fix it without reading llmmeter's source.
    """


def env_bool(name: str, default: bool, environ: Mapping[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    raw = env.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in TRUE_VALUES:
        return True
    if value in FALSE_VALUES:
        return False
    _raise_or_collect(ConfigError(f"environment variable {name}: expected true/false, got {raw!r}"))
    return default


def env_choice(name: str, choices: tuple[str, ...], default: str, environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    value = raw.strip().lower()
    if value not in choices:
        _raise_or_collect(ConfigError(f"environment variable {name}: expected one of {', '.join(choices)}, "
                                      f"got {raw!r}"))
        return default
    return value


def env_int(name: str, default: int, *, minimum: int = 0, environ: Mapping[str, str] | None = None) -> int:
    env = os.environ if environ is None else environ
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        _raise_or_collect(ConfigError(f"environment variable {name}: expected an integer, got {raw!r}"))
        return default
    if value < minimum:
        _raise_or_collect(ConfigError(f"environment variable {name}: expected an integer >= {minimum}, got {raw!r}"))
        return default
    return value


def env_seconds(name: str, default: float, environ: Mapping[str, str] | None = None) -> float:
    """A positive number of seconds (at most a day: a bigger value is a unit mistake, e.g. milliseconds)."""
    env = os.environ if environ is None else environ
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw.strip())
    except ValueError:
        _raise_or_collect(ConfigError(f"environment variable {name}: expected a number of seconds, got {raw!r}"))
        return default
    if not 0 < value <= 86400:
        _raise_or_collect(ConfigError(f"environment variable {name}: expected seconds > 0 and <= 86400, got {raw!r}"))
        return default
    return value


def env_list(name: str, default: tuple[str, ...], environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    env = os.environ if environ is None else environ
    raw = env.get(name)
    if raw is None:
        return default
    items = tuple(item.strip() for item in raw.split(",") if item.strip())
    for item in items:
        if not item.replace("_", "").replace("-", "").isalnum():
            _raise_or_collect(ConfigError(f"environment variable {name}: item {item!r} is not a plain key "
                                          "(letters, digits, _, -)"))
            return default
    return items


def env_ledger(environ: Mapping[str, str] | None = None) -> str | None:
    """``LLMMETER_LEDGER``: the ledger directory, ``"off"`` (``off``/``false``/``0``/empty), or None when unset
    (then the zero-infrastructure entry points use the default place: see :func:`llmmeter.ledger.resolve`)."""
    env = os.environ if environ is None else environ
    raw = env.get(ENV_LEDGER)
    if raw is None:
        return None
    if raw.strip().lower() in FALSE_VALUES:
        return "off"
    value = raw.strip()
    if "\x00" in value:
        raise ConfigError(f"environment variable {ENV_LEDGER}: not a directory path, got {raw!r}")
    return value


@dataclass(frozen=True)
class Settings:
    """Everything llmmeter reads from the environment, validated."""

    capture_content: bool = False
    stream_include_usage: bool = False
    summary: str = "auto"  # auto | always | off
    label_keys: tuple[str, ...] = field(default=("tenant", "feature", "team", "route", "environment"))
    trust_inbound_baggage: bool = True
    max_values_per_label: int = 1000
    export_timeout_s: float = DEFAULT_EXPORT_TIMEOUT_S  # the exit export's budget (llmmeter.shutdown)
    ledger: str | None = None  # the cost ledger's directory, "off", or None: unset (see llmmeter.ledger.resolve)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        from llmmeter import names

        return cls(
            capture_content=env_bool(ENV_CAPTURE_CONTENT, False, environ),
            stream_include_usage=env_bool(ENV_STREAM_USAGE, False, environ),
            summary=env_choice(ENV_SUMMARY, ("auto", "always", "off"), "auto", environ),
            label_keys=env_list(ENV_LABEL_KEYS, names.DEFAULT_LABEL_KEYS, environ),
            trust_inbound_baggage=env_bool(ENV_TRUST_INBOUND_BAGGAGE, True, environ),
            max_values_per_label=env_int(ENV_MAX_SERIES_PER_KEY, 1000, minimum=1, environ=environ),
            export_timeout_s=env_seconds(ENV_EXPORT_TIMEOUT, DEFAULT_EXPORT_TIMEOUT_S, environ),
            ledger=env_ledger(environ),
        )


_settings: Settings | None = None


def settings() -> Settings:
    """The process-wide settings, read from the environment on first use (start-up)."""
    global _settings
    if _settings is None:
        _settings = Settings.from_env()
    return _settings


def set_settings(value: Settings | None) -> None:
    """Replace the process-wide settings (tests, programmatic configuration). None re-reads the env."""
    global _settings
    _settings = value


# --- every LLMMETER_* variable llmmeter reads -------------------------------------------------------------
# Adding a variable is one line here (name: what it does); tests/test_config_registry.py fails when a
# LLMMETER_* name used anywhere in the package is missing, and a set variable that is not listed gets a
# start-up warning naming the closest known one (a typo like LLMMETER_SUMARY must not be ignored silently).
KNOWN_VARIABLES: dict[str, str] = {
    ENV_STREAM_USAGE: "add stream_options.include_usage to OpenAI streaming chat calls",
    ENV_SUMMARY: "exit summary: auto, always or off",
    ENV_LABEL_KEYS: "attribution keys that become metric labels",
    ENV_TRUST_INBOUND_BAGGAGE: "read attribution from inbound W3C baggage",
    ENV_MAX_SERIES_PER_KEY: "distinct values per label before they fold into 'other'",
    ENV_PRICE_FILE: "extra price files (os.pathsep-separated)",
    ENV_MODEL_ALIASES: "private model names -> priced models",
    "LLMMETER_BUDGETS_FILE": "budgets file (YAML/JSON)",
    "LLMMETER_BUDGETS": "budgets, ';'-separated one-line specs",
    "LLMMETER_BUDGET_STORE": "spend store: memory or a redis:// URL",
    "LLMMETER_BUDGET_STORE_ON_ERROR": "hard budgets when the store is down: open or closed",
    "LLMMETER_ON_CONFIG_ERROR": "a bad setting at start-up: exit (default) or warn",
    "LLMMETER_EXPORT_TIMEOUT": "seconds the exit waits for the last export",
    "LLMMETER_AGENT_GUARDS": "per-agent loop-guard limits of framework runs (YAML/JSON file)",
    "LLMMETER_DISCOUNTS": "negotiated discounts applied to prices",
    "LLMMETER_LEDGER": "a directory for the cost ledger, or off",
    "LLMMETER_PRICE_REFRESH": "refresh the price table from a source",
    "LLMMETER_PRICE_REFRESH_FROM": "the source a price refresh reads",
}
ENV_ON_CONFIG_ERROR = "LLMMETER_ON_CONFIG_ERROR"
ON_CONFIG_ERROR_EXIT = "exit"
ON_CONFIG_ERROR_WARN = "warn"
VARIABLE_PREFIX = "LLMMETER_"


def closest_name(name: str, known: Iterable[str]) -> str | None:
    """The known name most like ``name`` (a typo's likely intent), or None when nothing is close."""
    import difflib

    found = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return found[0] if found else None


def unknown_variables(environ: Mapping[str, str] | None = None) -> list[tuple[str, str | None]]:
    """``(variable, closest known name or None)`` for every set ``LLMMETER_*`` variable llmmeter does not read."""
    env = os.environ if environ is None else environ
    cut = len(VARIABLE_PREFIX)  # compared without the shared prefix, which would make every name look close
    suffixes = [known[cut:] for known in KNOWN_VARIABLES]
    found = []
    for name in sorted(env):
        if name.startswith(VARIABLE_PREFIX) and name not in KNOWN_VARIABLES:
            closest = closest_name(name[cut:], suffixes)
            found.append((name, VARIABLE_PREFIX + closest if closest else None))
    return found


def unknown_variable_message(name: str, closest: str | None) -> str:
    hint = f" (did you mean {closest}?)" if closest else f" (known: {', '.join(sorted(KNOWN_VARIABLES))})"
    return f"environment variable {name} is not an llmmeter setting and is ignored{hint}"


class _Collector(threading.local):
    errors: list[ConfigError] | None = None


_collector = _Collector()


@contextmanager
def collecting_errors(errors: list[ConfigError]) -> Iterator[None]:
    """While active (on this thread), a bad variable read through ``env_*`` is appended to ``errors`` and
    its default used, instead of raising: ``LLMMETER_ON_CONFIG_ERROR=warn`` disables only the broken part."""
    previous = _collector.errors
    _collector.errors = errors
    try:
        yield
    finally:
        _collector.errors = previous


def _raise_or_collect(error: ConfigError) -> None:
    if _collector.errors is None:
        raise error
    _collector.errors.append(error)


def settings_if_set() -> Settings | None:
    """The process-wide settings if something set them already (start-up, ``configure``), else None."""
    return _settings
