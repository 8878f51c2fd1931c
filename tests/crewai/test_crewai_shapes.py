"""The tool-call shapes CrewAI hands its native tool executor, per provider, and junk: read leniently, never raised
into the app. Shapes from the providers' API references: OpenAI Chat Completions ``tool_calls[]``
(``id``, ``function.name``, ``function.arguments`` as a JSON string), Anthropic ``tool_use`` content blocks
(``id``, ``name``, ``input``), Bedrock Converse ``toolUse`` (``toolUseId``, ``name``, ``input``), Gemini
``functionCall`` parts (``name``, ``args``, optional ``id``)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from llmmeter.frameworks import crewai as crewai_instrumentation
from llmmeter.frameworks.crewai import _native_call, _wrap_native_tool_call

PARIS = {"city": "Paris"}


@pytest.mark.parametrize(("tool_call", "expected"), [
    ({"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"city": "Paris"}'}},
     ("lookup", PARIS, "call_1")),
    (SimpleNamespace(id="call_2", type="function",
                     function=SimpleNamespace(name="lookup", arguments='{"city":"Paris"}')),
     ("lookup", PARIS, "call_2")),
    (SimpleNamespace(type="tool_use", id="toolu_1", name="lookup", input=PARIS), ("lookup", PARIS, "toolu_1")),
    ({"toolUseId": "tooluse_1", "name": "lookup", "input": PARIS}, ("lookup", PARIS, "tooluse_1")),
    (SimpleNamespace(function_call=SimpleNamespace(name="lookup", args=PARIS, id=None)), ("lookup", PARIS, None)),
    ({"function": {"name": "lookup", "arguments": "not json"}}, ("lookup", "not json", None)),
    ({}, ("tool", None, None)),
])
def test_each_providers_tool_call_shape(tool_call, expected):
    assert _native_call(tool_call) == expected


def test_the_same_call_spelled_differently_is_the_same_signature_for_the_repeat_guard():
    a = _native_call({"function": {"name": "lookup", "arguments": '{"city": "Paris", "units": "C"}'}})
    b = _native_call({"function": {"name": "lookup", "arguments": '{"units":"C","city":"Paris"}'}})
    assert a[:2] == b[:2]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8) | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300)
@given(tool_call=json_values | st.dictionaries(st.sampled_from(["id", "function", "function_call", "name", "input",
                                                                 "args", "arguments", "toolUseId"]), json_values))
def test_any_tool_call_goes_through_unchanged_and_nothing_raises(tool_call):
    sentinel, before = object(), crewai_instrumentation._state.enabled
    crewai_instrumentation._state.enabled = True  # the wrapper as instrument() turns it on
    try:
        assert _wrap_native_tool_call(lambda *a, **k: sentinel, None, (tool_call,), {}) is sentinel
    finally:
        crewai_instrumentation._state.enabled = before
