"""What a call may spend at most, computed before it is sent: the amount a hard budget reserves.

A reservation must cover the whole call, output included, or 50 concurrent callers each reserving only
their prompt all fit and then overshoot together. The bound of one call is

* input: the prompt's UTF-8 bytes plus the chat format's per-message overhead (every token of a
  byte-level BPE covers at least one byte: an upper bound with no tokenizer; see
  :func:`llmmeter.estimate.prompt_token_bound`). Tiktoken runs only when that bound does not fit beside
  the calls in flight and a precise count might (:meth:`Preflight.amount` with ``precise=True``);
* output: none for embeddings; ``max_tokens`` (``max_completion_tokens``, ``max_output_tokens``...) times
  the number of choices when the request sets it (a hard bound); else the largest output this process has seen for the
  model in its last :data:`LEARNED_WINDOW` calls, once it has seen :data:`LEARNED_MIN_SAMPLES`; else
  :data:`DEFAULT_OUTPUT_TOKENS`;
* dollars: those token bounds priced with :func:`llmmeter.pricing.bound_cost` (the highest rates the call could
  be billed at; :func:`llmmeter.pricing.price_usage` when it has no bound) at the model's input and
  output rates (an unpriced model reserves $0: its calls are recorded at $0 as well).

Tool schemas, images and audio are not in a prompt's text and not in its bound.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
from collections import deque
from typing import Any

from llmmeter import estimate, names
from llmmeter.budgets.model import UNIT_CALLS, UNIT_TOKENS
from llmmeter.usage import Usage

_log = logging.getLogger("llmmeter.budgets")

DEFAULT_OUTPUT_TOKENS = 4096  # output bound of a call without max_tokens, before any output was learned
LEARNED_WINDOW = 256  # outputs remembered per model
LEARNED_MIN_SAMPLES = 8  # outputs seen before the learned maximum replaces the default
MAX_LEARNED_MODELS = 1024  # models remembered (bounded memory); past it, the table starts over

SOURCE_MAX_TOKENS = "max_tokens"
SOURCE_LEARNED = "learned"
SOURCE_DEFAULT = "default"


def _positive_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


class OutputBounds:
    """Per model, the largest output (tokens per choice) of its last LEARNED_WINDOW calls. Thread-safe."""

    def __init__(self, default: int = DEFAULT_OUTPUT_TOKENS) -> None:
        self.default = default
        self._seen: dict[str | None, deque[int]] = {}
        self._lock = threading.Lock()

    def observe(self, model: str | None, output_tokens: int, choices: int = 1) -> None:
        per_choice = math.ceil(output_tokens / max(1, choices))
        with self._lock:
            seen = self._seen.get(model)
            if seen is None:
                if len(self._seen) >= MAX_LEARNED_MODELS:
                    self._seen.clear()
                seen = self._seen[model] = deque(maxlen=LEARNED_WINDOW)
            seen.append(per_choice)

    def bound(self, model: str | None) -> tuple[int, str]:
        """(output tokens per choice, where the figure comes from)."""
        with self._lock:
            seen = self._seen.get(model)
            if seen is not None and len(seen) >= LEARNED_MIN_SAMPLES:
                return max(seen), SOURCE_LEARNED
        return self.default, SOURCE_DEFAULT

    def clear(self) -> None:
        with self._lock:
            self._seen.clear()


class Preflight:
    """One call's reservation amounts, computed lazily: the cheap bound first, tiktoken only on demand."""

    __slots__ = ("_precise_input", "_prompt", "input_bound", "output", "output_source", "request", "tokenized")

    def __init__(self, request: Any, outputs: OutputBounds) -> None:
        self.request = request
        prompt = ""
        if request.prompt_text is not None:
            try:
                prompt = request.prompt_text() or ""
            except Exception:
                prompt = ""
        self._prompt = prompt
        self.input_bound = estimate.prompt_token_bound(prompt)
        self._precise_input: int | None = None
        self.tokenized = False
        attrs = request.attributes or {}
        choices = _positive_int(attrs.get(names.REQUEST_CHOICE_COUNT)) or 1
        max_tokens = _positive_int(attrs.get(names.REQUEST_MAX_TOKENS))
        if request.operation == names.OP_EMBEDDINGS:  # an embedding has no output tokens
            per_choice, self.output_source = 0, SOURCE_MAX_TOKENS
        elif max_tokens is not None:
            per_choice, self.output_source = max_tokens, SOURCE_MAX_TOKENS
        else:
            per_choice, self.output_source = outputs.bound(request.model)
        self.output = per_choice * choices

    @property
    def can_refine(self) -> bool:
        """True when tiktoken could give a smaller input figure than the byte bound."""
        return bool(self._prompt) and self._precise_input is None

    def input_tokens(self, precise: bool = False) -> int:
        if not precise:
            return self.input_bound if self._precise_input is None else self._precise_input
        if self._precise_input is None:
            self.tokenized = True
            counted = estimate.prompt_token_count(self._prompt, self.request.model)
            self._precise_input = min(self.input_bound, counted)
            # The span records the estimate beside the provider's count (llmmeter.estimate.error).
            with contextlib.suppress(Exception):
                self.request.estimated_input = counted
        return self._precise_input

    def amount(self, unit: str, precise: bool = False) -> float:
        """What the call may spend at most, in ``unit``."""
        if unit == UNIT_CALLS:
            return 1.0
        input_tokens = self.input_tokens(precise)
        if unit == UNIT_TOKENS:
            return float(input_tokens + self.output)
        try:
            from llmmeter.pricing import bound_cost, price_usage

            request = self.request
            tier = (request.attributes or {}).get(names.OPENAI_REQUEST_SERVICE_TIER)
            # The highest rates the call could be billed at (cache writes incl. 1-hour, tier, long context).
            bound = bound_cost(request.provider, request.model, input_tokens, self.output,
                               service_tier=tier if isinstance(tier, str) else None)
            if bound is not None:
                return float(bound)
            cost = price_usage(request.provider, request.model, Usage(input=input_tokens, output=self.output))
            if cost.priced and cost.usd is not None:
                return float(cost.usd)
        except Exception:
            _log.debug("llmmeter: could not price a budget reservation", exc_info=True)
        return 0.0
