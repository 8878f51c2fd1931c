"""The one start-up check of llmmeter's configuration, shared by every setup path and ``llmmeter check-config``.

:func:`check` reads every ``LLMMETER_*`` setting, the price table and the budget variables exactly as the
process is about to use them, and returns a :class:`Report`; nothing else decides whether a configuration
is good. ``opentelemetry-instrument`` (the distro), :func:`llmmeter.configure` and ``check-config`` all call
it, so check-config cannot say OK to a configuration start-up refuses.

What a problem does depends on ``LLMMETER_ON_CONFIG_ERROR``:

* ``exit`` (default): start-up stops with the problems named (exit code 2 under ``opentelemetry-instrument``,
  :class:`~llmmeter.config.ConfigError` from ``configure()``). A typo in a budget must stop a deployment, not
  leave spending unlimited, so this is the default for everything, money settings included.
* ``warn``: the app starts with the broken part disabled, and says so loudly: an ERROR log line per part,
  the metric ``llmmeter.config.errors`` (one point per part, value 1, label ``llmmeter.config.part``) and a
  line in the exit summary. Disabled means: a bad variable keeps its default; a bad price file or alias
  variable leaves the shipped prices only (models only in that file are reported unpriced, never $0); a bad
  budgets file or ``LLMMETER_BUDGETS`` adds none of its budgets; a bad store falls back to the in-process
  store (limits then hold per process, not across hosts).

Unknown ``LLMMETER_*`` variables are never errors (a variable from a newer release must not stop an older
one) but always get a warning naming the closest known variable.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

from llmmeter import config, names
from llmmeter.config import ConfigError, Settings

_log = logging.getLogger("llmmeter.config")

_VARIABLE = re.compile(r"^environment variable (LLMMETER_[A-Z0-9_]+|OTEL_[A-Z0-9_]+)")
PART_PRICES = config.ENV_PRICE_FILE
EXIT_CONFIG_ERROR = 2  # the exit code of a start-up stopped by a configuration error
_BUDGET_STORE_VARS = ("LLMMETER_BUDGET_STORE", "LLMMETER_BUDGET_STORE_ON_ERROR")


@dataclass(frozen=True)
class Problem:
    """One broken part: ``part`` is the variable it came from, ``disabled`` what ``warn`` turns off."""

    part: str
    error: ConfigError
    disabled: str


@dataclass
class Report:
    settings: Settings
    policy: str
    problems: list[Problem] = field(default_factory=list)
    unknown_variables: list[tuple[str, str | None]] = field(default_factory=list)

    @property
    def fatal(self) -> bool:
        """Whether start-up must stop: any problem under ``exit``."""
        return bool(self.problems) and self.policy == config.ON_CONFIG_ERROR_EXIT

    def error(self) -> ConfigError:
        """Every problem in one error (the operator fixes them all in one go, not one per restart)."""
        return ConfigError("; ".join(str(problem.error) for problem in self.problems))


def _part_of(error: ConfigError, default: str) -> str:
    match = _VARIABLE.match(str(error))
    return match.group(1) if match else default


def _policy(environ: Mapping[str, str]) -> str:
    # The switch itself cannot be "warned past": a typo in it fails whatever it was meant to be.
    return config.env_choice(
        config.ENV_ON_CONFIG_ERROR, (config.ON_CONFIG_ERROR_EXIT, config.ON_CONFIG_ERROR_WARN),
        config.ON_CONFIG_ERROR_EXIT, environ,
    )


def _check_settings(environ: Mapping[str, str], report_problems: list[Problem]) -> Settings:
    errors: list[ConfigError] = []
    with config.collecting_errors(errors):
        settings = Settings.from_env(environ)
    for error in errors:
        report_problems.append(Problem(_part_of(error, "settings"), error, "its default value is used"))
    return settings


def _check_prices(apply: bool) -> Problem | None:
    from llmmeter import pricing

    try:
        pricing.get_price_table()  # loads LLMMETER_PRICE_FILE now: a bad file fails here, not on the first call
    except ConfigError as error:
        if apply:
            pricing.set_price_table(pricing._shipped_table())  # the file is the broken part
        return Problem(_part_of(error, PART_PRICES), error,
                       "only the shipped prices are used (models only in that file are reported unpriced)")
    return None


def _check_budgets(environ: Mapping[str, str], policy: str) -> list[Problem]:
    """Budget variables; under ``warn`` each broken source is checked alone and left out, the rest applied."""
    from llmmeter import budgets

    try:
        budgets.configure_from_env_once(environ)
        return []
    except ConfigError as error:
        if policy != config.ON_CONFIG_ERROR_WARN:
            return [Problem(_part_of(error, "budgets"), error, "")]
    problems: list[Problem] = []
    broken: set[str] = set()
    sources = {
        budgets.ENV_BUDGETS_FILE: "none of this file's budgets is enforced",
        budgets.ENV_BUDGETS: "none of these budgets is enforced",
        _BUDGET_STORE_VARS[0]: "the in-process store is used: limits hold per process, not across processes",
    }
    for variable, disabled in sources.items():
        alone = {name: environ[name] for name in (_BUDGET_STORE_VARS if variable in _BUDGET_STORE_VARS
                                                  else (variable,)) if name in environ}
        if not alone:
            continue
        try:
            budgets.read_env(alone)
        except ConfigError as error:
            problems.append(Problem(_part_of(error, variable), error, disabled))
            broken.update(alone)
    kept = {name: value for name, value in environ.items() if name not in broken}
    budgets.configure_from_env_once(kept)
    return problems


def _check_agent_guards(environ: Mapping[str, str], policy: str) -> Problem | None:
    """``LLMMETER_AGENT_GUARDS`` (per-agent loop-guard limits of framework runs, llmmeter.frameworks)."""
    from llmmeter.frameworks import guards

    try:
        guards.load(environ)
    except ConfigError as error:
        if policy == config.ON_CONFIG_ERROR_WARN:
            with guards._lock:
                guards._from_file = {}  # the file is the broken part: runs get no limits from it
        return Problem(guards.ENV_AGENT_GUARDS, error, "no per-agent loop-guard limits are read from that file")
    return None


_lock = threading.Lock()
_registered_parts: set[str] = set()
_instrument_created = False


def _record_disabled(problems: list[Problem]) -> None:
    """Log each disabled part, put it in the exit summary and in the ``llmmeter.config.errors`` metric."""
    global _instrument_created
    from llmmeter import _providers, summary

    with _lock:
        new = [p for p in problems if p.part not in _registered_parts]
        _registered_parts.update(p.part for p in new)
        create = bool(_registered_parts) and not _instrument_created
        _instrument_created = _instrument_created or create
    for problem in new:
        line = (f"llmmeter: configuration error, kept running with {problem.part} disabled "
                f"({config.ENV_ON_CONFIG_ERROR}=warn): {problem.error}; {problem.disabled}")
        _log.error(line)
        summary.add_problem(f"{problem.part} DISABLED (configuration error): {problem.disabled}")
    if create:
        from opentelemetry.metrics import Observation

        def observe(_options: object) -> list[Observation]:
            with _lock:
                parts = sorted(_registered_parts)
            return [Observation(1, {names.LABEL_CONFIG_PART: part}) for part in parts]

        try:
            _providers.meter().create_observable_counter(
                names.METRIC_CONFIG_ERRORS, callbacks=[observe], unit=names.METRIC_SPECS[names.METRIC_CONFIG_ERRORS][1],
                description="llmmeter settings disabled at start-up by a configuration error (ON_CONFIG_ERROR=warn)",
            )
        except Exception:
            _log.debug("llmmeter: could not create the config-error metric", exc_info=True)


def disabled_parts() -> tuple[str, ...]:
    """The parts disabled in this process by a configuration error (``warn``)."""
    with _lock:
        return tuple(sorted(_registered_parts))


def check(environ: Mapping[str, str] | None = None, *, settings: Settings | None = None) -> Report:
    """Validate and put in place every setting; never raises for a bad value (only for a bad policy value).

    ``settings``: already chosen in code (``configure(settings=...)``), so the variables they replace are
    not read. The caller decides what a :class:`Report` with problems means (see the module doc);
    :func:`run` is what the setup paths call.
    """
    env = os.environ if environ is None else environ
    policy = _policy(env)
    problems: list[Problem] = []
    if settings is None:
        settings = _check_settings(env, problems)
        if not problems or policy == config.ON_CONFIG_ERROR_WARN:
            config.set_settings(settings)
    prices = _check_prices(policy == config.ON_CONFIG_ERROR_WARN)
    if prices is not None:
        problems.append(prices)
    problems.extend(_check_budgets(env, policy))
    agent_guards = _check_agent_guards(env, policy)
    if agent_guards is not None:
        problems.append(agent_guards)
    return Report(settings, policy, problems, config.unknown_variables(env))


_ran = False


def run_once() -> Settings:
    """:func:`run` unless it already ran in this process (the distro, then the app's ``configure()``).

    Settings already set in code are kept (``attribution.configure()`` before ``llmmeter.configure()``).
    """
    current = config.settings_if_set()
    if _ran and current is not None:
        return current
    return run(settings=current)


def run(environ: Mapping[str, str] | None = None, *, settings: Settings | None = None) -> Settings:
    """Start-up: :func:`check`, warn about unknown variables, then raise (``exit``) or disable (``warn``).

    Raises :class:`ConfigError` naming every problem when start-up must stop.
    """
    global _ran
    report = check(environ, settings=settings)
    _ran = True
    for name, closest in report.unknown_variables:
        _log.warning("llmmeter: %s", config.unknown_variable_message(name, closest))
    if report.fatal:
        raise report.error()
    if report.problems:
        _record_disabled(report.problems)
    return report.settings


def _reset_for_tests() -> None:
    global _ran, _instrument_created
    with _lock:
        _registered_parts.clear()
        _instrument_created = False
    _ran = False
