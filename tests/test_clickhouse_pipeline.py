"""collector/clickhouse.yaml: the optional ClickHouse pipeline, merged into the shipped collector configs.

The collector merges several ``--config`` files in order: maps are merged key by key, any other value (a
list, a string) is replaced by the later file's (go.opentelemetry.io/collector/confmap, ``Conf.Merge``).
:func:`merge` does the same, so the structural checks run on the config the collector would run.

The rest runs the real thing: ``otelcol-llmmeter`` (which holds the clickhouse exporter, v0.161.0) validates
and runs the merged configs, and the exporter's DDL is read from its Go module source. No ClickHouse server
runs here (Debian's is 18.16, too old for the exporter's table): its DDL runs on chDB, and the runtime tests
point the exporter at a closed port.
"""

from __future__ import annotations

import copy
import json
import os
import pathlib
import re
import subprocess
import sys
from contextlib import ExitStack
from typing import Any

import pytest
import test_prometheus_proof as proof
import yaml
from collector_support import (
    CLICKHOUSE,
    SINGLE,
    CollectorPorts,
    JaegerAPI,
    JaegerPorts,
    binary,
    collector,
    jaeger,
    own_metrics,
    prometheus_config,
    render,
    render_jaeger,
    stopping,
)
from llmmeter import names
from llmmeter.demo import scenarios
from promtools import free_port, http_get, prometheus_server, require_binary, wait_until

ROOT = pathlib.Path(__file__).resolve().parents[1]
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
    # The exporter creates it on a start with CLICKHOUSE_CREATE_SCHEMA=true, never by default (the two runtime
    # tests below say why).
    assert exporter["create_schema"] == "${env:CLICKHOUSE_CREATE_SCHEMA:-false}"


# --- the exporter in otelcol-llmmeter (real binary) --------------------------------------------------
EXPORTER_MODULE = "github.com/open-telemetry/opentelemetry-collector-contrib/exporter/clickhouseexporter"


@pytest.mark.parametrize("which", sorted(BASES))
def test_collector_loads_the_merged_config(which: str) -> None:
    """otelcol-llmmeter holds the clickhouse exporter: the shipped config with this one merged over it loads."""
    result = subprocess.run([binary("otelcol-llmmeter"), "validate", f"--config={BASES[which]}",
                             f"--config={CLICKHOUSE}"], capture_output=True, text=True)
    assert result.returncode == 0, f"{which}:\n{result.stdout}{result.stderr}"


def test_validate_checks_the_clickhouse_settings() -> None:
    """validate really parses the exporter's settings: a misspelt one is an error naming it."""
    result = subprocess.run([binary("otelcol-llmmeter"), "validate", f"--config={BASES['single']}",
                             f"--config={CLICKHOUSE}", "--config=yaml:exporters::clickhouse::traces_tabel_name: x"],
                            capture_output=True, text=True)
    assert result.returncode != 0
    assert "traces_tabel_name" in result.stdout + result.stderr


def test_a_bad_create_schema_value_is_named() -> None:
    result = subprocess.run([binary("otelcol-llmmeter"), "validate", f"--config={BASES['single']}",
                             f"--config={CLICKHOUSE}"], env={**os.environ, "CLICKHOUSE_CREATE_SCHEMA": "maybe"},
                            capture_output=True, text=True)
    assert result.returncode != 0
    assert "create_schema" in result.stderr and "clickhouse" in result.stderr


def exporter_source() -> pathlib.Path:
    """The clickhouse exporter's source at the version otelcol-llmmeter pins, from the Go module cache the
    build filled (GOPROXY=off: nothing is downloaded here)."""
    binary("otelcol-llmmeter")
    result = subprocess.run(["go", "list", "-m", "-f", "{{.Version}} {{.Dir}}", EXPORTER_MODULE],
                            cwd=ROOT / "collector" / "otelcol-llmmeter", capture_output=True, text=True,
                            env={**os.environ, "GOPROXY": "off"})
    assert result.returncode == 0, result.stderr
    version, _, directory = result.stdout.strip().partition(" ")
    assert version == "v0.161.0"
    assert directory, f"{EXPORTER_MODULE} not in the Go module cache: `go mod download` in collector/otelcol-llmmeter"
    return pathlib.Path(directory)


def go_sprintf(template: str, *values: str) -> str:
    """Go's fmt.Sprintf for the %q/%s verbs the exporter's DDL uses (%q of a plain identifier: it in double quotes)."""
    rest = iter(values)
    out = re.sub(r"%[qs]", lambda match: next(rest), template)
    assert next(rest, None) is None, "more values than verbs"
    return out


def sql_statements(sql: str) -> list[str]:
    """The statements of a SQL script, comments dropped and whitespace collapsed."""
    text = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    return [" ".join(statement.split()) for statement in text.split(";") if statement.strip()]


def exporter_ddl(source: pathlib.Path, ttl: str) -> list[str]:
    """CREATE DATABASE and CREATE TABLE as the exporter renders them with collector/clickhouse.yaml's database
    and table, no cluster and the default engine, MergeTree() (internal/clickhouse.go CreateDatabase,
    exporter_traces.go renderCreateTracesTableSQL)."""
    go_source = (source / "internal" / "clickhouse.go").read_text()
    create_database = re.search(r'ddl := fmt\.Sprintf\("(CREATE DATABASE[^"]*)"', go_source).group(1)
    table = (source / "internal" / "sqltemplates" / "traces_table.sql").read_text()
    return sql_statements(";\n".join([go_sprintf(create_database, '"otel"', ""),
                                      go_sprintf(table, '"otel"', '"otel_traces"', "", "MergeTree()", ttl)]))


def ttl_expression() -> str:
    """The TTL clause the exporter adds for clickhouse.yaml's ``ttl``: internal/clickhouse.go GenerateTTLExpr
    writes a whole number of days as toIntervalDay (2160h: 90 days)."""
    hours = int(yaml.safe_load(CLICKHOUSE.read_text())["exporters"]["clickhouse"]["ttl"].removesuffix("h"))
    assert hours % 24 == 0
    return f"TTL toDateTime(Timestamp) + toIntervalDay({hours // 24})"


def test_reports_assume_the_table_the_exporter_writes() -> None:
    """A DDL report/clickhouse.py runs its tests on (no TTL) is the exporter's at v0.161.0: the reports read the
    table it writes."""
    from llmmeter.report.clickhouse import EXPORTER_DDLS

    _database, table = exporter_ddl(exporter_source(), "")
    versions = [version for version, ddl in EXPORTER_DDLS.items()
                if sql_statements(ddl.format(table='"otel"."otel_traces"')) == [table]]
    assert versions, "no DDL in llmmeter.report.clickhouse.EXPORTER_DDLS is the exporter's v0.161.0 table"


CHDB_SCRIPT = """
import json, sys
from chdb import session
sess = session.Session(sys.argv[1])
for statement in json.loads(sys.argv[2]):
    sess.query(statement)
print(json.dumps([row[0] for row in json.loads(
    sess.query('DESCRIBE "otel"."otel_traces" SETTINGS describe_compact_output = 1', "JSONCompact").bytes())["data"]]))
"""


def test_exporters_ddl_runs_and_takes_its_inserts(tmp_path) -> None:
    """What the exporter runs on a CLICKHOUSE_CREATE_SCHEMA=true start (90-day TTL included) runs on ClickHouse's
    engine (chDB, in a child process: chDB allows one session per process and tests/test_report.py holds one),
    and the table has every column the exporter's INSERT names."""
    ddl = exporter_ddl(exporter_source(), ttl_expression())
    assert "toIntervalDay(90)" in ddl[1]
    result = subprocess.run([sys.executable, "-c", CHDB_SCRIPT, str(tmp_path / "chdb"), json.dumps(ddl)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    columns = set(json.loads(result.stdout.splitlines()[-1]))
    insert = (exporter_source() / "internal" / "sqltemplates" / "traces_insert.sql").read_text()
    inserted = {c.strip() for c in insert.split("(", 1)[1].split(")", 1)[0].split(",")}
    assert len(inserted) == 22 and inserted <= columns, inserted - columns


def test_clickhouse_down_costs_only_its_own_pipeline(tmp_path) -> None:
    """The single collector with this pipeline merged in, ClickHouse's port closed: the collector starts and
    stays healthy, the app's calls return normally, every span reaches Jaeger and Prometheus's totals equal the
    spans; the ClickHouse exporter's failure shows in the collector's log and its own metrics (nothing sent)."""
    jaeger_ports, ports = JaegerPorts(), CollectorPorts()
    closed = free_port()  # bound and released: nothing listens there
    procs = [jaeger(render_jaeger(tmp_path, jaeger_ports), jaeger_ports, tmp_path),
             collector("collector", render(SINGLE, tmp_path, ports, jaeger_grpc=jaeger_ports.grpc), ports, tmp_path,
                       more_configs=(str(CLICKHOUSE),
                                     f"yaml:exporters::clickhouse::endpoint: tcp://127.0.0.1:{closed}?dial_timeout=1s"))]
    with ExitStack() as cleanup:
        cleanup.enter_context(stopping(*procs))
        for proc in procs:
            proc.start()
        api = cleanup.enter_context(prometheus_server(require_binary("prometheus"), tmp_path,
                                                      prometheus_config([ports])))
        workload = proof.OTLPWorkload.to_collector(f"http://127.0.0.1:{ports.http}")
        client = proof.attach(cleanup, workload, with_budgets=False)
        scenarios.run_all(client)  # raises nothing
        workload.flush()
        spans, llm = workload.spans(), proof.llm_spans(workload.spans())
        in_jaeger = JaegerAPI(jaeger_ports)
        wait_until(lambda: len(in_jaeger.spans(proof.SERVICE)) == len(spans), 60, f"{len(spans)} spans in Jaeger")
        where = f'{{{names.prometheus_label("service.name")}="{proof.SERVICE}"}}'
        requests, cost = (names.metric_prometheus_name(m) for m in (names.METRIC_REQUESTS, names.METRIC_COST))
        wait_until(lambda: api.vector(f"sum({requests}{where})") == [({}, float(len(llm)))], 60,
                   f"prometheus to count {len(llm)} requests")
        assert api.scalar(f"sum({cost}{where})") == pytest.approx(proof.span_cost(spans), rel=1e-9)

        def clickhouse_failed() -> bool:
            return any('"clickhouse"' in line and f"127.0.0.1:{closed}" in line and "connection refused" in line
                       for line in procs[1].log.read_text(errors="replace").splitlines())

        wait_until(clickhouse_failed, 60, "the collector to log the clickhouse exporter's failed export")
        assert procs[1].alive() and http_get(f"http://127.0.0.1:{ports.health}/")
        assert own_metrics(ports, exporter="clickhouse").get("otelcol_exporter_sent_spans", 0.0) == 0
        assert own_metrics(ports, exporter="otlp/jaeger")["otelcol_exporter_sent_spans"] >= len(spans)


def test_with_create_schema_a_clickhouse_down_stops_the_whole_collector(tmp_path) -> None:
    """Why create_schema is off unless asked for: with it on, the exporter connects at start-up, and the
    collector refuses to start at all (the apps' OTLP receiver included) while ClickHouse is unreachable."""
    ports = CollectorPorts()
    closed = free_port()
    result = subprocess.run(
        [binary("otelcol-llmmeter"), f"--config={render(SINGLE, tmp_path, ports, jaeger_grpc=free_port())}",
         f"--config={CLICKHOUSE}", f"--config=yaml:exporters::clickhouse::endpoint: tcp://127.0.0.1:{closed}"],
        env={**os.environ, "CLICKHOUSE_CREATE_SCHEMA": "true"}, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert 'failed to start "clickhouse" exporter' in result.stderr and f"127.0.0.1:{closed}" in result.stderr
