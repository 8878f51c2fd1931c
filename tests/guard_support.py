"""Helpers shared by the attribution / budget / agent / loop-guard / outcome tests.

``guarded(telemetry)`` wires llmmeter's guard telemetry (agent and tool spans, budget and run metrics)
to the test's SDK pipeline, instruments the real openai SDK, and undoes all of it afterwards, so tests
cannot leak budgets, hooks or settings into each other.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import openai
from llmmeter import _providers, budgets, config, estimate, hooks, outcomes
from llmmeter.instrumentors.openai import OpenAIInstrumentor


@contextmanager
def guarded(telemetry: Any) -> Iterator[Any]:
    estimate.warm_up(wait=True)
    before, after = list(hooks.BEFORE_CALL), list(hooks.AFTER_CALL)
    _providers.use(telemetry.tracer_provider, telemetry.meter_provider)
    budgets.clear()
    budgets.configure(store=budgets.InMemoryStore(), on_store_error="open")
    outcomes._reset_for_tests()
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=telemetry.tracer_provider)
    try:
        yield telemetry
    finally:
        instrumentor.uninstrument()
        budgets.clear()
        budgets.configure(store=budgets.InMemoryStore(), on_store_error="open")
        hooks.BEFORE_CALL[:] = before
        hooks.AFTER_CALL[:] = after
        _providers.use()
        config.set_settings(None)


class CountingServer(ThreadingHTTPServer):
    """A minimal OpenAI-wire chat server on 127.0.0.1 that counts the requests it receives.

    Every reply reports ``prompt_tokens`` and ``completion_tokens`` as configured, so a test knows each
    call's exact cost. ``gate`` (a threading.Event) makes handlers wait until the test releases them:
    that is how concurrency tests keep many calls in flight at once without sleeping.
    """

    daemon_threads = True
    request_queue_size = 256  # listen() backlog: 50 callers connect at once (socketserver's default is 5)

    def __init__(self, prompt_tokens: int = 10, completion_tokens: int = 5, model: str = "gpt-4o-mini") -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.model = model
        self.requests = 0
        self.arrived = threading.Semaphore(0)
        self.gate: threading.Event | None = None
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)  # notified on every request
        self._thread = threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def client(self, cls: type = openai.OpenAI) -> Any:
        return cls(base_url=self.base_url, api_key="test-key", max_retries=0)

    def __enter__(self) -> CountingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.gate is not None:
            self.gate.set()
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: CountingServer  # type: ignore[assignment]
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        with self.server.changed:
            self.server.requests += 1
            self.server.changed.notify_all()
        self.server.arrived.release()
        if self.server.gate is not None:
            self.server.gate.wait()
        usage = {"prompt_tokens": self.server.prompt_tokens, "completion_tokens": self.server.completion_tokens,
                 "total_tokens": self.server.prompt_tokens + self.server.completion_tokens}
        data = json.dumps({
            "id": "chatcmpl-count", "object": "chat.completion", "created": 1700000000,
            "model": body.get("model") or self.server.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
            "usage": usage,
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def chat(client: Any, content: str = "hi", **kwargs: Any) -> Any:
    return client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": content}], **kwargs
    )


def wave(server: CountingServer, client: Any, callers: int, call: Any, refused_error: type) -> tuple[int, int]:
    """``callers`` threads call at once while the server holds every admitted call open (no sleeping):
    each caller is either held at the server or refused before the gate opens, so what a guard admitted
    is decided with every admitted call still in flight. Returns (sent, refused) of this wave.

    ``call(client)`` makes one call (it must set up its own attribution: threads do not inherit it).
    """
    start = server.requests
    refused: list[int] = []
    failures: list[BaseException] = []
    server.gate = threading.Event()

    def worker() -> None:
        try:
            call(client)
        except refused_error:
            with server.changed:
                refused.append(1)
                server.changed.notify_all()
        except BaseException as exc:  # surfaced below: a wave must not hide an unexpected error
            with server.changed:
                failures.append(exc)
                server.changed.notify_all()

    threads = [threading.Thread(target=worker) for _ in range(callers)]
    for t in threads:
        t.start()
    with server.changed:
        assert server.changed.wait_for(
            lambda: server.requests - start + len(refused) + len(failures) >= callers, timeout=120)
    sent = server.requests - start
    server.gate.set()
    for t in threads:
        t.join()
    server.gate = None
    assert not failures, failures
    assert server.requests - start == sent  # nothing was admitted after the wave was decided
    return sent, len(refused)


@contextmanager
def framework_instrumented(telemetry: Any, instrumentor: Any) -> Iterator[Any]:
    """``telemetry`` guarded (see :func:`guarded`) with a framework instrumentor on and no per-agent guards set
    before or after: the fixture body of every framework test module."""
    from llmmeter.frameworks import clear_agent_guards

    clear_agent_guards()
    with guarded(telemetry):
        instrumentor.instrument()
        try:
            yield telemetry
        finally:
            instrumentor.uninstrument()
            clear_agent_guards()


@contextmanager
def tool_calling_server(tool_calls_first: int, prompt: int, completion: int, answer: str) -> Iterator[Any]:
    """A Chat Completions server on 127.0.0.1 whose first ``tool_calls_first`` replies ask for
    ``lookup(city="Paris")``, then answer ``answer``; every reply reports ``prompt`` / ``completion`` tokens of
    gpt-4o-mini."""
    import itertools

    from replay_server import Reply, scripted

    counter = itertools.count()

    def reply(request: Any) -> Any:
        n = next(counter)
        message: dict[str, Any] = {"role": "assistant", "content": answer}
        finish = "stop"
        if n < tool_calls_first:
            message = {"role": "assistant", "content": None, "tool_calls": [{
                "id": f"call_{n}", "type": "function",
                "function": {"name": "lookup", "arguments": '{"city": "Paris"}'}}]}
            finish = "tool_calls"
        return Reply.json({
            "id": f"chatcmpl-{n}", "object": "chat.completion", "created": 1700000000, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
        })

    with scripted(reply) as server:
        yield server
