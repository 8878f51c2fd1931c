"""The cost formula against an independent oracle: exact fractions of documented per-million rates.

``test_pricing.py`` checks hand-computed examples; here Hypothesis draws any consistent usage (cache
counts within input, the 1-hour share within cache writes, reasoning within output, inputs on both
sides of the 200k-token tier) and the expected bill is computed from the rates below with
``fractions.Fraction``, following the rules written in ``llmmeter/pricing/formula.py``'s docstring, not
its code. A formula returning $0, dropping a token type or billing one twice fails here.
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from llmmeter import pricing
from llmmeter.pricing import parse_price_data, price_usage, set_price_table
from llmmeter.usage import Usage

# USD per million tokens, as a price page writes them: in, out, cache read, 5m write, 1h write, reasoning.
# None: the entry has no such price (the documented fallback applies).
RATES_PER_M: dict[str, dict[str, str | None]] = {
    "chat-model": {"in": "2", "out": "8", "read": "0.5", "write": None, "write_1h": None, "reasoning": None},
    "claude-like": {"in": "3", "out": "15", "read": "0.3", "write": "3.75", "write_1h": "6", "reasoning": None},
    "reasoner": {"in": "1", "out": "4", "read": None, "write": None, "write_1h": None, "reasoning": "10"},
    "plain": {"in": "1", "out": "2", "read": None, "write": None, "write_1h": None, "reasoning": None},
}
# claude-like above 200,000 input tokens: input $6/M and output $22.50/M for the whole call.
TIER_PER_M = {"claude-like": {"in": "6", "out": "22.5"}}
EMBEDDER_IN_PER_M = "0.1"
FIELDS = {"in": "input_cost_per_token", "out": "output_cost_per_token", "read": "cache_read_input_token_cost",
          "write": "cache_creation_input_token_cost", "write_1h": "cache_creation_input_token_cost_above_1hr",
          "reasoning": "output_cost_per_reasoning_token"}
TIER_FIELDS = {"in": "input_cost_per_token_above_200k_tokens", "out": "output_cost_per_token_above_200k_tokens"}


def _per_token(per_m: str) -> float:
    return float(Fraction(per_m) / 1_000_000)


def _table() -> dict:
    table: dict = {"_meta": {"version": "oracle"}}
    for model, rates in RATES_PER_M.items():
        entry = {FIELDS[k]: _per_token(v) for k, v in rates.items() if v is not None}
        entry.update({TIER_FIELDS[k]: _per_token(v) for k, v in TIER_PER_M.get(model, {}).items()})
        table[model] = {**entry, "mode": "chat"}
    table["embedder"] = {"input_cost_per_token": _per_token(EMBEDDER_IN_PER_M), "output_cost_per_token": 1.0,
                         "mode": "embedding"}
    return table


@pytest.fixture(autouse=True, scope="module")
def _oracle_table() -> Iterator[None]:
    set_price_table(parse_price_data(_table(), "<oracle>"))
    yield
    pricing._reset_for_tests()


def oracle(model: str, inp: int, out: int, read: int, write: int, write_1h: int, reasoning: int) -> Fraction:
    """The documented rules, in exact arithmetic."""
    if model == "embedder":
        return inp * Fraction(EMBEDDER_IN_PER_M) / 1_000_000
    rates = dict(RATES_PER_M[model])
    if inp > 200_000 and model in TIER_PER_M:
        rates.update(TIER_PER_M[model])
    r_in, r_out = Fraction(rates["in"]), Fraction(rates["out"])
    r_read = Fraction(rates["read"]) if rates["read"] else r_in  # unknown discount: not assumed
    r_write = Fraction(rates["write"]) if rates["write"] else r_in
    r_write_1h = Fraction(rates["write_1h"]) if rates["write_1h"] else r_write
    r_reasoning = Fraction(rates["reasoning"]) if rates["reasoning"] else r_out
    per_m = ((inp - read - write) * r_in + read * r_read + (write - write_1h) * r_write + write_1h * r_write_1h
             + (out - reasoning) * r_out + reasoning * r_reasoning)
    return per_m / 1_000_000


@st.composite
def usages(draw: st.DrawFn) -> tuple[int, int, int, int, int, int]:
    inp = draw(st.one_of(st.integers(0, 5_000), st.integers(150_000, 400_000), st.integers(0, 10**9)))
    read = draw(st.integers(0, inp))
    write = draw(st.integers(0, inp - read))
    write_1h = draw(st.integers(0, write))
    out = draw(st.integers(0, 10**7))
    reasoning = draw(st.integers(0, out))
    return inp, out, read, write, write_1h, reasoning


@settings(max_examples=400, deadline=None)
@given(model=st.sampled_from([*RATES_PER_M, "embedder"]), counts=usages())
def test_cost_equals_the_exact_bill(model: str, counts: tuple[int, int, int, int, int, int]) -> None:
    inp, out, read, write, write_1h, reasoning = counts
    usage = Usage(input=inp, output=out, cache_read=read, cache_creation=write, cache_creation_1h=write_1h,
                  reasoning=reasoning)
    cost = price_usage(None, model, usage)
    expected = oracle(model, *counts)
    assert cost.priced
    assert cost.usd == pytest.approx(float(expected), rel=1e-9, abs=1e-15)
    assert sum(cost.breakdown.values()) == pytest.approx(cost.usd, rel=1e-12, abs=1e-15)


def test_the_oracle_itself_on_a_hand_computed_bill() -> None:
    # claude-like, 250k input (tier): 200k uncached x $6 + 30k read x $0.30 + 15k 5m-write x $3.75
    # + 5k 1h-write x $6 = 1.2 + 0.009 + 0.05625 + 0.03 = 1.29525; output 1000 x $22.50/M = 0.0225 -> 1.31775
    assert oracle("claude-like", 250_000, 1000, 30_000, 20_000, 5_000, 0) == Fraction("1.31775")
