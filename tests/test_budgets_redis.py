"""The Redis spend store against a real ``redis-server`` (Debian package) started on 127.0.0.1.

Two separate Python processes share one hard budget through Redis while a local server counts what
they send; an unreachable Redis fails open or closed as configured. With ``CI`` set (``1``, ``true``,
anything but empty/0/false/no) a missing ``redis-server`` binary is a failure, not a skip.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator

import llmmeter.attribution as attribution
import pytest
import redis
from ci_env import missing
from guard_support import CountingServer, chat, guarded, wave
from llmmeter import budgets
from llmmeter.errors import BudgetExceeded, BudgetStoreUnavailable

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _redis_binary() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        missing("redis-server not installed (Debian package redis-server)")
    return binary


def _start_redis(port: int) -> subprocess.Popen:
    process = subprocess.Popen(
        [_redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(host="127.0.0.1", port=port)
    for _ in range(200):  # wait until it answers (bounded)
        try:
            if client.ping():
                return process
        except redis.ConnectionError:
            time.sleep(0.05)
    process.terminate()
    pytest.fail("redis-server did not start")


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    port = _free_port()
    process = _start_redis(port)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        _stop(process)


@pytest.fixture
def tel(telemetry, redis_url):
    redis.Redis.from_url(redis_url).flushdb()
    with guarded(telemetry):
        yield telemetry


def test_spend_is_shared_and_keys_expire_with_their_window(tel, redis_url):
    store = budgets.RedisStore(redis_url, prefix="test:")
    budgets.configure(store=store)
    budget = budgets.add("tenant=acme: 45 tokens/hour hard")  # 15 tokens per call
    with CountingServer() as server, attribution.attributes(tenant="acme"):
        client = server.client()
        for _ in range(3):
            chat(client)
        with pytest.raises(BudgetExceeded) as info:
            chat(client)
        assert server.requests == 3
    assert info.value.spent == 45
    assert budgets.spent(budget, "acme") == 45
    raw = redis.Redis.from_url(redis_url)
    [key] = raw.keys("test:*")
    assert float(raw.hget(key, "s")) == 45 and float(raw.hget(key, "r")) == 0
    assert 0 < raw.ttl(key) <= 3600 + 300


_WORKER = textwrap.dedent("""
    import json, sys, threading
    import openai
    from opentelemetry.sdk.trace import TracerProvider
    from llmmeter import budgets, attribution
    from llmmeter.errors import BudgetExceeded
    from llmmeter.instrumentors.openai import OpenAIInstrumentor

    redis_url, base_url, calls = sys.argv[1], sys.argv[2], int(sys.argv[3])
    OpenAIInstrumentor().instrument(tracer_provider=TracerProvider())
    # A generous socket timeout: on a loaded CI machine a 0.5 s timeout fails closed (a refusal) by chance.
    budgets.configure(store=budgets.RedisStore(redis_url, timeout=10.0), on_store_error="closed")
    budgets.add("tenant=acme: 6 calls/day hard")
    client = openai.OpenAI(base_url=base_url, api_key="k", max_retries=0)
    lock = threading.Lock()
    result = {"sent": 0, "refused": 0}

    def one():
        with attribution.attributes(tenant="acme"):
            try:
                client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
                key = "sent"
            except BudgetExceeded:
                key = "refused"
        with lock:
            result[key] += 1
            if key == "refused":
                sys.stdout.write("refused\\n")
                sys.stdout.flush()

    threads = [threading.Thread(target=one) for _ in range(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps(result), flush=True)
""")


def test_two_processes_share_one_hard_budget_without_overshoot(redis_url):
    """Two processes x 10 concurrent callers, one budget of 6 calls in Redis, every admitted call held
    open at the server until all 20 callers are either there or refused: exactly 6 requests arrive."""
    redis.Redis.from_url(redis_url).flushdb()
    env = {**os.environ, "PYTHONPATH": os.path.join(REPO, "instrumentation")}
    with CountingServer() as server:
        server.gate = threading.Event()
        refused = [0]
        processes = [
            subprocess.Popen([sys.executable, "-c", _WORKER, redis_url, server.base_url, "10"],
                             stdout=subprocess.PIPE, text=True, env=env)
            for _ in range(2)
        ]
        outputs: list[list[str]] = [[], []]

        def read(index: int) -> None:
            for line in processes[index].stdout:  # type: ignore[union-attr]
                with server.changed:
                    outputs[index].append(line.strip())
                    refused[0] += line.count("refused")
                    server.changed.notify_all()

        readers = [threading.Thread(target=read, args=(i,), daemon=True) for i in range(2)]
        for r in readers:
            r.start()
        with server.changed:
            assert server.changed.wait_for(lambda: server.requests + refused[0] >= 20, timeout=120), (
                server.requests, refused, outputs)
        held = server.requests
        server.gate.set()
        for p in processes:
            assert p.wait(timeout=120) == 0
        for r in readers:
            r.join()
        assert held == 6 and server.requests == 6
    results = [json.loads(out[-1]) for out in outputs]
    assert sum(r["sent"] for r in results) == 6 and sum(r["refused"] for r in results) == 14


def test_unreachable_redis_fails_open_by_default_and_logs(tel, caplog):
    budgets.configure(store=budgets.RedisStore(f"redis://127.0.0.1:{_free_port()}/0", timeout=0.2),
                      on_store_error="open")
    budgets.add("tenant=acme: 1 calls/day hard")
    caplog.set_level(logging.WARNING, logger="llmmeter.budgets")
    with CountingServer() as server, attribution.attributes(tenant="acme"):
        client = server.client()
        chat(client)
        chat(client)
        assert server.requests == 2  # not limited while the store is down
    errors = [r for r in caplog.records if "spend store is unavailable" in r.getMessage()]
    assert len(errors) == 1 and "failing open" in errors[0].getMessage()


def test_unreachable_redis_fails_closed_when_configured(tel, caplog):
    budgets.configure(store=budgets.RedisStore(f"redis://127.0.0.1:{_free_port()}/0", timeout=0.2),
                      on_store_error="closed")
    budgets.add("tenant=acme: 100 calls/day hard")
    caplog.set_level(logging.WARNING, logger="llmmeter.budgets")
    with CountingServer() as server, attribution.attributes(tenant="acme"):
        client = server.client()
        with pytest.raises(BudgetStoreUnavailable) as info:
            chat(client)
        assert isinstance(info.value, BudgetExceeded) and info.value.spent is None
        with attribution.attributes(tenant="globex"):  # no budget applies: not affected
            chat(client)
        assert server.requests == 1
    assert any("failing closed" in r.getMessage() for r in caplog.records)


def test_redis_outage_and_recovery_are_logged(tel, caplog):
    """redis-server stops mid-run, then comes back: refused (fail closed) while down, enforced again after."""
    port = _free_port()
    process = _start_redis(port)
    try:
        budgets.configure(store=budgets.RedisStore(f"redis://127.0.0.1:{port}/0", retry_interval=0),
                          on_store_error="closed")
        budgets.add("tenant=acme: 100 calls/day hard")
        caplog.set_level(logging.WARNING, logger="llmmeter.budgets")
        with CountingServer() as server, attribution.attributes(tenant="acme"):
            client = server.client()
            chat(client)
            _stop(process)
            with pytest.raises(BudgetStoreUnavailable):
                chat(client)
            process = _start_redis(port)  # empty again: the window restarts from zero in the new server
            chat(client)
            assert server.requests == 2
    finally:
        _stop(process)
    messages = [r.getMessage() for r in caplog.records]
    assert any("unavailable" in m and "failing closed" in m for m in messages)
    assert any("reachable again" in m for m in messages)


def test_hard_token_budget_holds_with_50_concurrent_callers_on_redis(tel, redis_url):
    """The in-memory test's scenario (tests/test_budgets.py, worked by hand there) on the Redis store:
    waves of 50 threads against a hard 1,000-token budget; the Lua script applies the same admission rule,
    so the same calls are admitted and spend ends at the limit plus one call's overrun."""
    budgets.configure(store=budgets.RedisStore(redis_url, prefix="waves:", timeout=10.0), on_store_error="closed")
    budget = budgets.add("tenant=acme: 1000 tokens/day hard")

    def call(client):
        with attribution.attributes(tenant="acme"):
            chat(client, "hello world")

    sent_per_wave = []
    with CountingServer(10, 5) as server:
        client = server.client()
        for _ in range(30):
            sent, refused = wave(server, client, 50, call, BudgetExceeded)
            assert sent + refused == 50
            sent_per_wave.append(sent)
            if sent == 0:
                break
        total = server.requests
    assert sent_per_wave == [1] * 8 + [29, 15, 7, 4, 2, 1, 1, 0]
    assert budgets.spent(budget, "acme") == total * 15 == 1005  # <= 1000 + one call's 15 tokens
    raw = redis.Redis.from_url(redis_url)
    [key] = raw.keys("waves:*")
    assert float(raw.hget(key, "r")) == 0  # every reservation released


def test_ci_1_makes_a_missing_redis_server_a_failure(monkeypatch):
    """CI=1 (what many CI systems set) makes a missing redis-server a failure, not a skip."""
    monkeypatch.setenv("CI", "1")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(pytest.fail.Exception, match="redis-server not installed"):
        _redis_binary()
