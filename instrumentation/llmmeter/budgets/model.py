"""What a budget is, and how one is written down (API, env var, YAML/JSON file).

A budget limits what the calls matching one attribution value may spend in a fixed time window:

* ``tenant=acme: $50/day hard`` -- tenant acme, 50 USD per UTC day, calls refused past it;
* ``user=*: 200k tokens/hour`` -- *each* user separately, 200,000 tokens (input + output) per hour;
* ``feature=summarize: $5/hour`` -- soft: a span event, a counter and a log line at 80% and 100%;
* ``model=gpt-4o: 1000 calls/day``, ``*: $200/day`` (every call) work too.

Windows are fixed and aligned to the Unix epoch (a "day" is a UTC day), so every process and host that
shares a spend store agrees on when a window starts and resets without talking to each other.
Every parse error is a :class:`llmmeter.config.ConfigError` naming where the budget came from, the field
and the value: a typo in a budget file must stop the deployment, not silently leave spending unlimited.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from llmmeter.attribution import sanitize_value
from llmmeter.config import ConfigError

UNIT_USD = "usd"
UNIT_TOKENS = "tokens"
UNIT_CALLS = "calls"
UNITS: tuple[str, ...] = (UNIT_USD, UNIT_TOKENS, UNIT_CALLS)
MODE_SOFT = "soft"
MODE_HARD = "hard"
MODES: tuple[str, ...] = (MODE_SOFT, MODE_HARD)
KEY_MODEL = "model"  # matches the request's model instead of an attribution key
ANY = "*"  # as the value: each value counted separately; as the whole match: every call
DEFAULT_THRESHOLDS: tuple[float, ...] = (0.8, 1.0)

_WINDOW_WORDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 7 * 86400}
_WINDOW_SUFFIX = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_UNIT_WORDS = {
    "usd": UNIT_USD, "$": UNIT_USD, "dollar": UNIT_USD, "dollars": UNIT_USD,
    "token": UNIT_TOKENS, "tokens": UNIT_TOKENS,
    "call": UNIT_CALLS, "calls": UNIT_CALLS, "request": UNIT_CALLS, "requests": UNIT_CALLS,
}
_KEY_OK = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_SPEC = re.compile(
    r"^\s*(?P<match>[^:]+?)\s*:\s*(?P<limit>[^/]+?)\s*/\s*(?P<window>[A-Za-z0-9. ]+?)\s*(?:\s(?P<mode>soft|hard))?\s*$",
    re.IGNORECASE,
)
_AMOUNT = re.compile(
    r"^(?P<dollar>\$)?\s*(?P<number>[0-9]+(?:\.[0-9]+)?)\s*(?P<scale>[kKmM])?\s*(?P<unit>[A-Za-z$]+)?$"
)


@dataclass(frozen=True)
class Budget:
    """One limit: calls whose ``key`` attribute equals ``value`` (or, for ``value="*"``, each value on its
    own) may spend ``limit`` ``unit`` per window of ``window_seconds``.

    ``mode="hard"`` refuses calls past the limit with :class:`llmmeter.BudgetExceeded`; ``"soft"`` only
    reports. ``thresholds`` are the fractions of the limit at which crossings are reported.
    """

    key: str
    value: str
    limit: float
    unit: str
    window_seconds: int
    mode: str = MODE_SOFT
    name: str = ""
    thresholds: tuple[float, ...] = field(default=DEFAULT_THRESHOLDS)

    def __post_init__(self) -> None:
        if not self.name:
            object.__setattr__(self, "name", self.spec)

    @property
    def match_text(self) -> str:
        return ANY if self.key == ANY else f"{self.key}={self.value}"

    @property
    def limit_text(self) -> str:
        if self.unit == UNIT_USD:
            return f"${_number(self.limit)}"
        return f"{_number(self.limit)} {self.unit}"

    @property
    def window_text(self) -> str:
        for word, seconds in _WINDOW_WORDS.items():
            if self.window_seconds == seconds:
                return word
        for suffix, seconds in sorted(_WINDOW_SUFFIX.items(), key=lambda kv: -kv[1]):
            if self.window_seconds % seconds == 0:
                return f"{self.window_seconds // seconds}{suffix}"
        return f"{self.window_seconds}s"

    @property
    def spec(self) -> str:
        """The budget in the one-line form :func:`parse_spec` reads."""
        return f"{self.match_text}: {self.limit_text}/{self.window_text} {self.mode}"

    @property
    def wildcard(self) -> bool:
        return self.key != ANY and self.value == ANY

    def counted_value(self, attribution: Mapping[str, str], model: str | None) -> str | None:
        """The value this call counts under for this budget, or None when the budget does not apply."""
        if self.key == ANY:
            return ANY
        actual = model if self.key == KEY_MODEL else attribution.get(self.key)
        if not actual:
            return None
        if self.value == ANY or self.value == actual:
            return actual
        return None

    def window(self, now: float) -> tuple[int, int]:
        """(start, end) of the window containing ``now``, Unix seconds."""
        start = int(now // self.window_seconds) * self.window_seconds
        return start, start + self.window_seconds


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


# --- parsing ------------------------------------------------------------------------------------


def _fail(source: str, where: str, problem: str, value: object) -> ConfigError:
    return ConfigError(f"{source}: {where}: {problem}, got {value!r}")


def parse_window(raw: object, source: str = "budget", where: str = "window") -> int:
    """``day``, ``hour``, ``1d``, ``30m``, ``90s``, ``"2 hours"`` or a number of seconds -> seconds."""
    if isinstance(raw, bool):
        raise _fail(source, where, "expected a window like 'day', 'hour', '30m' or seconds", raw)
    if isinstance(raw, (int, float)):
        if raw < 1 or raw != int(raw):
            raise _fail(source, where, "expected a whole number of seconds >= 1", raw)
        return int(raw)
    if isinstance(raw, str):
        text = raw.strip().lower()
        if text in _WINDOW_WORDS:
            return _WINDOW_WORDS[text]
        match = re.fullmatch(r"([0-9]+)\s*([a-z]+)", text)
        if match:
            count, word = int(match.group(1)), match.group(2)
            seconds = _WINDOW_SUFFIX.get(word) or _WINDOW_WORDS.get(word.rstrip("s"))
            if seconds and count >= 1:
                return count * seconds
        if text.isdigit() and int(text) >= 1:
            return int(text)
    raise _fail(source, where, "expected a window like 'day', 'hour', '1d', '30m' or a number of seconds", raw)


def parse_amount(raw: object, unit: object, source: str = "budget", where: str = "limit") -> tuple[float, str]:
    """``$50``, ``50 usd``, ``200k tokens``, ``1.5M tokens``, ``100 calls``, or a number plus ``unit``."""
    explicit_unit = None
    if unit is not None:
        if not isinstance(unit, str) or unit.strip().lower() not in _UNIT_WORDS:
            raise _fail(source, where.rsplit(".", 1)[0] + ".unit" if "." in where else "unit",
                        f"expected one of {', '.join(UNITS)}", unit)
        explicit_unit = _UNIT_WORDS[unit.strip().lower()]
    if isinstance(raw, bool) or raw is None:
        raise _fail(source, where, "expected an amount like '$50', '200k tokens' or a number", raw)
    if isinstance(raw, (int, float)):
        amount, found_unit = float(raw), None
    elif isinstance(raw, str):
        match = _AMOUNT.match(raw.strip())
        if not match:
            raise _fail(source, where, "expected an amount like '$50', '200k tokens', '100 calls'", raw)
        amount = float(match.group("number")) * {"k": 1e3, "m": 1e6}.get((match.group("scale") or "").lower(), 1)
        word = (match.group("unit") or "").lower()
        if word and word not in _UNIT_WORDS:
            raise _fail(source, where, f"unknown unit {word!r} (expected one of {', '.join(UNITS)})", raw)
        found_unit = UNIT_USD if match.group("dollar") else (_UNIT_WORDS[word] if word else None)
        if match.group("dollar") and word and _UNIT_WORDS[word] != UNIT_USD:
            raise _fail(source, where, "a '$' amount cannot be in " + word, raw)
    else:
        raise _fail(source, where, "expected an amount like '$50', '200k tokens' or a number", raw)
    if explicit_unit and found_unit and explicit_unit != found_unit:
        raise _fail(source, where, f"the amount's unit ({found_unit}) contradicts unit={explicit_unit}", raw)
    final_unit = explicit_unit or found_unit
    if final_unit is None:
        raise _fail(source, where, f"no unit: write '$50', '200k tokens', '100 calls' or set unit ({', '.join(UNITS)})",
                    raw)
    if not math.isfinite(amount) or amount <= 0:
        raise _fail(source, where, "expected a positive amount", raw)
    return amount, final_unit


def parse_match(raw: object, source: str = "budget", where: str = "match") -> tuple[str, str]:
    """``tenant=acme`` / ``user=*`` / ``*`` / ``{"tenant": "acme"}`` -> (key, value)."""
    if isinstance(raw, Mapping):
        if len(raw) != 1:
            raise _fail(source, where, "expected exactly one key: value", dict(raw))
        key, value = next(iter(raw.items()))
    elif isinstance(raw, str):
        text = raw.strip()
        if text == ANY:
            return ANY, ANY
        if "=" not in text:
            raise _fail(source, where, "expected 'key=value' (e.g. tenant=acme, user=*) or '*'", raw)
        key, value = (part.strip() for part in text.split("=", 1))
    else:
        raise _fail(source, where, "expected 'key=value' (e.g. tenant=acme, user=*) or '*'", raw)
    if not isinstance(key, str) or not _KEY_OK.match(key):
        raise _fail(source, where, "the key must be an attribution key like tenant, user, feature, or 'model'", key)
    _check_known_key(key, source, where)
    value = "" if value is None else str(value)
    if value != ANY and sanitize_value(value) is None:
        raise _fail(source, where, "the value must be 1-128 letters, digits, space or _.:@/+=-, or '*'", value)
    return key, value


def _check_known_key(key: str, source: str, where: str) -> None:
    """A budget on a key llmmeter never reads (``tennant=acme``) would never apply: spending stays unlimited."""
    from llmmeter.attribution import allowed_keys
    from llmmeter.config import closest_name

    known = (*allowed_keys(), KEY_MODEL)
    if key in known:
        return
    closest = closest_name(key, known)
    hint = f"did you mean {closest!r}? " if closest else ""
    raise _fail(source, where, f"unknown key {key!r}, so this budget would never apply ({hint}known keys: "
                f"{', '.join(known)}; add label keys with LLMMETER_LABEL_KEYS)", key)


def parse_mode(raw: object, source: str = "budget", where: str = "mode") -> str:
    if raw is None:
        return MODE_SOFT
    if not isinstance(raw, str) or raw.strip().lower() not in MODES:
        raise _fail(source, where, "expected 'soft' or 'hard'", raw)
    return raw.strip().lower()


def parse_thresholds(raw: object, source: str = "budget", where: str = "thresholds") -> tuple[float, ...]:
    if raw is None:
        return DEFAULT_THRESHOLDS
    if not isinstance(raw, (list, tuple)) or not raw:
        raise _fail(source, where, "expected a list of fractions of the limit, e.g. [0.8, 1.0]", raw)
    result = []
    for item in raw:
        if isinstance(item, bool) or not isinstance(item, (int, float)) or not 0 < item <= 1:
            raise _fail(source, where, "each threshold must be a fraction in (0, 1]", item)
        result.append(float(item))
    return tuple(sorted(set(result)))


def parse_spec(text: str, source: str = "budget", *, mode: str | None = None, name: str | None = None) -> Budget:
    """Read the one-line form: ``<key>=<value|*>: <amount>/<window> [soft|hard]``."""
    if not isinstance(text, str):
        raise _fail(source, "spec", "expected a string like 'tenant=acme: $50/day hard'", text)
    match = _SPEC.match(text)
    if not match:
        raise _fail(source, "spec", "expected '<key>=<value|*>: <amount>/<window> [soft|hard]', "
                    "e.g. 'tenant=acme: $50/day hard'", text)
    key, value = parse_match(match.group("match"), source, "spec match")
    amount, unit = parse_amount(match.group("limit"), None, source, "spec limit")
    window = parse_window(match.group("window"), source, "spec window")
    final_mode = parse_mode(mode if mode is not None else match.group("mode"), source, "mode")
    return Budget(key, value, amount, unit, window, final_mode, name or "")


_FIELDS = frozenset({"spec", "match", "limit", "unit", "window", "mode", "name", "thresholds"})


def from_mapping(raw: Mapping[str, Any], source: str = "budget", where: str = "budget") -> Budget:
    """Read one budget from a mapping: either ``{spec: "...", mode?, name?, thresholds?}`` or
    ``{match, limit, unit?, window, mode?, name?, thresholds?}``."""
    unknown = sorted(set(raw) - _FIELDS)
    if unknown:
        raise _fail(source, f"{where}.{unknown[0]}", f"unknown field (expected {', '.join(sorted(_FIELDS))})",
                    raw[unknown[0]])
    name = raw.get("name")
    if name is not None and (not isinstance(name, str) or sanitize_value(name) is None):
        raise _fail(source, f"{where}.name", "expected 1-128 letters, digits, space or _.:@/+=-", name)
    thresholds = parse_thresholds(raw.get("thresholds"), source, f"{where}.thresholds")
    if "spec" in raw:
        budget = parse_spec(raw["spec"], source, mode=raw.get("mode"), name=name)
        return Budget(budget.key, budget.value, budget.limit, budget.unit, budget.window_seconds, budget.mode,
                      budget.name if name else "", thresholds)
    for required in ("match", "limit", "window"):
        if required not in raw:
            raise _fail(source, f"{where}.{required}", "missing required field", None)
    key, value = parse_match(raw["match"], source, f"{where}.match")
    amount, unit = parse_amount(raw["limit"], raw.get("unit"), source, f"{where}.limit")
    window = parse_window(raw["window"], source, f"{where}.window")
    mode = parse_mode(raw.get("mode"), source, f"{where}.mode")
    return Budget(key, value, amount, unit, window, mode, name or "", thresholds)


def parse_items(items: object, source: str) -> list[Budget]:
    """A list whose items are one-line specs or mappings (the body of a budget file)."""
    if isinstance(items, Mapping):
        if set(items) != {"budgets"}:
            raise _fail(source, "top level", "expected a list of budgets or {budgets: [...]}", sorted(items))
        items = items["budgets"]
    if not isinstance(items, list):
        raise _fail(source, "budgets", "expected a list", items)
    budgets = []
    for index, item in enumerate(items):
        where = f"budgets[{index}]"
        if isinstance(item, str):
            budgets.append(parse_spec(item, f"{source}: {where}"))
        elif isinstance(item, Mapping) and len(item) == 1 and _is_spec_key(next(iter(item))):
            # YAML reads "- tenant=acme: $50/day hard" as {"tenant=acme": "$50/day hard"}: the spec form.
            key, rest = next(iter(item.items()))
            budgets.append(parse_spec(f"{key}: {rest}", f"{source}: {where}"))
        elif isinstance(item, Mapping):
            budgets.append(from_mapping(item, source, where))
        else:
            raise _fail(source, where, "expected a one-line spec or a mapping", item)
    return budgets


def _is_spec_key(key: object) -> bool:
    return isinstance(key, str) and key not in _FIELDS and ("=" in key or key.strip() == ANY)


def load_file(path: str | os.PathLike[str]) -> list[Budget]:
    """Budgets from a YAML or JSON file (a list, or ``{budgets: [...]}``)."""
    import yaml

    source = f"budget file {os.fspath(path)}"
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read it ({exc.strerror or exc})") from None
    try:
        data = json.loads(text) if os.fspath(path).endswith(".json") else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"{source}: not valid {'JSON' if os.fspath(path).endswith('.json') else 'YAML'}: "
                          f"{str(exc).splitlines()[0]}") from None
    return parse_items(data if data is not None else [], source)


def parse_env_list(raw: str, variable: str) -> list[Budget]:
    """``LLMMETER_BUDGETS="tenant=acme: $50/day hard; user=*: 200k tokens/hour"``."""
    budgets = []
    for index, item in enumerate(part for part in raw.split(";") if part.strip()):
        budgets.append(parse_spec(item, f"environment variable {variable}: item {index}"))
    return budgets
