"""Run the real collector pipeline on 127.0.0.1: otelcol-llmmeter (agent, gateways) and Jaeger v2.

Why: the shipped configs (``otel-collector.yaml``, ``collector/agent.yaml``, ``collector/gateway.yaml``,
``collector/jaeger.yaml``) are what a platform team starts; the tests run exactly those, with only what must
differ on one machine substituted (:func:`render`): listen addresses become free 127.0.0.1 ports, the
``file_storage`` directory a temp folder, the ``jaeger:4317`` host the local Jaeger, the agent's DNS resolver
a static list of the local gateways (DNS cannot give two ports on one host), and each collector's own
telemetry its own port. Everything else (processors, queues, routing keys, exporter settings) is as shipped.

The binaries come from ``scripts/build-collector.sh`` (what ``make collector`` runs; cached by hash, so a
second call is instant). A machine without Go fails here with the script's message naming what to install:
never a skip.
"""

from __future__ import annotations

import copy
import json
import os
import pathlib
import signal
import subprocess
import urllib.error
import urllib.parse
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import pytest
import yaml
from promtools import RULES_FILE, free_port, http_get, wait_until

ROOT = pathlib.Path(__file__).resolve().parents[1]
BUILD_SCRIPT = ROOT / "scripts" / "build-collector.sh"
SINGLE = ROOT / "otel-collector.yaml"
AGENT = ROOT / "collector" / "agent.yaml"
GATEWAY = ROOT / "collector" / "gateway.yaml"
JAEGER = ROOT / "collector" / "jaeger.yaml"
SHIPPED_CONFIGS = {"otel-collector.yaml": SINGLE, "agent.yaml": AGENT, "gateway.yaml": GATEWAY}
CLICKHOUSE = ROOT / "collector" / "clickhouse.yaml"
# Optional pipelines: not configs on their own, merged over a shipped one with a second --config.
OPTIONAL_CONFIGS = {"clickhouse.yaml": CLICKHOUSE}


@cache
def binary(name: str) -> str:
    """Path of ``otelcol-llmmeter`` or ``jaeger``, built (or found in the cache) by the build script."""
    result = subprocess.run(["bash", str(BUILD_SCRIPT), name], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.fail(f"{BUILD_SCRIPT.relative_to(ROOT)} {name} failed:\n{result.stderr}{result.stdout}", pytrace=False)
    path = ROOT / "build" / "bin" / name
    assert os.access(path, os.X_OK), f"{path} missing after the build script succeeded"
    return str(path)


# --- configs -----------------------------------------------------------------------------------------
def local(port: int) -> str:
    return f"127.0.0.1:{port}"


def _set(config: dict[str, Any], path: str, value: Any) -> None:
    """Replace an EXISTING setting (``a.b.c``); a missing one means the shipped config changed shape."""
    node = config
    *parents, last = path.split(".")
    for key in parents:
        assert isinstance(node.get(key), dict), f"shipped config has no {path!r}"
        node = node[key]
    assert last in node, f"shipped config has no {path!r}"
    node[last] = value


@dataclass
class CollectorPorts:
    """The ports one collector listens on (0 = that listener is not in its config)."""

    grpc: int = field(default_factory=free_port)
    http: int = field(default_factory=free_port)
    health: int = field(default_factory=free_port)
    telemetry: int = field(default_factory=free_port)
    prometheus: int = field(default_factory=free_port)


def render(shipped: pathlib.Path, out_dir: pathlib.Path, ports: CollectorPorts, *, jaeger_grpc: int | None = None,
           gateways: list[str] | None = None, overrides: dict[str, Any] | None = None) -> pathlib.Path:
    """A test copy of a shipped collector config with its endpoints on 127.0.0.1 (see the module doc)."""
    config = copy.deepcopy(yaml.safe_load(shipped.read_text()))
    protocols = config["receivers"]["otlp"]["protocols"]
    _set(config, "receivers.otlp.protocols.grpc.endpoint", local(ports.grpc))
    if "http" in protocols:
        _set(config, "receivers.otlp.protocols.http.endpoint", local(ports.http))
    _set(config, "extensions.health_check.endpoint", local(ports.health))
    storage = out_dir / f"{shipped.stem}-{ports.grpc}-queue"
    storage.mkdir(parents=True, exist_ok=True)
    _set(config, "extensions.file_storage.directory", str(storage))
    exporters = config["exporters"]
    if "prometheus" in exporters:
        _set(config, "exporters.prometheus.endpoint", local(ports.prometheus))
    if "otlp/jaeger" in exporters:
        assert jaeger_grpc, f"{shipped.name} exports to Jaeger: give jaeger_grpc"
        _set(config, "exporters.otlp/jaeger.endpoint", local(jaeger_grpc))
    for name, exporter in exporters.items():
        if name.split("/")[0] == "loadbalancing":
            assert gateways, f"{shipped.name} load-balances: give the gateways"
            assert set(exporter["resolver"]) == {"dns"}, exporter["resolver"]
            exporter["resolver"] = {"static": {"hostnames": list(gateways)}}
    telemetry = config["service"].setdefault("telemetry", {})
    telemetry["metrics"] = {"level": "detailed", "readers": [
        {"pull": {"exporter": {"prometheus": {"host": "127.0.0.1", "port": ports.telemetry}}}}]}
    for path, value in (overrides or {}).items():
        _set(config, path, value)
    out = out_dir / f"{shipped.stem}-{ports.grpc}.yaml"
    out.write_text(yaml.safe_dump(config, sort_keys=False))
    return out


@dataclass
class JaegerPorts:
    grpc: int = field(default_factory=free_port)
    http: int = field(default_factory=free_port)
    query: int = field(default_factory=free_port)
    query_grpc: int = field(default_factory=free_port)
    health: int = field(default_factory=free_port)


def render_jaeger(out_dir: pathlib.Path, ports: JaegerPorts) -> pathlib.Path:
    config = copy.deepcopy(yaml.safe_load(JAEGER.read_text()))
    _set(config, "receivers.otlp.protocols.grpc.endpoint", local(ports.grpc))
    _set(config, "receivers.otlp.protocols.http.endpoint", local(ports.http))
    _set(config, "extensions.jaeger_query.http.endpoint", local(ports.query))
    _set(config, "extensions.jaeger_query.grpc.endpoint", local(ports.query_grpc))
    _set(config, "extensions.healthcheckv2.http.endpoint", local(ports.health))
    out = out_dir / f"jaeger-{ports.query}.yaml"
    out.write_text(yaml.safe_dump(config, sort_keys=False))
    return out


# --- processes ---------------------------------------------------------------------------------------
class Proc:
    """A server process that can be killed (SIGKILL, like a crash) and started again with the same args."""

    def __init__(self, name: str, args: list[str], log: pathlib.Path, ready_url: str) -> None:
        self.name, self.args, self.log, self.ready_url = name, args, log, ready_url
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, timeout: float = 60) -> Proc:
        assert self.proc is None or self.proc.poll() is not None, f"{self.name} already running"
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT)
        self.starts += 1

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")
            return bool(http_get(self.ready_url, timeout=2) is not None)

        try:
            wait_until(ready, timeout, f"{self.name} ready at {self.ready_url}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.tail()}") from None
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush; what was only in memory is gone (the crash case)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def collector(name: str, config: pathlib.Path, ports: CollectorPorts, log_dir: pathlib.Path,
              more_configs: tuple[str, ...] = ()) -> Proc:
    """``more_configs``: further ``--config`` values merged over ``config`` in order (a file such as
    collector/clickhouse.yaml, or ``yaml:key::path: value``), as a user adds an optional pipeline."""
    return Proc(name, [binary("otelcol-llmmeter"), f"--config={config}", *(f"--config={c}" for c in more_configs)],
                log_dir / f"{name}.log", f"http://{local(ports.health)}/")


def jaeger(config: pathlib.Path, ports: JaegerPorts, log_dir: pathlib.Path) -> Proc:
    return Proc("jaeger", [binary("jaeger"), f"--config={config}"], log_dir / "jaeger.log",
                f"http://{local(ports.query)}/api/services")


@contextmanager
def stopping(*procs: Proc) -> Iterator[None]:
    try:
        yield
    finally:
        for proc in reversed(procs):
            proc.stop()


def start_pipeline(cleanup: ExitStack, tmp: pathlib.Path) -> tuple[JaegerPorts, list[CollectorPorts], CollectorPorts,
                                                                   dict[str, Proc]]:
    """The scaled-out pipeline: Jaeger, two gateways and an agent, each started and healthy; stopped by
    ``cleanup``."""
    jaeger_ports = JaegerPorts()
    procs = {"jaeger": jaeger(render_jaeger(tmp, jaeger_ports), jaeger_ports, tmp)}
    gateways = [CollectorPorts(), CollectorPorts()]
    for i, ports in enumerate(gateways, 1):
        procs[f"gateway-{i}"] = collector(f"gateway-{i}", render(GATEWAY, tmp, ports, jaeger_grpc=jaeger_ports.grpc),
                                          ports, tmp)
    agent = CollectorPorts()
    procs["agent"] = collector("agent", render(AGENT, tmp, agent, gateways=[f"127.0.0.1:{g.grpc}" for g in gateways]),
                               agent, tmp)
    cleanup.enter_context(stopping(*procs.values()))
    for proc in procs.values():
        proc.start()
    return jaeger_ports, gateways, agent, procs


def prometheus_config(collectors: list[CollectorPorts]) -> dict[str, Any]:
    """collector/prometheus.yml's scrape of the collectors' prometheus exporters, every replica a target,
    1 s scrapes and the shipped alert rules."""
    return {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES_FILE)],
        "scrape_configs": [{"job_name": "otel-collector", "honor_labels": True, "static_configs": [
            {"targets": [f"127.0.0.1:{c.prometheus}" for c in collectors]}]}],
    }


# --- what the collector's own telemetry says ---------------------------------------------------------
def own_metrics(ports: CollectorPorts, **labels: str) -> dict[str, float]:
    """The collector's internal metrics (``otelcol_*``), summed over labels, by name; given ``labels`` (e.g.
    ``exporter="clickhouse"``), only the series carrying all of them."""
    text = http_get(f"http://{local(ports.telemetry)}/metrics").decode()
    wanted = [f'{key}="{value}"' for key, value in labels.items()]
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_labels, _, value = line.rpartition(" ")
        name, _, series = name_labels.partition("{")
        if all(label in series.rstrip("}").split(",") for label in wanted):
            out[name] = out.get(name, 0.0) + float(value)
    return out


# --- Jaeger's HTTP API -------------------------------------------------------------------------------
class JaegerAPI:
    """Jaeger query's JSON API (the one its UI uses): ``/api/services``, ``/api/traces``."""

    def __init__(self, ports: JaegerPorts) -> None:
        self.base = f"http://{local(ports.query)}"

    def get(self, path: str, **params: Any) -> Any:
        query = ("?" + urllib.parse.urlencode(params)) if params else ""
        try:
            return json.loads(http_get(f"{self.base}{path}{query}", timeout=10))
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return {"data": []}
            raise

    def traces(self, service: str, **params: Any) -> list[dict[str, Any]]:
        return self.get("/api/traces", service=service, limit=params.pop("limit", 100000), lookback="2h",
                        **params).get("data") or []

    def spans(self, service: str) -> list[dict[str, Any]]:
        return [span for trace in self.traces(service) for span in trace["spans"]]


def tags(span: dict[str, Any]) -> dict[str, Any]:
    return {tag["key"]: tag["value"] for tag in span.get("tags", [])}


def log_events(span: dict[str, Any]) -> list[dict[str, Any]]:
    """A Jaeger span's logs as {field: value} dicts (an OTel span event's name is the ``event`` field)."""
    return [{f["key"]: f["value"] for f in log.get("fields", [])} for log in span.get("logs", [])]
