"""Attribution: scopes (context manager, decorator, sync/async, nesting), configured label keys, and
inbound baggage treated as untrusted input."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading

import llmmeter.attribution as attribution
import pytest
from llmmeter import _providers, config, names
from llmmeter.processor import LLMMeterSpanProcessor
from opentelemetry import baggage
from opentelemetry import context as otel_context
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind


@pytest.fixture(autouse=True)
def _fresh_settings():
    config.set_settings(config.Settings())
    yield
    config.set_settings(None)


def test_context_manager_sets_and_restores():
    assert attribution.current() == {}
    with attribution.attributes(tenant="acme", feature="search"):
        assert attribution.current() == {"tenant": "acme", "feature": "search"}
    assert attribution.current() == {}


def test_nested_scopes_merge_and_inner_wins():
    with attribution.attributes(tenant="acme", feature="search"):
        with attribution.attributes(feature="summarize", user="u-1"):
            assert attribution.current() == {"tenant": "acme", "feature": "summarize", "user": "u-1"}
        assert attribution.current() == {"tenant": "acme", "feature": "search"}


def test_decorator_sync_and_async():
    @attribution.attributes(tenant="acme")
    def sync_fn():
        with attribution.attributes(feature="inner"):
            return attribution.current()

    @attribution.attributes(tenant="globex", route="/r")
    async def async_fn():
        await asyncio.sleep(0)
        return attribution.current()

    assert sync_fn() == {"tenant": "acme", "feature": "inner"}
    assert asyncio.run(async_fn()) == {"tenant": "globex", "route": "/r"}
    assert attribution.current() == {}


def test_concurrent_tasks_and_threads_do_not_see_each_other():
    async def task(tenant):
        with attribution.attributes(tenant=tenant):
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            return attribution.current()["tenant"]

    async def main():
        return await asyncio.gather(*(task(f"t{i}") for i in range(20)))

    assert asyncio.run(main()) == [f"t{i}" for i in range(20)]

    seen: dict[int, dict[str, str]] = {}
    barrier = threading.Barrier(4)

    def worker(i):
        with attribution.attributes(tenant=f"w{i}"):
            barrier.wait()
            seen[i] = attribution.current()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == {i: {"tenant": f"w{i}"} for i in range(4)}


def test_values_travel_as_namespaced_baggage():
    with attribution.attributes(tenant="acme"):
        assert baggage.get_baggage("llmmeter.tenant") == "acme"
        assert baggage.get_baggage("tenant") is None


def _sha16(text: str) -> str:
    """The documented stand-in, computed here by hand: "sha256:" + 16 hex digits of the UTF-8 bytes."""
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@pytest.fixture
def change_counts():
    reader = InMemoryMetricReader()
    _providers.use(meter_provider=MeterProvider(metric_readers=[reader]))

    def counts():
        data = reader.get_metrics_data()
        if data is None:
            return {}
        return {(p.attributes[names.LABEL_ATTRIBUTION_KEY], p.attributes[names.LABEL_ATTRIBUTION_CHANGE]): p.value
                for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
                if m.name == names.METRIC_ATTRIBUTION_NORMALIZED for p in m.data.data_points}

    yield counts
    _providers.use()


def test_values_that_are_not_label_safe_are_hashed_never_raised(change_counts):
    long_id = "u" * 129
    with attribution.attributes(user="O'Brien", tenant="josé@example.com", feature=long_id, route="ok/1"):
        assert attribution.current() == {
            "user": "sha256:" + hashlib.sha256(b"O'Brien").hexdigest()[:16],
            "tenant": "sha256:" + hashlib.sha256("josé@example.com".encode()).hexdigest()[:16],
            "feature": _sha16(long_id),
            "route": "ok/1",
        }
    with attribution.attributes(tenant="a;b"), attribution.attributes(feature="<script>"):
        assert attribution.current() == {"tenant": _sha16("a;b"), "feature": _sha16("<script>")}
    assert change_counts() == {("user", "hashed"): 1, ("tenant", "hashed"): 2, ("feature", "hashed"): 2}


def test_whitespace_is_trimmed_and_empty_values_dropped(change_counts):
    with attribution.attributes(tenant="acme\n", feature=" search ", user="", route="   "):
        assert attribution.current() == {"tenant": "acme", "feature": "search"}  # "acme\n" is not a label
    with attribution.attributes(tenant="acme"):  # already clean: not counted
        pass
    assert change_counts() == {("tenant", "trimmed"): 1, ("feature", "trimmed"): 1, ("user", "dropped"): 1,
                               ("route", "dropped"): 1}


@pytest.mark.parametrize("bad_key", ["Tenant", "tenant\n", "1x", "a-b", "x" * 33])
def test_keys_that_are_not_identifiers_still_raise_where_written(bad_key):
    with pytest.raises(ValueError, match=r"llmmeter\.attributes"):
        attribution.attributes(**{bad_key: "v"})


def test_inbound_value_with_a_trailing_newline_is_not_read():
    ctx = baggage.set_baggage("llmmeter.tenant", "acme\n", context=otel_context.get_current())
    ctx = baggage.set_baggage("llmmeter.feature", "search", context=ctx)
    assert attribution.current(ctx) == {"feature": "search"}


def test_one_scope_object_shared_by_threads_exits_cleanly(caplog):
    """Thread A enters, thread B enters the same object, A exits, then B exits: each exit undoes its own
    entry (per-context state), nothing leaks, no "Failed to detach context"."""
    shared = attribution.attributes(tenant="acme")
    a_entered, b_entered, a_exited = threading.Event(), threading.Event(), threading.Event()
    seen: dict[str, object] = {}

    def thread_a():
        with attribution.attributes(feature="a"):
            with shared:
                a_entered.set()
                b_entered.wait(10)
                seen["a_inside"] = attribution.current()
            seen["a_after"] = attribution.current()
        seen["a_end"] = attribution.current()
        a_exited.set()

    def thread_b():
        a_entered.wait(10)
        with shared:
            b_entered.set()
            a_exited.wait(10)
            seen["b_inside"] = attribution.current()
        seen["b_after"] = attribution.current()

    caplog.set_level(logging.ERROR)
    threads = [threading.Thread(target=thread_a), threading.Thread(target=thread_b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == {
        "a_inside": {"tenant": "acme", "feature": "a"}, "a_after": {"feature": "a"}, "a_end": {},
        "b_inside": {"tenant": "acme"}, "b_after": {},
    }
    assert not [r for r in caplog.records if "detach" in r.getMessage()]


def test_one_scope_object_shared_by_asyncio_tasks_and_as_a_decorator():
    shared = attribution.attributes(tenant="acme")

    async def task(i):
        with attribution.attributes(user=f"u{i}"):
            with shared:
                await asyncio.sleep(0)
                inside = attribution.current()
                await asyncio.sleep(0)
            return inside, attribution.current()

    @shared
    async def decorated(i):
        await asyncio.sleep(0)
        return attribution.current()

    async def main():
        return await asyncio.gather(*(task(i) for i in range(10))), await asyncio.gather(
            *(decorated(i) for i in range(10)))

    tasks, decorated_results = asyncio.run(main())
    assert tasks == [({"tenant": "acme", "user": f"u{i}"}, {"user": f"u{i}"}) for i in range(10)]
    assert decorated_results == [{"tenant": "acme"}] * 10
    assert attribution.current() == {}


def test_inbound_baggage_only_allow_listed_keys_and_clean_values():
    ctx = otel_context.get_current()
    for key, value in {
        "llmmeter.tenant": "acme",
        "llmmeter.feature": "x" * 500,  # too long
        "llmmeter.route": "/a,b;c",  # bad characters
        "llmmeter.secret_key": "leak",  # not allow-listed
        "tenant": "other-system",  # not namespaced
    }.items():
        ctx = baggage.set_baggage(key, value, context=ctx)
    assert attribution.current(ctx) == {"tenant": "acme"}


def test_untrusted_inbound_baggage_is_ignored_but_in_process_values_count():
    attribution.configure(trust_inbound_baggage=False)
    ctx = baggage.set_baggage("llmmeter.tenant", "spoofed", context=otel_context.get_current())
    token = otel_context.attach(ctx)
    try:
        assert attribution.current() == {}
        with attribution.attributes(feature="local"):
            assert attribution.current() == {"feature": "local"}
            with attribution.attributes(tenant="mine"):
                assert attribution.current() == {"feature": "local", "tenant": "mine"}
    finally:
        otel_context.detach(token)


def test_env_controls_trust_and_label_keys():
    settings = config.Settings.from_env(
        {config.ENV_TRUST_INBOUND_BAGGAGE: "false", config.ENV_LABEL_KEYS: "tenant,user,region"}
    )
    config.set_settings(settings)
    assert attribution.label_keys() == ("tenant", "user", "region")
    assert "region" in attribution.allowed_keys()
    with attribution.attributes(region="eu-west"):
        assert attribution.current() == {"region": "eu-west"}
    with pytest.raises(config.ConfigError, match="LLMMETER_TRUST_INBOUND_BAGGAGE"):
        config.Settings.from_env({config.ENV_TRUST_INBOUND_BAGGAGE: "maybe"})


def test_configure_api_validates_and_sets_label_keys():
    assert attribution.label_keys() == names.DEFAULT_LABEL_KEYS
    assert "user" not in attribution.label_keys()
    attribution.configure(include_user=True)
    assert attribution.label_keys() == (*names.DEFAULT_LABEL_KEYS, "user")
    attribution.configure(label_keys=["tenant"], max_values_per_label=50)
    assert attribution.label_keys() == ("tenant",)
    assert config.settings().max_values_per_label == 50
    with pytest.raises(config.ConfigError, match="Bad-Key"):
        attribution.configure(label_keys=["Bad-Key"])
    with pytest.raises(config.ConfigError, match="max_values_per_label"):
        attribution.configure(max_values_per_label=0)


def _pipeline(settings: config.Settings):
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(LLMMeterSpanProcessor(meter_provider=meter_provider, settings=settings))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("test"), exporter, reader


def _chat_span(tracer):
    tracer.start_span("chat m", kind=SpanKind.CLIENT, attributes={
        names.OPERATION: names.OP_CHAT, names.PROVIDER: "openai", names.REQUEST_MODEL: "m",
        names.USAGE_INPUT_TOKENS: 3, names.USAGE_OUTPUT_TOKENS: 2, names.LLMMETER_PRICED: False,
    }).end()


def _label_sets(reader):
    data = reader.get_metrics_data()
    return [dict(p.attributes) for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
            if m.name == names.METRIC_REQUESTS for p in m.data.data_points]


def test_user_is_on_spans_but_a_metric_label_only_when_enabled():
    tracer, exporter, reader = _pipeline(config.Settings())
    with attribution.attributes(tenant="acme", user="u-1"):
        _chat_span(tracer)
    span = exporter.get_finished_spans()[0]
    assert span.attributes[names.ATTRIBUTION_SPAN_PREFIX + "user"] == "u-1"
    [labels] = _label_sets(reader)
    assert labels["tenant"] == "acme" and "user" not in labels

    attribution.configure(include_user=True)
    tracer, exporter, reader = _pipeline(config.settings())
    with attribution.attributes(tenant="acme", user="u-1"):
        _chat_span(tracer)
    [labels] = _label_sets(reader)
    assert labels["user"] == "u-1"
