"""llmmeter's settings, read from ``LLMMETER_*`` environment variables once and validated at start-up.

A bad value is a deployment mistake that would otherwise show up days later as wrong numbers on a
dashboard, so it fails fast with :class:`ConfigError` naming the variable and the value.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
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
    raise ConfigError(f"environment variable {name}: expected true/false, got {raw!r}")


def env_choice(name: str, choices: tuple[str, ...], default: str, environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    value = raw.strip().lower()
    if value not in choices:
        raise ConfigError(f"environment variable {name}: expected one of {', '.join(choices)}, got {raw!r}")
    return value


def env_int(name: str, default: int, *, minimum: int = 0, environ: Mapping[str, str] | None = None) -> int:
    env = os.environ if environ is None else environ
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(f"environment variable {name}: expected an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"environment variable {name}: expected an integer >= {minimum}, got {raw!r}")
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
        raise ConfigError(f"environment variable {name}: expected a number of seconds, got {raw!r}") from None
    if not 0 < value <= 86400:
        raise ConfigError(f"environment variable {name}: expected seconds > 0 and <= 86400, got {raw!r}")
    return value


def env_list(name: str, default: tuple[str, ...], environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    env = os.environ if environ is None else environ
    raw = env.get(name)
    if raw is None:
        return default
    items = tuple(item.strip() for item in raw.split(",") if item.strip())
    for item in items:
        if not item.replace("_", "").replace("-", "").isalnum():
            raise ConfigError(f"environment variable {name}: item {item!r} is not a plain key (letters, digits, _, -)")
    return items


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
