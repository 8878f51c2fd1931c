"""Maintainer tool: add current models, and tier rates, to the shipped price table from a LiteLLM table.

    python scripts/merge_litellm_prices.py PATH/TO/model_prices_and_context_window.json --as-of 2026-11-28 \\
        --label "litellm 1.110.2"

What it does to ``instrumentation/llmmeter/pricing/prices.json`` (never changes a figure already there):

* adds the entries of the model families llmmeter must cover (Claude 4.x and later, Gemini 2.5 and 3.x, GPT-5.x,
  the o-series, GPT audio models, DeepSeek, Mistral, Cohere Command) for the providers llmmeter instruments,
  under the names the SDKs send (Bedrock ``anthropic.*`` ids and ``us.`` / ``eu.`` / ``global.`` inference
  profiles, which cost more in some regions, and Vertex ``vertex_ai/claude-*``), each with its provider's pricing
  page as ``source``, ``as_of`` and ``verified_against`` naming the LiteLLM key;
* adds service-tier (flex / priority / batch), long-context, audio and image rates to existing entries whose
  standard input and output rates agree with LiteLLM's (so no entry mixes two price lists).

Gemini's ``cache_creation_*`` figures are context-cache storage and DeepSeek's are 0 (a miss is billed as
input): neither is copied.
Review the diff (every figure against the provider's page) before committing.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "instrumentation"))

from llmmeter.pricing.table import is_rate_field  # noqa: E402

SHIPPED = ROOT / "instrumentation" / "llmmeter" / "pricing" / "prices.json"
SOURCES = {
    "openai": "https://platform.openai.com/docs/pricing",
    "anthropic": "https://docs.anthropic.com/en/docs/about-claude/pricing",
    "bedrock": "https://aws.amazon.com/bedrock/pricing/",
    "bedrock_converse": "https://aws.amazon.com/bedrock/pricing/",
    "gemini": "https://ai.google.dev/gemini-api/docs/pricing",
    "vertex_ai-language-models": "https://ai.google.dev/gemini-api/docs/pricing",
    "vertex_ai-anthropic_models": "https://cloud.google.com/vertex-ai/generative-ai/pricing",
    "deepseek": "https://api-docs.deepseek.com/quick_start/pricing",
    "mistral": "https://mistral.ai/pricing#api-pricing",
    "cohere_chat": "https://cohere.com/pricing",
}
FAMILIES = re.compile(
    r"^(?:(?:us|eu|apac|global|jp|au)\.)?(?:anthropic\.|vertex_ai/)?claude-(?:opus|sonnet|haiku)-(?:4|5)"
    r"|^(?:gemini/)?gemini-(?:2\.5|3)"
    r"|^gpt-5|^o[134](?:-|$)|^gpt-4\.1|^gpt-4o-audio|^gpt-audio"
    r"|^(?:deepseek/)?deepseek-(?:chat|reasoner|v\d|flash|r1)"
    r"|^mistral/(?:mistral|ministral|magistral|codestral|devstral|pixtral|voxtral|open-mistral)"
    r"|^command-(?:a|r)"
)
SKIP = re.compile(r"tts|image|live|native-audio|computer-use|customtools|cyber|search-api|deep-research|realtime")
MODES = {"chat": "chat", "responses": "chat", "completion": "completion", "embedding": "embedding"}
STRIP = ("gemini/", "mistral/", "deepseek/")


def entry_from(raw: dict, provider: str, as_of: str, verified: str) -> dict:
    out = {k: float(v) for k, v in raw.items() if is_rate_field(k) and isinstance(v, (int, float))
           and not isinstance(v, bool) and not (provider.startswith(("gemini", "vertex_ai-language", "deepseek")) and
                                                k.startswith("cache_creation"))}
    out["litellm_provider"] = provider
    out["mode"] = MODES[raw.get("mode", "chat")]
    if isinstance(raw.get("max_output_tokens"), int):
        out["max_output_tokens"] = raw["max_output_tokens"]
    out["source"] = SOURCES[provider]
    out["as_of"] = as_of
    out["verified_against"] = verified
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("litellm")
    parser.add_argument("--as-of", required=True)
    parser.add_argument("--label", required=True, help='e.g. "litellm 1.110.2"')
    args = parser.parse_args()
    litellm = json.loads(pathlib.Path(args.litellm).read_text())
    shipped = json.loads(SHIPPED.read_text())
    added, tiered = [], []
    for key, raw in litellm.items():
        if not isinstance(raw, dict) or not FAMILIES.search(key) or SKIP.search(key):
            continue
        provider = raw.get("litellm_provider")
        if provider not in SOURCES or raw.get("mode", "chat") not in MODES:
            continue
        if not isinstance(raw.get("input_cost_per_token"), (int, float)) or (
                not raw.get("output_cost_per_token") and raw.get("mode") != "embedding"):
            continue
        target = next((key[len(p):] for p in STRIP if key.startswith(p)), key)
        if target != key and target in litellm:
            continue  # the bare name has its own LiteLLM entry
        if target in shipped:
            continue
        shipped[target] = entry_from(raw, provider, args.as_of, f"{args.label} [{key}]")
        added.append(target)
    for key, entry in list(shipped.items()):
        if key.startswith("_"):
            continue
        raw = litellm.get(key) or next((litellm.get(p + key) for p in STRIP if litellm.get(p + key)), None)
        if not raw or raw.get("input_cost_per_token") != entry.get("input_cost_per_token") or \
                raw.get("output_cost_per_token") != entry.get("output_cost_per_token"):
            continue
        provider = entry.get("litellm_provider") or raw.get("litellm_provider")
        if provider not in SOURCES:
            continue
        fresh = entry_from(raw, provider, "", "")
        extra = {k: v for k, v in fresh.items() if is_rate_field(k) and k not in entry
                 and re.search(r"_flex$|_priority$|_batches$|audio|image|_above_\d+k_tokens", k)}
        if extra:
            rates = {k: v for k, v in entry.items() if is_rate_field(k)}
            rest = {k: v for k, v in entry.items() if not is_rate_field(k)}
            note = f"tier/modality rates: {args.label}"
            rest["verified_against"] = f"{rest['verified_against']}; {note}" if rest.get("verified_against") else note
            shipped[key] = {**rates, **extra, **rest}
            tiered.append(key)
    meta = shipped.pop("_meta")
    meta["version"] = args.as_of
    body = dict(sorted(shipped.items()))
    SHIPPED.write_text(json.dumps({"_meta": meta, **body}, indent=2) + "\n")
    print(f"added {len(added)} entries, tier/modality rates on {len(tiered)}", file=sys.stderr)
    for key in added:
        print(f"+ {key}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
