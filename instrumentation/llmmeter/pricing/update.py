"""``llmmeter prices update``: read a newer price table, diff it against the table in force, write it atomically.

The source is LiteLLM's ``model_prices_and_context_window.json`` (a URL or a file) or any table in llmmeter's
documented format. It is validated with the same strict rules as start-up (a source with a typo is refused,
nothing is written). The written override file is in llmmeter's format (``_meta.source`` / ``fetched_at``,
per-token rates only), so ``LLMMETER_PRICE_FILE`` pointing at it loads under the strict rules.

``check`` answers "is the table in force stale?": a model the source prices for a provider llmmeter instruments
resolves to no price, or to different rates, in the table in force.
"""

from __future__ import annotations

import json
import os
import tempfile
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from llmmeter.config import ConfigError
from llmmeter.pricing.table import PriceTable, is_rate_field, parse_price_data

DEFAULT_SOURCE = "https://raw.githubusercontent.com/BerriAI/litellm/main/model_prices_and_context_window.json"
MAX_SOURCE_BYTES = 64 * 1024 * 1024

# LiteLLM's litellm_provider -> gen_ai.provider.name, for the providers llmmeter instruments (the table is looked
# up the way a call from that provider's SDK would be).
INSTRUMENTED_PROVIDERS: dict[str, str] = {
    "openai": "openai",
    "text-completion-openai": "openai",
    "azure": "azure.ai.openai",
    "anthropic": "anthropic",
    "bedrock": "aws.bedrock",
    "bedrock_converse": "aws.bedrock",
    "gemini": "gcp.gemini",
    "vertex_ai-language-models": "gcp.vertex_ai",
    "vertex_ai-anthropic_models": "gcp.vertex_ai",
    "mistral": "mistral_ai",
    "cohere": "cohere",
    "cohere_chat": "cohere",
    "deepseek": "deepseek",
    "groq": "groq",
}
_COMPARED = ("input_cost_per_token", "output_cost_per_token", "cache_read_input_token_cost",
             "cache_creation_input_token_cost")


@dataclass
class Change:
    key: str
    field: str
    old: float | None
    new: float | None

    @property
    def percent(self) -> float | None:
        if not self.old or self.new is None:
            return None
        return (self.new - self.old) / self.old * 100


@dataclass
class Diff:
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[Change] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)


def read_source(source: str, timeout: float = 30.0) -> bytes:
    """The bytes of ``source``: an http(s) URL (fetched with ``timeout``) or a file path / ``file://`` URL."""
    try:
        if source.startswith(("http://", "https://")):
            with urllib.request.urlopen(source, timeout=timeout) as response:
                data = response.read(MAX_SOURCE_BYTES + 1)
        else:
            path = source.removeprefix("file://")
            with open(path, "rb") as handle:
                data = handle.read(MAX_SOURCE_BYTES + 1)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"price source {source}: cannot read it ({exc})") from None
    if len(data) > MAX_SOURCE_BYTES:
        raise ConfigError(f"price source {source}: larger than {MAX_SOURCE_BYTES} bytes")
    return data


def parse_source(data: bytes, source: str) -> tuple[dict[str, Any], PriceTable]:
    """Decode and validate a source (strict rules); returns the raw JSON and the table."""
    try:
        raw = json.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"price source {source}: not valid JSON: {exc}") from None
    return raw, parse_price_data(raw, source, default_version="source")


def override_document(table: PriceTable, source: str, fetched_at: datetime) -> dict[str, Any]:
    """The override file for ``table``: llmmeter's format, rates only, entries sorted by key."""
    stamp = fetched_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    doc: dict[str, Any] = {"_meta": {"version": f"update-{stamp}", "source": source, "fetched_at": stamp}}
    if table.discounts:
        doc["_meta"]["discounts"] = {rule.spelled: rule.multiplier for rule in table.discounts}
    for key in sorted(table):
        doc[key] = table[key].to_dict()
    return doc


def write_atomically(path: str, document: dict[str, Any]) -> None:
    """Write JSON to ``path`` so a reader sees the old file or the new one, never half of one."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=".prices-", suffix=".json", dir=directory)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # a config file others may read, like one written with open()
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(document, out, indent=1, sort_keys=False)
            out.write("\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def diff_tables(old: PriceTable, new: PriceTable) -> Diff:
    """Models added and removed (by key), and every per-token rate changed on a model both tables have."""
    result = Diff()
    result.added = sorted(k for k in new if k not in old)
    result.removed = sorted(k for k in old if k not in new)
    for key in sorted(k for k in new if k in old):
        before, after = old[key].to_dict(), new[key].to_dict()
        for name in sorted(set(before) | set(after)):
            a, b = before.get(name), after.get(name)
            if not is_rate_field(name) or a == b:
                continue  # rates only: a context window or a note is not a price change
            result.changed.append(Change(key, name, a, b))
    return result


def stale_reasons(in_force: PriceTable, source: PriceTable, providers: Iterable[str] | None = None) -> list[str]:
    """Why ``in_force`` is older than ``source``: models the source prices for an instrumented provider that
    the table in force has no price for, or prices differently (input/output/cache rates)."""
    wanted = set(providers) if providers is not None else set(INSTRUMENTED_PROVIDERS)
    reasons: list[str] = []
    for key in sorted(source):
        entry = source[key]
        if entry.litellm_provider not in wanted or entry.no_price is not None:
            continue
        if entry.mode not in (None, "chat", "completion", "embedding", "responses"):
            continue
        provider = INSTRUMENTED_PROVIDERS.get(entry.litellm_provider or "", entry.litellm_provider)
        found = in_force.target(provider, key)
        if found is None:
            reasons.append(f"missing: {key} ({entry.litellm_provider})")
            continue
        mine = found[1]
        if mine is None or (found[0] != key and found[0] in source):
            continue  # a zero-priced provider; or the call resolves to another source entry, checked on its own
        ours, theirs = mine.to_dict(), entry.to_dict()
        for name in _COMPARED:
            if name in theirs and ours.get(name) != theirs[name]:
                reasons.append(f"changed: {key} {name} {ours.get(name)} -> {theirs[name]} (in force: {found[0]})")
                break
    return reasons


def format_diff(diff: Diff, limit: int) -> list[str]:
    """Human lines for a diff: counts, then up to ``limit`` items of each kind."""
    lines = [f"{len(diff.added)} added, {len(diff.removed)} removed, "
             f"{len({c.key for c in diff.changed})} changed ({len(diff.changed)} rates)"]
    for key in diff.added[:limit]:
        lines.append(f"  + {key}")
    if len(diff.added) > limit:
        lines.append(f"  + ... {len(diff.added) - limit} more (--show N)")
    for key in diff.removed[:limit]:
        lines.append(f"  - {key}")
    if len(diff.removed) > limit:
        lines.append(f"  - ... {len(diff.removed) - limit} more (--show N)")
    for change in diff.changed[:limit]:
        pct = change.percent
        pct_text = f" ({pct:+.1f}%)" if pct is not None else ""
        lines.append(f"  ~ {change.key} {change.field}: {change.old} -> {change.new}{pct_text}")
    if len(diff.changed) > limit:
        lines.append(f"  ~ ... {len(diff.changed) - limit} more (--show N)")
    return lines
