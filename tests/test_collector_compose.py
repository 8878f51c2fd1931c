"""Structural checks of collector/docker-compose.yaml (no Docker engine here): every mounted file exists,
ports agree with the collector/Prometheus/Alertmanager/Grafana configs, and provisioning points at the
dashboards and rules that the other tests prove."""

from __future__ import annotations

import pathlib
from typing import Any

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
COLLECTOR = ROOT / "collector"


def load(path: pathlib.Path) -> Any:
    return yaml.safe_load(path.read_text())


def compose() -> dict[str, Any]:
    return load(COLLECTOR / "docker-compose.yaml")


def mounts(service: str) -> dict[str, pathlib.Path]:
    """container path -> host path for the service's bind mounts (named volumes skipped)."""
    out = {}
    for volume in compose()["services"][service].get("volumes", []):
        host, container = volume.split(":")[:2]
        if host.startswith((".", "/")):
            out[container] = (COLLECTOR / host).resolve()
    return out


def published(service: str) -> set[int]:
    return {int(str(p).split(":")[-1]) for p in compose()["services"][service].get("ports", [])}


def test_every_bind_mount_exists() -> None:
    for service in compose()["services"]:
        for container, host in mounts(service).items():
            assert host.exists(), f"{service}: {host} (mounted at {container}) does not exist"


def test_every_image_is_pinned() -> None:
    for name, service in compose()["services"].items():
        image = service["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: image {image!r} is not pinned"


def test_collector_ports_match_its_config() -> None:
    mounted = mounts("otel-collector")
    command = " ".join(compose()["services"]["otel-collector"]["command"])
    config_path = command.split("--config=")[1].split()[0]
    config = load(mounted[config_path])
    assert mounted[config_path] == (ROOT / "otel-collector.yaml").resolve()
    ports = {int(config["receivers"]["otlp"]["protocols"][p]["endpoint"].rsplit(":", 1)[1]) for p in ("grpc", "http")}
    ports.add(int(config["exporters"]["prometheus"]["endpoint"].rsplit(":", 1)[1]))
    ports.add(int(config["extensions"]["health_check"]["endpoint"].rsplit(":", 1)[1]))
    assert ports <= published("otel-collector")
    storage = config["extensions"]["file_storage"]["directory"]
    volumes = compose()["services"]["otel-collector"]["volumes"]
    assert any(v.split(":")[1] == storage for v in volumes), "file_storage directory is not on a volume"


def test_jaeger_receives_otlp_where_the_collector_sends() -> None:
    config = load(ROOT / "otel-collector.yaml")
    host, port = config["exporters"]["otlp/jaeger"]["endpoint"].rsplit(":", 1)
    jaeger = compose()["services"][host]
    assert port in [str(p) for p in jaeger.get("expose", [])]
    assert jaeger["environment"]["COLLECTOR_OTLP_ENABLED"] == "true"
    assert 16686 in published(host)


def test_prometheus_loads_the_rules_and_scrapes_the_collector() -> None:
    prom = load(COLLECTOR / "prometheus.yml")
    mounted = mounts("prometheus")
    for rule_file in prom["rule_files"]:
        directory, file_name = rule_file.rsplit("/", 1)
        assert (mounted[directory] / file_name).exists(), f"rule file {rule_file} is not mounted"
    config_flag = next(a for a in compose()["services"]["prometheus"]["command"] if a.startswith("--config.file="))
    assert mounted[config_flag.split("=", 1)[1]] == (COLLECTOR / "prometheus.yml").resolve()
    am_targets = [t for am in prom["alerting"]["alertmanagers"] for sc in am["static_configs"] for t in sc["targets"]]
    for target in am_targets:
        host, port = target.split(":")
        assert int(port) in published(host)
    for job in prom["scrape_configs"]:
        for sc in job["static_configs"]:
            for target in sc["targets"]:
                host, port = target.split(":")
                assert host in compose()["services"], f"scrape target {target} is not a compose service"
                assert int(port) in published(host)


def test_grafana_provisions_the_datasource_and_dashboards() -> None:
    mounted = mounts("grafana")
    provisioning = mounted["/etc/grafana/provisioning"]
    datasource = load(provisioning / "datasources" / "prometheus.yaml")["datasources"][0]
    assert datasource["type"] == "prometheus"
    host, port = datasource["url"].split("//")[1].split(":")
    assert int(port) in published(host)
    provider = load(provisioning / "dashboards" / "llmmeter.yaml")["providers"][0]
    dashboards_dir = mounted[provider["options"]["path"]]
    assert dashboards_dir == (ROOT / "dashboards").resolve()
    assert sorted(p.name for p in dashboards_dir.glob("*.json")) == [
        "llmmeter-agents.json", "llmmeter-cost.json", "llmmeter-tokens.json"
    ]
    assert 3000 in published("grafana")


def test_alertmanager_config_is_mounted() -> None:
    mounted = mounts("alertmanager")
    config = load(mounted["/etc/alertmanager/alertmanager.yml"])
    receivers = {r["name"] for r in config["receivers"]}
    assert config["route"]["receiver"] in receivers
    assert 9093 in published("alertmanager")
