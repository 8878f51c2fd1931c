"""``llmmeter prompts check``: the token footprint of the app's prompt templates, checked in CI against a baseline.

A prompt template that grows by 30 % grows every call's input bill by as much, and nobody sees it in review.
This counts each template's tokens with each target model's tokenizer (tiktoken, offline: the vocabularies
``llmmeter.estimate`` loads), compares with a committed baseline file, states the change and what it costs at a
stated daily volume (the model's input price from the price table), and fails when a template grows past the
threshold. Templates are files matched by globs, or registered from Python with :func:`register`.

Use it from a shell (``llmmeter prompts check 'prompts/**/*.txt' --model gpt-4o-mini``, ``--update`` to rewrite
the baseline) or from pytest (``pytest -p llmmeter.prompts_plugin --llmmeter-prompts 'prompts/*.txt'``, see
:mod:`llmmeter.prompts_plugin`).
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from llmmeter.config import ConfigError

DEFAULT_BASELINE = ".llmmeter-prompts.json"
DEFAULT_THRESHOLD = 0.20
DEFAULT_CALLS_PER_DAY = 1000
BASELINE_VERSION = 1

_registered: dict[str, str] = {}


def register(name: str, template: str) -> None:
    """Add a template defined in Python (not in a file) to what ``prompts check`` counts, under ``name``."""
    if not isinstance(name, str) or not name or not isinstance(template, str):
        raise ValueError(f"llmmeter.prompts.register: name and template must be non-empty strings, got {name!r}")
    _registered[f"python:{name}"] = template


@dataclass(frozen=True)
class Footprint:
    prompt: str
    model: str
    tokens: int
    baseline: int | None
    input_usd_per_token: float

    @property
    def change(self) -> float | None:
        if self.baseline is None or self.baseline == 0:
            return None
        return (self.tokens - self.baseline) / self.baseline

    def daily_usd(self, calls_per_day: int) -> float:
        return self.tokens * self.input_usd_per_token * calls_per_day

    def daily_change_usd(self, calls_per_day: int) -> float | None:
        if self.baseline is None:
            return None
        return (self.tokens - self.baseline) * self.input_usd_per_token * calls_per_day


def templates(patterns: Iterable[str], root: str | os.PathLike[str] = ".") -> dict[str, str]:
    """Template name (path relative to ``root``, or ``python:<name>``) -> text, for the globs and the registry."""
    found: dict[str, str] = {}
    base = Path(root)
    for pattern in patterns:
        matches = sorted(glob.glob(str(base / pattern), recursive=True))
        if not matches:
            raise ConfigError(f"llmmeter prompts: no template file matches {pattern!r} (under {base.resolve()})")
        for match in matches:
            path = Path(match)
            if path.is_dir():
                continue
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as error:
                raise ConfigError(f"llmmeter prompts: cannot read template {path}: {error}") from None
            found[path.relative_to(base).as_posix() if path.is_relative_to(base) else str(path)] = text
    found.update(_registered)
    return found


def _input_price(model: str) -> float:
    from llmmeter import pricing

    entry = pricing.describe(model)
    rate = entry.get("input_cost_per_token") if entry else None
    if not isinstance(rate, (int, float)):
        raise ConfigError(f"llmmeter prompts: unknown model {model!r}: not in the price table "
                          "(llmmeter prices show MODEL; add it with LLMMETER_PRICE_FILE)")
    return float(rate)


def load_baseline(path: str | os.PathLike[str]) -> dict[str, dict[str, int]]:
    file = Path(path)
    if not file.exists():
        raise ConfigError(f"llmmeter prompts: no baseline file {file}; create it with --update")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
        prompts = data["prompts"]
        if data.get("version") != BASELINE_VERSION or not isinstance(prompts, dict):
            raise ValueError(f"version {data.get('version')!r}")
        return {str(p): {str(m): int(n) for m, n in models.items()} for p, models in prompts.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise ConfigError(f"llmmeter prompts: baseline file {file} is not a llmmeter prompts baseline "
                          f"(field 'prompts' / 'version'): {error}") from None


def measure(texts: dict[str, str], models: Sequence[str], baseline: dict[str, dict[str, int]] | None,
            ) -> list[Footprint]:
    """Tokens of every template for every model (tiktoken, offline), next to the baseline's."""
    from llmmeter import estimate

    if not models:
        raise ConfigError("llmmeter prompts: give at least one --model")
    prices = {model: _input_price(model) for model in models}
    estimate.warm_up(wait=True, timeout=60)
    out = []
    for prompt in sorted(texts):
        for model in models:
            tokens, method = estimate.count_tokens(texts[prompt], model)
            if method != estimate.METHOD_TIKTOKEN:
                raise ConfigError(f"llmmeter prompts: the tokenizer for {model!r} did not load")
            before = (baseline or {}).get(prompt, {}).get(model)
            out.append(Footprint(prompt, model, tokens, before, prices[model]))
    return out


def write_baseline(path: str | os.PathLike[str], footprints: Iterable[Footprint]) -> None:
    prompts: dict[str, dict[str, int]] = {}
    for f in footprints:
        prompts.setdefault(f.prompt, {})[f.model] = f.tokens
    Path(path).write_text(json.dumps({"version": BASELINE_VERSION, "prompts": prompts}, indent=2, sort_keys=True)
                          + "\n", encoding="utf-8")


def over_threshold(footprints: Iterable[Footprint], threshold: float) -> list[Footprint]:
    """Templates that grew by more than ``threshold`` (a fraction) against the baseline."""
    return [f for f in footprints if f.change is not None and f.change > threshold]
