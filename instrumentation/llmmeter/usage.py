"""The normalized token usage of one LLM call, in semantic-convention terms.

Every instrumentor translates its provider's usage block into a :class:`Usage` before anything is
priced or recorded, so pricing and metrics never see provider differences:

* ``input`` INCLUDES cached tokens (semconv): ``cache_read`` and ``cache_creation`` are subsets of it.
  Anthropic reports input without cache; its translator adds them back.
* ``reasoning`` is a subset of ``output``.
* ``estimated`` names the counts that came from tiktoken instead of the provider.
* ``audio_input`` / ``image_input`` are subsets of the uncached input, ``audio_output`` / ``image_output``
  of output (OpenAI's audio/image token details, Gemini's per-modality counts): priced at their own rates.
* ``service_tier`` is the tier the provider says it served the call at (OpenAI ``service_tier``, Anthropic
  ``usage.service_tier``): flex, priority and batch have their own rates.
* ``provider_cost`` is what the provider (OpenRouter's ``usage.cost``, a LiteLLM proxy's response-cost header)
  says the call cost in USD; used instead of the local table when present.

Every count is bounded by :data:`MAX_COUNT` and must be an int: :func:`usage_problem` is the one check,
applied before anything is priced (:func:`as_count` applies the same bound to provider-reported values).
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
    audio_input: int = 0
    image_input: int = 0
    audio_output: int = 0
    image_output: int = 0
    service_tier: str | None = None
    provider_cost: float | None = None

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


_COUNT_FIELDS = ("input", "output", "cache_read", "cache_creation", "cache_creation_1h", "reasoning",
                 "audio_input", "image_input", "audio_output", "image_output")


def usage_problem(usage: Usage) -> str | None:
    """Why ``usage`` cannot be priced, or None when every count is an int in [0, MAX_COUNT] (input and output may
    be None: not reported). The one place the bound and the types are checked before pricing: a count of
    10**13 tokens or a float is a corrupt report, and pricing it would invent a bill ($2.5M) or hide one ($0)."""
    i, o = usage.input, usage.output
    if (  # the common case, checked inline (this runs on every priced call): two ints, no subsets, no cost
        (i is None or (i.__class__ is int and 0 <= i <= MAX_COUNT))
        and (o is None or (o.__class__ is int and 0 <= o <= MAX_COUNT))
        and usage.cache_read.__class__ is int and not usage.cache_read
        and not (usage.cache_creation or usage.cache_creation_1h or usage.reasoning or usage.audio_input
                 or usage.image_input or usage.audio_output or usage.image_output)
        and usage.provider_cost is None
    ):
        return None
    for name in _COUNT_FIELDS:
        value = getattr(usage, name)
        if value is None and name in ("input", "output"):
            continue
        if type(value) is not int:
            return f"{name}={value!r} is not an int"
        if not 0 <= value <= MAX_COUNT:
            return f"{name}={value} is outside [0, 10**12]"
    cost = usage.provider_cost
    if cost is not None and (type(cost) not in (int, float) or not 0 <= cost < 1e9):
        return f"provider_cost={cost!r} is not a USD amount"
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
