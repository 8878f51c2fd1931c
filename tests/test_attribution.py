"""Attribution: scopes (context manager, decorator, sync/async, nesting), configured label keys, and
inbound baggage treated as untrusted input."""

from __future__ import annotations

import asyncio
import threading

import llmmeter.attribution as attribution
import pytest
from llmmeter import config, names
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


@pytest.mark.parametrize("bad", ["x" * 129, "a;b", "<script>", "", "é"])
def test_bad_values_are_refused_in_process(bad):
    with pytest.raises(ValueError, match=r"llmmeter\.attributes"):
        attribution.attributes(tenant=bad)


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
