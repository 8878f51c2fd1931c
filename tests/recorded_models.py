"""Every (provider, model) name that appears in recorded provider traffic (VCR cassettes), for the price
coverage test. Run as a script to list the models of another cassette folder into a JSON file:

    python tests/recorded_models.py /work/shared/cassettes/openllmetry tests/fixtures/recorded_calls_shared.json
"""

from __future__ import annotations

import gzip
import json
import os
import re
import sys
from typing import Any
from urllib.parse import unquote

import yaml

# Folder under the cassette root -> gen_ai.provider.name of the SDK that recorded it.
FOLDER_PROVIDERS = {
    "openai": "openai", "openai-agents": "openai", "anthropic": "anthropic", "bedrock": "aws.bedrock",
    "cohere": "cohere", "google-generativeai": "gcp.gemini", "groq": "groq", "mistralai": "mistral_ai",
    "ollama": "ollama",
}
_MODEL_IN_TEXT = re.compile(r'"(?:model|modelVersion)"\s*:\s*"([^"]{1,200})"')
_BEDROCK_PATH = re.compile(r"/model/([^/]+)/(?:invoke|converse)")
_GEMINI_PATH = re.compile(r"/models/([^/:]+):")


def _text(body: Any) -> str:
    if isinstance(body, dict):
        body = body.get("string")
    if isinstance(body, bytes):
        if body[:2] == b"\x1f\x8b":
            try:
                body = gzip.decompress(body)
            except OSError:
                return ""
        return body.decode("utf-8", "replace")
    return body if isinstance(body, str) else ""


def _is_error(text: str) -> bool:
    try:
        body = json.loads(text)
    except ValueError:
        return False
    return isinstance(body, dict) and "error" in body and "choices" not in body


def calls_in(path: str, root: str) -> list[tuple[str, str | None, str | None]]:
    """(provider, request model, response model) per successful interaction of one cassette: what llmmeter prices
    a call by (the response's model, else the request's)."""
    folder = os.path.relpath(path, root).split(os.sep)[0]
    provider = FOLDER_PROVIDERS.get(folder, folder)
    if provider == "openai" and "azure" in path:
        provider = "azure.ai.openai"
    with open(path, encoding="utf-8") as handle:
        data = yaml.safe_load(handle) or {}
    calls = []
    for item in data.get("interactions") or []:
        request, response = item.get("request") or {}, item.get("response") or {}
        if response.get("status", {}).get("code", 200) >= 400 or _is_error(_text(response.get("body"))):
            continue  # an error reply bills nothing
        uri = unquote(str(request.get("uri", "")))
        asked = next((m.group(1) for p in (_BEDROCK_PATH, _GEMINI_PATH) if (m := p.search(uri))), None)
        asked = asked or next(iter(_MODEL_IN_TEXT.findall(_text(request.get("body")))), None)
        answered = next(iter(_MODEL_IN_TEXT.findall(_text(response.get("body")))), None)
        if asked or answered:
            calls.append((provider, asked, answered))
    return calls


def models_in(path: str, root: str) -> set[tuple[str, str]]:
    """(provider, model) pairs named by the requests and responses of one cassette."""
    folder = os.path.relpath(path, root).split(os.sep)[0]
    provider = FOLDER_PROVIDERS.get(folder, folder)
    if provider == "openai" and "azure" in path:
        provider = "azure.ai.openai"
    with open(path, encoding="utf-8") as handle:
        data = yaml.safe_load(handle) or {}
    found: set[tuple[str, str]] = set()
    for item in data.get("interactions") or []:
        request, response = item.get("request") or {}, item.get("response") or {}
        uri = unquote(str(request.get("uri", "")))
        for pattern in (_BEDROCK_PATH, _GEMINI_PATH):
            match = pattern.search(uri)
            if match:
                found.add((provider, match.group(1)))
        if response.get("status", {}).get("code", 200) >= 400:
            continue  # an error reply names no model that was billed
        for body in (request.get("body"), response.get("body")):
            for name in _MODEL_IN_TEXT.findall(_text(body)):
                found.add((provider, name))
    return found


def recorded_models(root: str) -> dict[tuple[str, str], str]:
    """(provider, model) -> the first cassette (relative path) naming it, over every cassette under ``root``."""
    out: dict[tuple[str, str], str] = {}
    for directory, _dirs, files in sorted(os.walk(root)):
        for name in sorted(files):
            if name.endswith((".yaml", ".yml")):
                path = os.path.join(directory, name)
                for pair in sorted(models_in(path, root)):
                    out.setdefault(pair, os.path.relpath(path, root))
    return out


def recorded_calls(root: str) -> list[dict[str, str | None]]:
    """Every distinct (provider, request model, response model) of the cassettes under ``root``, with the first
    cassette (relative path) it appears in."""
    seen: dict[tuple[str, str | None, str | None], str] = {}
    for directory, _dirs, files in sorted(os.walk(root)):
        for name in sorted(files):
            if name.endswith((".yaml", ".yml")):
                path = os.path.join(directory, name)
                for call in calls_in(path, root):
                    seen.setdefault(call, os.path.relpath(path, root))
    return [{"provider": p, "request_model": q, "response_model": r, "cassette": c}
            for (p, q, r), c in sorted(seen.items(), key=lambda kv: tuple(str(x) for x in kv[0]))]


if __name__ == "__main__":
    source, target = sys.argv[1], sys.argv[2]
    rows = recorded_calls(source)
    with open(target, "w", encoding="utf-8") as out:
        json.dump({"source": "openllmetry cassettes (see tests/cassettes/NOTICE.md), listed by "
                             "tests/recorded_models.py", "calls": rows}, out, indent=1)
        out.write("\n")
    print(f"{len(rows)} calls -> {target}")
