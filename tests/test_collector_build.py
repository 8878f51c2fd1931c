"""The collector distribution (``otelcol-llmmeter``, built from collector/builder-config.yaml by
``scripts/build-collector.sh``) loads every shipped config, and holds exactly the components they use, all
at the one pinned release that the docker compose stack runs too."""

from __future__ import annotations

import subprocess

import pytest
import yaml
from collector_support import OPTIONAL_CONFIGS, ROOT, SHIPPED_CONFIGS, binary

KINDS = ("receivers", "processors", "exporters", "connectors", "extensions")
MANIFEST = ROOT / "collector" / "builder-config.yaml"
# v0.161.0 renamed two component types and keeps the old names as deprecated aliases (metadata.yaml of
# exporter/otlpexporter and exporter/loadbalancingexporter at v0.161.0: `deprecated_type`). The shipped
# configs keep the old names so they also load in older otelcol-contrib releases.
DEPRECATED_ALIASES = {"exporters": {"otlp": "otlp_grpc", "loadbalancing": "load_balancing"}}


def used_types() -> dict[str, set[str]]:
    used: dict[str, set[str]] = {kind: set() for kind in KINDS}
    for path in (*SHIPPED_CONFIGS.values(), *OPTIONAL_CONFIGS.values()):
        config = yaml.safe_load(path.read_text())
        for kind in KINDS:
            for component_id in config.get(kind) or {}:
                kind_type = component_id.split("/", 1)[0]
                used[kind].add(DEPRECATED_ALIASES.get(kind, {}).get(kind_type, kind_type))
    return used


def components() -> dict:
    result = subprocess.run([binary("otelcol-llmmeter"), "components"], capture_output=True, text=True, check=True)
    return yaml.safe_load(result.stdout)


@pytest.mark.parametrize("name", sorted(SHIPPED_CONFIGS))
def test_validate_accepts_shipped_config(name: str) -> None:
    result = subprocess.run([binary("otelcol-llmmeter"), "validate", f"--config={SHIPPED_CONFIGS[name]}"],
                            capture_output=True, text=True)
    assert result.returncode == 0, f"{name}:\n{result.stdout}{result.stderr}"


def test_validate_rejects_a_broken_config(tmp_path) -> None:
    """validate really checks: an unknown processor in the pipeline is an error naming it."""
    config = yaml.safe_load(SHIPPED_CONFIGS["gateway.yaml"].read_text())
    config["service"]["pipelines"]["traces"]["processors"].append("tail_sampling")
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(config))
    result = subprocess.run([binary("otelcol-llmmeter"), "validate", f"--config={broken}"],
                            capture_output=True, text=True)
    assert result.returncode != 0
    assert "tail_sampling" in result.stdout + result.stderr


def test_distribution_holds_exactly_the_components_the_configs_use() -> None:
    built = components()
    have = {kind: {c["name"] for c in built.get(kind) or []} for kind in KINDS}
    assert have == used_types()


def test_one_release_everywhere() -> None:
    """Every module in the manifest is at one collector release; the binary, the compose image, the
    components list the config tests use, and the configs' headers all say that release."""
    manifest = yaml.safe_load(MANIFEST.read_text())
    version = manifest["dist"]["version"]
    stable = {"0.161.0": "1.67.0"}[version]  # core's v0.x and v1.x modules are released together
    for kind in (*KINDS, "providers"):
        for entry in manifest.get(kind) or []:
            module, module_version = entry["gomod"].split()
            want = stable if module.startswith("go.opentelemetry.io/collector/confmap") else version
            assert module_version == f"v{want}", entry["gomod"]
    assert components()["buildinfo"]["version"] == version
    release = yaml.safe_load((ROOT / "collector" / "otelcol-contrib-components.yaml").read_text())
    assert release["version"] == version
    compose = yaml.safe_load((ROOT / "collector" / "docker-compose.yaml").read_text())
    assert compose["services"]["otel-collector"]["image"] == f"otel/opentelemetry-collector-contrib:{version}"
    for path in (*SHIPPED_CONFIGS.values(), *OPTIONAL_CONFIGS.values()):
        assert f"otelcol-contrib {version}" in path.read_text(), path.name
