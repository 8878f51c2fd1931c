"""Start-up costs what the app uses: SDKs are instrumented when the app imports them, a tokenizer vocabulary
loads when an estimate needs one, and a long estimate runs off the app's thread.

Start-up is checked in fresh subprocesses (``opentelemetry-instrument`` of this venv): what a process has
imported is only observable in a process nobody else imported anything into.
"""

from __future__ import annotations

import contextvars
import json
import threading
import time

import openai
import pytest
from llmmeter import background, config, estimate, names
from llmmeter.instrumentors.openai import OpenAIInstrumentor
from opentelemetry.sdk.trace import SpanProcessor
from replay_server import Reply, scripted
from startup_runs import instrumented_run

# Every supported SDK but openai: opentelemetry-instrumentation-openai-v2 (a test dependency) imports
# openai when its own instrumentor module loads, with or without llmmeter.
SDK_MODULES = ("anthropic", "boto3", "botocore", "google.genai", "mistralai", "cohere", "ollama")


def _run(code: str, extra: dict[str, str] | None = None, instrument: bool = True) -> dict:
    result = instrumented_run({"LLMMETER_SUMMARY": "off", **(extra or {})}, code, instrument=instrument)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_an_app_that_uses_no_sdk_imports_none_and_loads_no_vocabulary() -> None:
    found = _run(
        "import json, sys\n"
        "from llmmeter import estimate\n"
        f"imported = [m for m in {SDK_MODULES!r} + ('tiktoken',) if m in sys.modules]\n"
        "before = estimate.loaded()\n"
        "text = 'how many tokens is this'\n"
        # A budget's precise count asked before the vocabulary loaded: the safe byte bound, never a guess.
        "bounded = estimate.prompt_token_count(text, 'gpt-4o') == estimate.prompt_token_bound(text)\n"
        "estimate.count_tokens(text, 'gpt-4o', wait=True)\n"
        "print(json.dumps({'imported': imported, 'before': before, 'after': estimate.loaded(),\n"
        "                  'bounded_before_load': bounded}))\n"
    )
    # One vocabulary, when needed.
    assert found == {"imported": [], "before": [], "after": ["o200k_base"], "bounded_before_load": True}


CHECK_ANTHROPIC = (
    "import json\n"
    "from llmmeter.instrumentors._wrap import is_ours\n"
    "from anthropic.resources.messages.messages import Messages\n"
    "print(json.dumps({'wrapped': is_ours(Messages.__dict__['create'])}))\n"
)


def test_an_sdk_is_instrumented_when_the_app_imports_it() -> None:
    assert _run(CHECK_ANTHROPIC) == {"wrapped": True}


def test_disabled_instrumentations_stay_off_when_the_sdk_is_imported() -> None:
    assert _run(CHECK_ANTHROPIC, {"OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "llmmeter_anthropic"}) == {"wrapped": False}


def test_instrument_uninstrument_around_the_import_keep_base_instrumentor_semantics() -> None:
    found = _run(
        "import json, sys\n"
        "from llmmeter.instrumentors.anthropic import AnthropicInstrumentor\n"
        "from llmmeter.instrumentors._wrap import is_ours\n"
        "inst = AnthropicInstrumentor()\n"
        "inst.instrument(); inst.uninstrument()\n"  # before the SDK is imported: its hook must stay inert
        "from anthropic.resources.messages.messages import Messages\n"
        "after_uninstrument = is_ours(Messages.__dict__['create'])\n"
        "inst.instrument()\n"  # the SDK is imported now: wrapped at once, as BaseInstrumentor always did
        "instrumented = is_ours(Messages.__dict__['create'])\n"
        "inst.uninstrument()\n"
        "print(json.dumps([after_uninstrument, instrumented, is_ours(Messages.__dict__['create'])]))\n",
        instrument=False,
    )
    assert found == [False, True, False]


# --- the estimate of a long stream runs off the app's thread --------------------------------------------------


class EndThreads(SpanProcessor):
    """Which thread ended each span (the thread that runs on_end is the one span.end() ran on)."""

    def __init__(self) -> None:
        self.ended: list[tuple[str, int]] = []

    def on_end(self, span) -> None:
        self.ended.append((span.name, threading.get_ident()))


def _long_stream(chunks: int, size: int) -> tuple[Reply, str]:
    pieces = [f"{i:05d} " + "lorem ipsum " * (size // 12) for i in range(chunks)]
    events = [
        {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-2024-08-06",
         "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
        for piece in pieces
    ]
    events.append({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-2024-08-06",
                   "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    return Reply.sse(events), "".join(pieces)


@pytest.fixture
def instrumented(telemetry):
    ends = EndThreads()
    telemetry.tracer_provider.add_span_processor(ends)
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=telemetry.tracer_provider)
    telemetry.ends = ends
    yield telemetry
    instrumentor.uninstrument()
    config.set_settings(None)


def _stream_chat(reply: Reply) -> tuple[list, float, float]:
    with scripted(lambda request: reply) as server:
        client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="k", max_retries=0)
        before = time.monotonic()
        stream = client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "write"}], stream=True
        )
        chunks = list(stream)
        after = time.monotonic()
    return chunks, before, after


def test_a_long_estimate_ends_the_span_on_the_worker_with_the_app_chunks_unchanged(instrumented) -> None:
    reply, text = _long_stream(chunks=60, size=1200)  # ~73k characters: past the inline bound
    assert len(text) > 32_768
    chunks, _, _ = _stream_chat(reply)
    app_thread = threading.get_ident()
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    (span,) = instrumented.llm_spans()  # settles the worker first; one span: ended exactly once
    ((_, end_thread),) = [e for e in instrumented.ends.ended if e[0] == span.name]
    assert end_thread != app_thread
    assert span.attributes[names.LLMMETER_ESTIMATED_REASON] == "no_usage_in_stream"
    assert span.attributes[names.USAGE_OUTPUT_TOKENS] == estimate.count_tokens(text, "gpt-4o", wait=True)[0]
    assert "tokenizer_not_ready" not in span.attributes.get(names.LLMMETER_UNMEASURED, ())


def test_a_full_worker_finishes_the_call_on_the_apps_thread(instrumented, monkeypatch) -> None:
    monkeypatch.setattr(background, "MAX_PENDING_CHARS", 10)  # no room: the bound that keeps memory flat
    reply, text = _long_stream(chunks=40, size=1200)
    chunks, _, _ = _stream_chat(reply)
    (span,) = instrumented.llm_spans()
    ((_, end_thread),) = [e for e in instrumented.ends.ended if e[0] == span.name]
    assert end_thread == threading.get_ident()
    assert span.attributes[names.USAGE_OUTPUT_TOKENS] == estimate.count_tokens(text, "gpt-4o", wait=True)[0]
    assert len(chunks) == 41


def test_time_to_first_chunk_lies_within_the_bounds_the_test_measured(instrumented) -> None:
    estimate.warm_up(wait=True)
    reply, _ = _long_stream(chunks=3, size=24)
    _, before, after = _stream_chat(reply)
    (span,) = instrumented.llm_spans()
    ttfc = span.attributes[names.TIME_TO_FIRST_CHUNK]
    assert 0 < ttfc <= after - before


@pytest.fixture
def hooks_restored():
    from llmmeter import _providers, hooks

    before, after = list(hooks.BEFORE_CALL), list(hooks.AFTER_CALL)
    yield
    hooks.BEFORE_CALL[:], hooks.AFTER_CALL[:] = before, after
    _providers.use()


def test_a_guard_sees_the_tokens_of_a_call_still_counted_in_the_background(instrumented, hooks_restored) -> None:
    """The worker is held (a job ahead of ours waits on a gate a timer opens): the next guarded call in the same
    flow must wait for the estimate instead of being admitted on a run total that lacks it."""
    from llmmeter import AgentLoopDetected, agent

    reply, text = _long_stream(chunks=60, size=1200)
    gate = threading.Event()
    # Handed over from another context: only the stream's estimate is this flow's to wait for.
    assert contextvars.Context().run(background.submit, lambda: gate.wait(30), 0)  # holds the worker
    opener = threading.Timer(1.0, gate.set)
    with scripted(lambda request: reply) as server:
        client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="k", max_retries=0)
        with agent("writer", max_tokens=1000):
            list(client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "w"}],
                                                stream=True))
            opener.start()
            with pytest.raises(AgentLoopDetected, match="max_tokens"):
                client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "w"}])
        assert len(server.requests) == 1
    assert gate.is_set()  # the refusal came after the held estimate was counted
    assert estimate.count_tokens(text, "gpt-4o", wait=True)[0] > 1000


def test_a_child_forked_while_a_vocabulary_loads_loads_its_own() -> None:
    """The loading thread does not exist in a fork()ed child: the child must not wait for it forever."""
    found = _run(
        "import json, os\n"
        "from llmmeter import estimate\n"
        "estimate.count_tokens('start loading', 'gpt-4o')\n"  # starts the load on a background thread
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    n, method = estimate.count_tokens('hello world', 'gpt-4o', wait=True)\n"
        "    os._exit(0 if method == estimate.METHOD_TIKTOKEN and n == 2 else 1)\n"
        "_, status = os.waitpid(pid, 0)\n"
        "print(json.dumps({'child_exit': os.waitstatus_to_exitcode(status)}))\n",
        instrument=False,
    )
    assert found == {"child_exit": 0}
