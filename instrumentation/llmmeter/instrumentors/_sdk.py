"""Helpers every instrumentor uses to read an SDK, written once (no SDK is imported here).

* :func:`given`: the SDKs' "argument not passed" sentinels differ (``NOT_GIVEN`` / ``omit`` in openai and
  anthropic, ``UNSET`` in mistral, Fern's ``OMIT = ...`` in cohere); one test covers them all.
* :class:`TextBuffer`: the bounded output text a stream keeps for an estimate when its usage never comes.
* :func:`find_class`: a class of an SDK module, or None for an SDK version without it.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

# Output text kept per stream for an estimate. A response is bounded by max_tokens anyway; the cap only
# guards memory against a misbehaving server (the estimate is then marked truncated).
MAX_TEXT_CHARS = 2_000_000
_SENTINEL_TYPES = frozenset({"Omit", "NotGiven", "Unset", "ellipsis", "_NotGiven"})


def given(value: Any) -> bool:
    """False for None and for the SDKs' "argument not passed" sentinels."""
    return value is not None and value is not Ellipsis and type(value).__name__ not in _SENTINEL_TYPES


class TextBuffer:
    """Output text collected from stream chunks, at most :data:`MAX_TEXT_CHARS`; past the cap only
    ``truncated`` remains (the piece that would cross it is dropped whole)."""

    __slots__ = ("chars", "parts", "truncated")

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.chars = 0
        self.truncated = False

    def add(self, piece: Any) -> None:
        if not isinstance(piece, str) or not piece:
            return
        if self.chars + len(piece) > MAX_TEXT_CHARS:
            self.truncated = True
            return
        self.parts.append(piece)
        self.chars += len(piece)

    def text(self) -> str:
        return "".join(self.parts)


def find_class(module_name: str, class_name: str, *, import_: bool = True) -> type | None:
    """``module_name.class_name`` if it is a class; None when absent. Without ``import_`` a module not
    imported yet counts as absent (uninstrument must not import an SDK the app never used)."""
    try:
        module = importlib.import_module(module_name) if import_ else sys.modules.get(module_name)
        cls = getattr(module, class_name, None)
    except Exception:  # an SDK version without that module
        return None
    return cls if isinstance(cls, type) else None
