"""Provider conformance suite: one set of checks every llmmeter instrumentor must pass.

A provider joins by adding a module under ``tests/conformance/cases/`` that defines a module-level
``CASES: list[ProviderCase]``. Modules there are imported automatically (:func:`discover`), and
``test_conformance.py`` runs every check for every case. A case is a thin translation between the
suite and one SDK surface (client class + sync/async), it never re-implements instrumentation.

Contract of :class:`ProviderCase` (all callables are plain sync functions; an async SDK case wraps its
coroutine in ``asyncio.run`` inside the callable):

* ``name``: pytest id, unique (``"anthropic"``, ``"anthropic-async"``, ``"bedrock-converse"``...).
* ``instrumentor``: the ``BaseInstrumentor`` subclass. The suite calls
  ``instrumentor().instrument(tracer_provider=...)`` before each check and ``uninstrument()`` after.
* ``provider`` / ``operation`` / ``request_model``: the expected ``gen_ai.provider.name``,
  ``gen_ai.operation.name`` and ``gen_ai.request.model`` (span name = ``f"{operation} {request_model}"``).
* ``server()``: a NOT yet started server from ``tests/replay_server.py`` answering the non-streaming call
  (``ReplayServer(cassette)`` for a recording, ``ScriptedServer(handler)`` for a wire-format handler).
* ``call(base_url)``: makes the non-streaming call with the real SDK against ``base_url`` (the server's
  ``http://127.0.0.1:<port>``) and returns what the SDK returned.
* ``usage``: the normalized (semconv) :class:`llmmeter.usage.Usage` the recording reports for ``call``:
  input INCLUDES cache reads/writes, reasoning is a subset of output. Compared field by field with the span.
* ``stream_server()`` / ``stream(base_url, limit)``: a streamed call. ``stream`` consumes at most ``limit``
  events (``None``: all) the way an app does (``for``, ``with``, helpers), lets the stream go (break +
  ``with`` exit / ``close()``), and returns how many events it read. ``stream_usage`` is the normalized
  usage of the fully consumed stream, or ``None`` when the wire carries no usage (then the full stream
  must be marked estimated); ``stream_request_model`` when the stream asks for another model than
  ``call``. Leave ``stream`` as ``None`` only for an API without streaming.
* ``error_reply(marker)``: a :class:`replay_server.Reply` with an HTTP 4xx/5xx status in the provider's
  error format, whose body contains ``marker``; ``error_type``: the exception class the SDK raises for it.
* ``malformed_reply(usage)``: a 200 reply in the provider's wire format whose usage block is replaced by
  ``usage`` (any JSON value the fuzzer draws: None, strings, negatives, floats, nested junk). The SDK may
  or may not accept it; llmmeter must never be the one raising.
  ``usage_keys``: the provider's usage field names, so the fuzzer also sends real keys with junk values.
* ``patched()``: ``(owner, attribute)`` pairs the instrumentor wraps; after ``uninstrument()`` each
  ``owner.__dict__[attribute]`` must be the original object again.
* ``priced``: whether the price table knows ``request_model`` (an unknown model must show
  ``llmmeter.cost.priced = False`` and no cost, never 0). ``hand_check``: also compare the cost with a
  hand computation from the raw price entry (at least one case per provider must).
* ``extra_checks``: optional callables ``(span) -> None`` run on the non-streaming call's span.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmmeter.usage import Usage
from replay_server import Reply

ServerFactory = Callable[[], Any]  # returns an unstarted replay_server._BaseServer


@dataclass
class ProviderCase:
    name: str
    instrumentor: type
    provider: str
    operation: str
    request_model: str
    server: ServerFactory
    call: Callable[[str], Any]
    usage: Usage
    error_reply: Callable[[str], Reply]
    error_type: type[BaseException]
    malformed_reply: Callable[[Any], Reply]
    patched: Callable[[], list[tuple[Any, str]]]
    stream_server: ServerFactory | None = None
    stream: Callable[[str, int | None], int] | None = None
    stream_usage: Usage | None = None
    stream_request_model: str | None = None  # when the streamed call asks for another model than ``call``
    response_model: str | None = None
    priced: bool = True
    hand_check: bool = True
    usage_keys: tuple[str, ...] = ()
    extra_checks: list[Callable[[Any], None]] = field(default_factory=list)

    def __str__(self) -> str:
        return self.name


def discover() -> list[ProviderCase]:
    """Every ``CASES`` entry of every module in ``conformance.cases``, sorted by name, ids unique."""
    from conformance import cases as package

    found: list[ProviderCase] = []
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        found.extend(getattr(module, "CASES", []))
    found.sort(key=lambda c: c.name)
    ids = [c.name for c in found]
    duplicates = {i for i in ids if ids.count(i) > 1}
    if duplicates:
        raise ValueError(f"duplicate conformance case names: {sorted(duplicates)}")
    return found


def hand_cost(entry: Any, usage: Usage) -> float:
    """USD for ``usage`` from one LiteLLM-schema price entry (USD per token), written out term by term.

    Independent of llmmeter.pricing's code on purpose: it is the check that a unit or cache slip
    (1000x, double-counted cache) would fail. Long-context tiers are not modelled: cases stay below them.
    """

    def rate(name: str, fallback: float | None = None) -> float:
        value = _entry_field(entry, name)
        if value is None:
            if fallback is None:
                raise KeyError(name)
            return fallback
        return float(value)

    input_rate = rate("input_cost_per_token")
    output_rate = rate("output_cost_per_token")
    write_rate = rate("cache_creation_input_token_cost", input_rate)
    write_1h_rate = rate("cache_creation_input_token_cost_above_1hr", write_rate)
    read_rate = rate("cache_read_input_token_cost", input_rate)
    reasoning_rate = rate("output_cost_per_reasoning_token", output_rate)
    uncached = (usage.input or 0) - usage.cache_read - usage.cache_creation
    return (
        uncached * input_rate
        + usage.cache_read * read_rate
        + (usage.cache_creation - usage.cache_creation_1h) * write_rate
        + usage.cache_creation_1h * write_1h_rate
        + ((usage.output or 0) - usage.reasoning) * output_rate
        + usage.reasoning * reasoning_rate
    )


def _entry_field(entry: Any, name: str) -> Any:
    if isinstance(entry, dict):
        return entry.get(name)
    return getattr(entry, name, None)


SHIPPED_PRICES = Path(__file__).resolve().parents[2] / "instrumentation" / "llmmeter" / "pricing" / "prices.json"


def price_entry(price_key: str) -> dict[str, Any] | None:
    """The entry for ``price_key`` (``Cost.price_key``) as written in the shipped price FILE (LiteLLM field
    names, USD per token), read with json, not through llmmeter.pricing: the rates of the oracle do not come
    from the code under test. None for a key the file does not have (a zero-priced provider like ollama/*)."""
    with open(SHIPPED_PRICES, encoding="utf-8") as handle:
        return json.load(handle).get(price_key)
