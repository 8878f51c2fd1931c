"""Structural checks of the collector configs (no otelcol binary here): every component exists in the
pinned otelcol-contrib release, pipelines only use defined components, content attributes are dropped,
and the exporters agree with Prometheus's scrape targets and the Jaeger service."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest
import yaml
from llmmeter import names

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = {
    "single": ROOT / "otel-collector.yaml",
    "agent": ROOT / "collector" / "agent.yaml",
    "gateway": ROOT / "collector" / "gateway.yaml",
}
KINDS = ("receivers", "processors", "exporters", "connectors", "extensions")


def load(path: pathlib.Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def release() -> dict[str, Any]:
    return load(ROOT / "collector" / "otelcol-contrib-components.yaml")


def component_type(component_id: str) -> str:
    """``otlp/jaeger`` -> ``otlp`` (the collector's type[/name] ids)."""
    return component_id.split("/", 1)[0]


@pytest.mark.parametrize("which", sorted(CONFIGS))
def test_every_component_is_in_the_pinned_release(which: str, release: dict[str, Any]) -> None:
    config = load(CONFIGS[which])
    for kind in KINDS:
        for component_id in config.get(kind) or {}:
            assert component_type(component_id) in (release.get(kind) or {}), (
                f"{CONFIGS[which].name}: {kind[:-1]} {component_id!r} is not in otelcol-contrib {release['version']}"
            )


@pytest.mark.parametrize("which", sorted(CONFIGS))
def test_pipelines_reference_defined_components(which: str) -> None:
    config = load(CONFIGS[which])
    service = config["service"]
    for ext in service.get("extensions", []):
        assert ext in config["extensions"], f"service.extensions names undefined {ext!r}"
    used: dict[str, set[str]] = {k: set() for k in ("receivers", "processors", "exporters")}
    for pipeline_id, pipeline in service["pipelines"].items():
        assert pipeline.get("receivers") and pipeline.get("exporters"), f"pipeline {pipeline_id} is incomplete"
        for kind in used:
            for component_id in pipeline.get(kind, []):
                assert component_id in (config.get(kind) or {}), f"pipeline {pipeline_id}: undefined {component_id!r}"
                used[kind].add(component_id)
        processors = pipeline.get("processors", [])
        assert processors[0] == "memory_limiter", f"{pipeline_id}: memory_limiter must run first"
        batching_exporters = [e for e in pipeline["exporters"]
                              if ((config["exporters"][e] or {}).get("sending_queue") or {}).get("batch")]
        if batching_exporters:  # batched after the persistent queue: a batch processor would hold acked data
            assert "batch" not in processors, f"{pipeline_id}: batches twice"
            assert batching_exporters == pipeline["exporters"], f"{pipeline_id}: every exporter must batch"
        else:
            assert processors[-1] == "batch", f"{pipeline_id}: batch must run last"
    for kind, ids in used.items():
        assert ids == set(config.get(kind) or {}), f"{kind} defined but unused: {set(config[kind]) - ids}"


@pytest.mark.parametrize("which", sorted(CONFIGS))
def test_content_attributes_are_dropped_from_traces(which: str) -> None:
    config = load(CONFIGS[which])
    traces = config["service"]["pipelines"]["traces"]
    droppers = [p for p in traces["processors"] if component_type(p) == "attributes"]
    assert droppers, "traces pipeline has no attributes processor dropping message content"
    deleted = {
        action["key"]
        for p in droppers
        for action in config["processors"][p]["actions"]
        if action["action"] == "delete"
    }
    assert deleted == set(names.CONTENT_ATTRIBUTES)
    if "batch" in traces["processors"]:
        assert traces["processors"].index(droppers[0]) < traces["processors"].index("batch")


@pytest.mark.parametrize("which", ["single", "gateway"])
def test_exporters_match_prometheus_and_jaeger(which: str) -> None:
    config = load(CONFIGS[which])
    prom = config["exporters"]["prometheus"]
    assert prom["add_metric_suffixes"] is True, "llmmeter's metric names need the unit/_total suffixes"
    assert prom["resource_to_telemetry_conversion"]["enabled"] is True, "service_name label needed"
    port = int(prom["endpoint"].rsplit(":", 1)[1])
    scrape = load(ROOT / "collector" / "prometheus.yml")
    targets = [t for job in scrape["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]]
    assert f"otel-collector:{port}" in targets

    jaeger = config["exporters"]["otlp/jaeger"]
    assert jaeger["endpoint"] == "jaeger:4317"
    assert jaeger["sending_queue"]["storage"] == "file_storage"
    assert "file_storage" in config["extensions"] and "file_storage" in config["service"]["extensions"]


def test_single_collector_receives_otlp_on_standard_ports() -> None:
    config = load(CONFIGS["single"])
    protocols = config["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"].endswith(":4317")
    assert protocols["http"]["endpoint"].endswith(":4318")
    assert set(config["extensions"]) == {"health_check", "file_storage"}


def test_agent_load_balances_traces_by_trace_id_to_the_gateways() -> None:
    agent, gateway = load(CONFIGS["agent"]), load(CONFIGS["gateway"])
    pipelines = agent["service"]["pipelines"]
    traces_exporter = agent["exporters"][pipelines["traces"]["exporters"][0]]
    metrics_exporter = agent["exporters"][pipelines["metrics"]["exporters"][0]]
    assert traces_exporter["routing_key"] == "traceID"
    assert metrics_exporter["routing_key"] == "service"
    gateway_port = gateway["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"].rsplit(":", 1)[1]
    for exporter in (traces_exporter, metrics_exporter):
        assert exporter["resolver"]["dns"]["port"] == gateway_port
        assert "endpoint" not in exporter["protocol"]["otlp"], "the load balancer sets the endpoint itself"


def test_pinned_version_is_stated_everywhere() -> None:
    release = load(ROOT / "collector" / "otelcol-contrib-components.yaml")
    version = release["version"]
    compose = load(ROOT / "collector" / "docker-compose.yaml")
    assert compose["services"]["otel-collector"]["image"] == release["image"]
    for path in [*CONFIGS.values(), ROOT / "collector" / "README.md"]:
        assert version in path.read_text(), f"{path.name} does not state otelcol-contrib {version}"
