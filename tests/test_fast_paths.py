"""The hot-path shortcuts give exactly what the general paths give.

The OpenAI chat translation reads the SDK's own objects (``ChatCompletionChunk``, ``CompletionUsage``)
with plain attribute access and type checks, and hands anything unusual to the general path, which reads
every shape through ``field_of``. The same SDK object (built the way the SDK builds them,
``construct_type``: no validation, so any value can be anything) read through the shortcut and through
the general path (the same fields behind a plain namespace, which the shortcut does not take) must give
the same usage, notes and stream result; so must a price computed through the per-entry rate cache and
the per-table target cache, before and after a table change.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from llmmeter.instrumentors.openai_._chat import ChatStreamAccumulator, chat_usage
from llmmeter.instrumentors.openai_._common import OpenAIRequest
from llmmeter.pricing import price_usage, set_price_table
from llmmeter.pricing.formula import compute
from llmmeter.pricing.table import PriceEntry, PriceTable
from llmmeter.usage import Usage
from openai._models import construct_type
from openai.types.chat import ChatCompletionChunk
from openai.types.completion_usage import CompletionUsage

# Mostly sane counts (the shortcut's territory), with every kind of garbage the general path handles.
counts = st.one_of(
    st.integers(min_value=0, max_value=50),
    st.integers(min_value=0, max_value=50),
    st.none(),
    st.integers(min_value=-5, max_value=-1),
    st.sampled_from([10**13, True, 1.5, "7"]),
)


@st.composite
def usage_payloads(draw: st.DrawFn) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "prompt_tokens": draw(counts),
        "completion_tokens": draw(counts),
        "total_tokens": draw(counts),
    }
    if draw(st.booleans()):
        payload["prompt_tokens_details"] = draw(
            st.one_of(
                st.none(),
                st.fixed_dictionaries({}, optional={"cached_tokens": counts, "cache_write_tokens": counts}),
            )
        )
    if draw(st.booleans()):
        payload["completion_tokens_details"] = draw(
            st.one_of(st.none(), st.fixed_dictionaries({}, optional={"reasoning_tokens": counts}))
        )
    if draw(st.integers(0, 3)) == 0:
        payload["prompt_cache_hit_tokens"] = draw(counts)  # DeepSeek's extra field
    return payload


def _general(obj: Any) -> SimpleNamespace:
    """The SDK object's fields (extras included) behind a namespace: only the general path reads it."""
    return SimpleNamespace(**vars(obj), **(obj.__pydantic_extra__ or {}))


@example({"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7, "prompt_tokens_details": {"cached_tokens": 5}})
@example({"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7,
          "completion_tokens_details": {"reasoning_tokens": 9}})
@example({"prompt_tokens": 30, "completion_tokens": 4, "total_tokens": 34,
          "prompt_tokens_details": {"cached_tokens": 5, "cache_write_tokens": 7},
          "completion_tokens_details": {"reasoning_tokens": 2}})
@given(usage_payloads())
def test_typed_usage_reads_like_the_general_path(payload: dict[str, Any]) -> None:
    typed = construct_type(type_=CompletionUsage, value=payload)
    assert type(typed) is CompletionUsage
    typed_notes: list[str] = []
    general_notes: list[str] = []
    assert chat_usage(typed, typed_notes) == chat_usage(_general(typed), general_notes)
    assert typed_notes == general_notes


def _request(provider: str = "openai") -> OpenAIRequest:
    return OpenAIRequest(provider=provider, operation="chat", model="gpt-4o-mini", stream=True)


contents = st.one_of(st.none(), st.text(max_size=8), st.integers())
choice_payloads = st.fixed_dictionaries(
    {
        "index": st.one_of(st.just(0), st.just(0), st.integers(min_value=0, max_value=2), st.none()),
        "delta": st.one_of(
            st.fixed_dictionaries(
                {},
                optional={
                    "content": contents,
                    "refusal": st.one_of(st.none(), st.text(max_size=4)),
                    "tool_calls": st.one_of(
                        st.none(),
                        st.just([{"index": 0, "function": {"name": "f", "arguments": "{}"}}]),
                    ),
                },
            ),
            st.none(),
        ),
        "finish_reason": st.one_of(st.none(), st.sampled_from(["stop", "length", "tool_calls"]), st.integers()),
    }
)
chunk_payloads = st.fixed_dictionaries(
    {
        "id": st.just("chatcmpl-1"),
        "object": st.just("chat.completion.chunk"),
        "created": st.just(1),
        "model": st.just("gpt-4o-mini-2024-07-18"),
        "choices": st.one_of(st.lists(choice_payloads, max_size=3), st.none()),
    },
    optional={"usage": st.one_of(st.none(), usage_payloads())},
)


@pytest.mark.parametrize("provider", ["openai", "groq"])
@given(chunks=st.lists(chunk_payloads, max_size=6))
def test_typed_chunks_accumulate_like_the_general_path(provider: str, chunks: list[dict[str, Any]]) -> None:
    typed = ChatStreamAccumulator(_request(provider))
    plain = ChatStreamAccumulator(_request(provider))
    for payload in chunks:
        chunk = construct_type(type_=ChatCompletionChunk, value=payload)
        typed.on_chunk(chunk)
        plain.on_chunk(_general(chunk))
    left, right = typed.result(), plain.result()
    assert (left.model, left.id, left.finish_reasons, left.output_text, left.usage, left.unmeasured) == (
        right.model,
        right.id,
        right.finish_reasons,
        right.output_text,
        right.usage,
        right.unmeasured,
    )


def test_the_fast_path_is_taken_for_the_sdks_own_chunks() -> None:
    """Guards the premise of the shortcut: the SDK builds these exact types (a rename would silently
    send every chunk down the general path, correct but slower)."""
    from llmmeter.instrumentors.openai_ import _chat

    chunk = construct_type(
        type_=ChatCompletionChunk,
        value={"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
               "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}]},
    )
    assert type(chunk) is _chat._ChunkType
    assert type(chunk.choices[0]) is _chat._ChoiceType
    assert type(chunk.choices[0].delta) is _chat._DeltaType
    usage = construct_type(type_=CompletionUsage, value={"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5})
    assert _chat._typed_usage(usage) == Usage(input=3, output=2)


rates = st.one_of(st.none(), st.floats(min_value=0, max_value=1e-3, allow_nan=False))
usages = st.builds(
    Usage,
    input=st.integers(min_value=0, max_value=400_000),
    output=st.integers(min_value=0, max_value=10_000),
    cache_read=st.integers(min_value=0, max_value=300_000),
    cache_creation=st.integers(min_value=0, max_value=300_000),
    cache_creation_1h=st.integers(min_value=0, max_value=300_000),
    reasoning=st.integers(min_value=0, max_value=10_000),
)


def _reference_usd(entry: PriceEntry, usage: Usage) -> float:
    """The formula as llmmeter.pricing.formula documents it, written out again with no memo."""

    def first(*values: float | None) -> float:
        return next((v for v in values if v is not None), 0.0)

    total_in, out = usage.input or 0, usage.output or 0
    cache_read = min(usage.cache_read, total_in)
    cache_creation = min(usage.cache_creation, total_in - cache_read)
    cache_1h = min(usage.cache_creation_1h, cache_creation)
    reasoning = min(usage.reasoning, out)
    if total_in > 200_000 and (entry.input_above_200k is not None or entry.output_above_200k is not None):
        in_rate = first(entry.input_above_200k, entry.input)
        out_rate = first(entry.output_above_200k, entry.output)
        read_rate = first(entry.cache_read_above_200k, entry.cache_read, in_rate)
        write_rate = first(entry.cache_creation_above_200k, entry.cache_creation, in_rate)
        write_1h_rate = first(entry.cache_creation_1h_above_200k, entry.cache_creation_1h, write_rate)
        reasoning_rate = first(entry.reasoning_above_200k, entry.reasoning, out_rate)
    else:
        in_rate, out_rate = first(entry.input), first(entry.output)
        read_rate = first(entry.cache_read, in_rate)
        write_rate = first(entry.cache_creation, in_rate)
        write_1h_rate = first(entry.cache_creation_1h, write_rate)
        reasoning_rate = first(entry.reasoning, out_rate)
    return (
        (total_in - cache_read - cache_creation) * in_rate
        + cache_read * read_rate
        + (cache_creation - cache_1h) * write_rate
        + cache_1h * write_1h_rate
        + (out - reasoning) * out_rate
        + reasoning * reasoning_rate
    )


@given(rates=st.lists(rates, min_size=12, max_size=12), first_usage=usages, second_usage=usages)
def test_memoized_rates_price_like_the_documented_formula(
    rates: list[float | None], first_usage: Usage, second_usage: Usage
) -> None:
    """The entry's rates are resolved once and memoized on it: every later call (below or above the 200k tier,
    in any order) must still price exactly as the formula says."""
    entry = PriceEntry("m", *rates)
    for usage in (first_usage, second_usage, first_usage):
        usd, breakdown = compute(entry, usage)
        assert usd == pytest.approx(_reference_usd(entry, usage), rel=1e-9, abs=1e-15)
        assert usd == pytest.approx(sum(breakdown.values()))
    assert entry.resolved_rates is not None  # memoized, and not part of the entry's identity
    assert entry == PriceEntry("m", *rates) and hash(entry) == hash(PriceEntry("m", *rates))


def test_price_target_cache_follows_a_table_change() -> None:
    usage = Usage(input=1000, output=100)
    first = PriceTable({"m": PriceEntry("m", input=1e-6, output=2e-6)}, "t1")
    second = PriceTable({"m": PriceEntry("m", input=3e-6, output=4e-6)}, "t2")
    try:
        set_price_table(first)
        assert price_usage("openai", "m", usage).usd == pytest.approx(1000 * 1e-6 + 100 * 2e-6)
        assert price_usage("openai", "m", usage).usd == pytest.approx(1000 * 1e-6 + 100 * 2e-6)
        set_price_table(second)
        cost = price_usage("openai", "m", usage)
        assert cost.usd == pytest.approx(1000 * 3e-6 + 100 * 4e-6)
        assert cost.table_version == "t2"
        assert not price_usage("openai", "unknown-model", usage).priced
        assert price_usage("ollama", "anything", usage).usd == 0.0
        assert price_usage("openai", ["unhashable"], usage).priced is False  # type: ignore[arg-type]
    finally:
        set_price_table(None)
