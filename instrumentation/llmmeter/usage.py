"""The normalized token usage of one LLM call, in semantic-convention terms.

Every instrumentor translates its provider's usage block into a :class:`Usage` before anything is
priced or recorded, so pricing and metrics never see provider differences:

* ``input`` INCLUDES cached tokens (semconv): ``cache_read`` and ``cache_creation`` are subsets of it.
  Anthropic reports input without cache; its translator adds them back.
* ``reasoning`` is a subset of ``output``.
* ``estimated`` names the counts that came from tiktoken instead of the provider.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Usage:
    input: int | None = None
    output: int | None = None
    cache_read: int = 0
    cache_creation: int = 0
    # Subset of cache_creation written with the 1-hour TTL (Anthropic); priced at its own rate.
    cache_creation_1h: int = 0
    reasoning: int = 0
    estimated: frozenset[str] = field(default_factory=frozenset)

    @property
    def is_estimated(self) -> bool:
        return bool(self.estimated)

    @property
    def total(self) -> int:
        return (self.input or 0) + (self.output or 0)


# No real call reports more; OTLP attributes are int64, and a garbage number must not poison counters.
MAX_COUNT = 10**12


def as_count(value: Any) -> int | None:
    """A provider-reported token count as a non-negative int, or None when it is not one.

    Providers (and malformed proxies) send ``None``, strings, floats, bools, negative numbers: none of
    those may reach a span or a counter, and none may raise.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 <= value <= MAX_COUNT else None
    if isinstance(value, float):
        if value != value or value < 0 or value > MAX_COUNT:  # NaN, negative, absurd
            return None
        return int(value)
    return None


def field_of(obj: Any, name: str) -> Any:
    """``obj.name`` or ``obj[name]``, whichever the SDK object offers; None when neither does.

    SDK response models are pydantic objects, raw responses are dicts, and both may carry extra
    fields; this reads either without serializing the model (hot path).
    """
    if obj is None:
        return None
    if isinstance(obj, dict):
        return obj.get(name)
    try:
        return getattr(obj, name, None)
    except Exception:  # a property that raises is "absent" to us
        return None
