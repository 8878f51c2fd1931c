"""Model-name normalization: the names a price table may know a reported model name by.

Providers report the same model under many spellings: gateway prefixes (``openai/gpt-4o``), Bedrock
inference profiles and versions (``us.anthropic.claude-3-5-sonnet-20240620-v1:0``), dated snapshots
(``gpt-4o-2024-08-06``), Vertex ``@`` versions (``claude-3-5-sonnet@20240620``), ``-latest`` aliases.
A price table cannot list every spelling, so lookups try :func:`candidates` in order, most specific
first: an exact entry (e.g. ``gpt-4o-2024-05-13``, which costs more than ``gpt-4o``) always wins over
a stripped one.

The function is pure and cached: it runs on every priced call.
"""

from __future__ import annotations

import re
from functools import lru_cache
from urllib.parse import unquote

# Gateway / SDK prefixes in front of a model name. Stripped repeatedly ("bedrock/converse/...").
PROVIDER_PREFIXES: tuple[str, ...] = (
    "openai/",
    "anthropic/",
    "bedrock/",
    "bedrock_converse/",
    "converse/",
    "invoke/",
    "models/",
    "azure/",
    "azure_ai/",
    "vertex_ai/",
    "vertex_ai_beta/",
    "gemini/",
    "google/",
    "mistral/",
    "cohere/",
    "cohere_chat/",
    "groq/",
    "deepseek/",
    "xai/",
    "publishers/google/models/",
    "publishers/anthropic/models/",
)

# gen_ai.provider.name -> key prefixes LiteLLM-style tables use for that provider's own prices
# (e.g. "groq/llama-3.3-70b-versatile"). Tried before the bare name, so a provider-specific price wins.
PROVIDER_KEY_PREFIXES: dict[str, tuple[str, ...]] = {
    "openai": ("openai",),
    "azure.ai.openai": ("azure",),
    "azure.ai.inference": ("azure_ai",),
    "anthropic": ("anthropic",),
    "aws.bedrock": ("bedrock", "bedrock_converse"),
    "gcp.gemini": ("gemini",),
    "gcp.gen_ai": ("gemini", "vertex_ai"),
    "gcp.vertex_ai": ("vertex_ai",),
    "mistral_ai": ("mistral",),
    "cohere": ("cohere", "cohere_chat"),
    "groq": ("groq",),
    "deepseek": ("deepseek",),
    "x_ai": ("xai",),
    "perplexity": ("perplexity",),
    "together_ai": ("together_ai",),
    "fireworks_ai": ("fireworks_ai",),
    "openrouter": ("openrouter",),
}

# Bedrock cross-region inference-profile prefixes ("us.anthropic.claude-..."), only when a vendor follows.
_REGION_PREFIX = re.compile(r"^(?:us|eu|apac|global|us-gov|jp|au|ca|apne\d?)\.(?=[a-z0-9-]+\.)")
# Bedrock context-window variants: "...-v1:0:200k", "...-v1:0:28k", "...-v1:0:mm".
_BEDROCK_CONTEXT = re.compile(r":(?:\d+k|mm)$")
# Bedrock model-version suffixes: "-v1:0", "-v2", "-v1:0:200k".
_BEDROCK_VERSION = re.compile(r"-v\d+(?::\d+)?(?::\d+k)?$")
# Bedrock vendor namespaces; stripping "anthropic." lets a Bedrock id find the Anthropic-API entry.
_BEDROCK_VENDOR = re.compile(r"^(?:anthropic|amazon|meta|mistral|cohere|ai21|deepseek|writer|openai|qwen)\.")
_LATEST = re.compile(r"-latest$")
# Dated snapshots: OpenAI "-2024-08-06", Anthropic "-20240620", OpenAI legacy "-0125" / "-1106".
_ISO_DATE = re.compile(r"-\d{4}-\d{2}-\d{2}$")
_COMPACT_DATE = re.compile(r"-20\d{6}$")
_MMDD = re.compile(r"-\d{4}$")
# Google model versions "gemini-1.5-pro-002", preview dates "-preview-05-06".
_GOOGLE_VERSION = re.compile(r"-\d{3}$")
_GOOGLE_PREVIEW = re.compile(r"-preview(?:-\d{2}-\d{2})?$")
_FINE_TUNE = re.compile(r"^(ft:[^:]+)")


def _strip_prefixes(name: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in PROVIDER_PREFIXES:
            if name.startswith(prefix) and len(name) > len(prefix):
                name = name[len(prefix) :]
                changed = True
    return name


@lru_cache(maxsize=1024)
def candidates(model: str) -> tuple[str, ...]:
    """Names to look ``model`` up by, most specific first, without duplicates.

    Each step strips one more kind of decoration from the previous name, so a table entry for any
    intermediate spelling is found before a more generic one.
    """
    out: list[str] = []

    def add(name: str) -> str:
        if name and name not in out:
            out.append(name)
        return name

    name = add(model.strip())
    if "%" in name:  # Bedrock model ids copied from URL paths ("...-v1%3A0")
        name = add(unquote(name))
    name = add(name.lower())
    if name.startswith("arn:") and "/" in name:  # Bedrock ARNs: the model/profile id is the last segment
        name = add(name.rsplit("/", 1)[1])
    name = add(_strip_prefixes(name))
    fine_tune = _FINE_TUNE.match(name)
    if fine_tune:
        # Fine-tuned models have their own (higher) prices: never fall back to the base model's.
        add(fine_tune.group(1))
        return tuple(out)
    if name.startswith("gpt-35"):  # Azure OpenAI's spelling of gpt-3.5 model names
        name = add("gpt-3.5" + name[len("gpt-35") :])
    name = add(_REGION_PREFIX.sub("", name))
    name = add(_BEDROCK_CONTEXT.sub("", name))
    name = add(_BEDROCK_VERSION.sub("", name))
    name = add(_BEDROCK_VENDOR.sub("", name))
    if "@" in name:  # Vertex "claude-3-5-sonnet@20240620" / "claude-sonnet-4-5@20250929"
        base, _, version = name.partition("@")
        if version and version != "default":
            add(f"{base}-{version}")
        name = add(base)
    name = add(_LATEST.sub("", name))
    for pattern in (_ISO_DATE, _COMPACT_DATE, _MMDD):
        stripped = pattern.sub("", name)
        if stripped != name:
            name = add(stripped)
            break
    if name.startswith("gemini"):
        name = add(_GOOGLE_VERSION.sub("", name))
        name = add(_GOOGLE_PREVIEW.sub("", name))
    return tuple(out)


def provider_key_prefixes(provider: str | None) -> tuple[str, ...]:
    """Table-key prefixes for ``provider``'s own prices (``groq`` -> ``("groq",)``); unknown -> its own name."""
    if not provider:
        return ()
    provider = provider.lower()
    return PROVIDER_KEY_PREFIXES.get(provider, (provider,))
