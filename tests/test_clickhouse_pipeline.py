"""collector/clickhouse.yaml: the optional ClickHouse pipeline, merged into the shipped collector configs.

The collector merges several ``--config`` files in order: maps are merged key by key, any other value (a
list, a string) is replaced by the later file's (go.opentelemetry.io/collector/confmap, ``Conf.Merge``).
:func:`merge` does the same, so these checks run on the config the collector would run.
"""

from __future__ import annotations

import copy
import pathlib
from typing import Any

import pytest
import yaml
from llmmeter import names

ROOT = pathlib.Path(__file__).resolve().parents[1]
CLICKHOUSE = ROOT / "collector" / "clickhouse.yaml"
BASES = {"single": ROOT / "otel-collector.yaml", "gateway": ROOT / "collector" / "gateway.yaml"}


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


@pytest.mark.parametrize("which", sorted(BASES))
def test_merged_config_adds_the_clickhouse_pipeline_and_changes_nothing_else(which: str) -> None:
    base = yaml.safe_load(BASES[which].read_text())
    merged = merge(base, yaml.safe_load(CLICKHOUSE.read_text()))
    release = yaml.safe_load((ROOT / "collector" / "otelcol-contrib-components.yaml").read_text())
    assert "clickhouse" in release["exporters"]

    pipelines = merged["service"]["pipelines"]
    assert {k: v for k, v in pipelines.items() if k != "traces/clickhouse"} == base["service"]["pipelines"]
    pipeline = pipelines["traces/clickhouse"]
    assert pipeline["exporters"] == ["clickhouse"]
    for kind in ("receivers", "processors", "exporters"):
        for component in pipeline[kind]:
            assert component in merged[kind], f"{which}: traces/clickhouse uses undefined {component!r}"
            assert component.split("/")[0] in release[kind]
    assert pipeline["processors"][0] == "memory_limiter" and pipeline["processors"][-1] == "batch"
    # No prompt/completion content into ClickHouse: the same filter as the Jaeger pipeline runs first.
    deleted = {a["key"] for a in merged["processors"]["attributes/drop_content"]["actions"] if a["action"] == "delete"}
    assert "attributes/drop_content" in pipeline["processors"] and deleted == set(names.CONTENT_ATTRIBUTES)


def test_exporter_writes_the_table_the_reports_read() -> None:
    from llmmeter.report.clickhouse import DEFAULT_TABLE

    exporter = yaml.safe_load(CLICKHOUSE.read_text())["exporters"]["clickhouse"]
    assert f"{exporter['database']}.{exporter['traces_table_name']}" == DEFAULT_TABLE
    assert exporter["create_schema"] is True
