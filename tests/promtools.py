"""Helpers for tests that run the real Prometheus tools (promtool, prometheus, alertmanager).

Why: dashboards and alert rules are only proven by a real PromQL engine. The binaries come from the
Debian packages ``prometheus`` and ``prometheus-alertmanager``. On CI (``CI=true``) a missing binary is a
failure, never a skip, so a broken install cannot hide the proof; locally the tests skip with a hint.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import yaml
from ci_env import missing
from llmmeter import names

ROOT = pathlib.Path(__file__).resolve().parents[1]
COLLECTOR_DIR = ROOT / "collector"
RULES_FILE = COLLECTOR_DIR / "rules" / "llmmeter-alerts.yaml"
RULE_TESTS_DIR = COLLECTOR_DIR / "rules" / "tests"
DASHBOARDS_DIR = ROOT / "dashboards"
INSTALL_HINT = "apt-get update && apt-get install -y prometheus prometheus-alertmanager"


def require_binary(name: str) -> str:
    """Path of a Prometheus tool; fails on CI, skips locally when it is not installed."""
    path = shutil.which(name) or (f"/usr/bin/{name}" if os.path.exists(f"/usr/bin/{name}") else None)
    if path:
        return path
    missing(f"{name} not found ({INSTALL_HINT})")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


def wait_until(predicate: Any, timeout: float, what: str, interval: float = 0.2) -> Any:
    """Poll ``predicate`` until it returns a truthy value (returned) or fail after ``timeout`` seconds.

    A readiness wait, not a timed assertion: the timeout only bounds how long a broken setup hangs."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = predicate()
            if result:
                return result
        except (OSError, urllib.error.URLError, ValueError, KeyError) as exc:
            last_error = exc
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}" + (f" (last error: {last_error})" if last_error else ""))


@contextmanager
def running(args: list[str], log_path: pathlib.Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server process for the duration of the block; its output goes to ``log_path``."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        try:
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class PrometheusAPI:
    """The bits of Prometheus's HTTP API the tests use."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")

    def get(self, path: str, **params: str) -> Any:
        query = ("?" + urllib.parse.urlencode(params)) if params else ""
        try:
            body = http_get(f"{self.base_url}{path}{query}")
        except urllib.error.HTTPError as exc:  # 400 on a bad query: keep the error text
            body = exc.read()
        return json.loads(body)

    def query(self, expr: str) -> dict[str, Any]:
        """Instant query; returns the whole response (``status``, ``data``/``error``)."""
        return self.get("/api/v1/query", query=expr)

    def vector(self, expr: str) -> list[tuple[dict[str, str], float]]:
        response = self.query(expr)
        assert response.get("status") == "success", f"{expr}: {response}"
        data = response["data"]
        if data["resultType"] == "scalar":
            return [({}, float(data["result"][1]))]
        return [(item["metric"], float(item["value"][1])) for item in data["result"]]

    def scalar(self, expr: str) -> float:
        values = self.vector(expr)
        assert len(values) == 1, f"{expr}: expected one value, got {values}"
        return values[0][1]


GRAFANA_VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)\}")


def grafana_to_promql(expr: str, range_: str = "1h", rate_interval: str = "1m") -> str:
    """A dashboard query with Grafana's variables replaced as Grafana would with "All" selected."""
    builtins = {"__range": range_, "__rate_interval": rate_interval, "__interval": "15s"}

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return builtins.get(name, ".*")

    return GRAFANA_VARIABLE.sub(replace, expr)


# --- a Prometheus server and the checks every pipeline test makes of it ---------------------------------
@contextmanager
def prometheus_server(binary: str, tmp: pathlib.Path, config: dict[str, Any], *, data_dir: pathlib.Path | None = None,
                      args: tuple[str, ...] = (), ready_timeout: float = 30) -> Iterator[PrometheusAPI]:
    """A real Prometheus (``binary``: Debian's, or the Prometheus 3 build) on a free 127.0.0.1 port, running
    ``config`` (written to ``tmp/prometheus.yml``) on ``data_dir`` (default ``tmp/data``), ready when yielded.

    Why one place: the pipeline and proof tests all start Prometheus this way; only the config, the TSDB
    (backfilled or empty) and extra flags differ."""
    port = free_port()
    config_file = tmp / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config))
    with running([binary, f"--config.file={config_file}", f"--storage.tsdb.path={data_dir or tmp / 'data'}",
                  f"--web.listen-address=127.0.0.1:{port}", *args], tmp / "prometheus.log"):
        api = PrometheusAPI(f"http://127.0.0.1:{port}")
        wait_until(lambda: http_get(f"{api.base_url}/-/ready"), ready_timeout, f"{pathlib.Path(binary).name} ready")
        yield api


def check_dashboard_query(api: PrometheusAPI, where: str, expr: str) -> None:
    """A dashboard panel's query returns data, and no NaN, on ``api`` (as Grafana would run it, "All" selected)."""
    result = api.vector(grafana_to_promql(expr))
    assert result, f"{where}: no data for {grafana_to_promql(expr)}"
    assert all(not math.isnan(value) for _, value in result), f"{where}: NaN in {result}"


def check_alert_expression(api: PrometheusAPI, alert: str, expr: str) -> None:
    """An alert rule's expression evaluates on ``api`` (a wrong name or label is an error or, worse, silence)."""
    response = api.query(expr)
    assert response["status"] == "success", f"{alert}: {response}"


def served_names(exposition: str) -> set[str]:
    """The metric names a Prometheus text exposition serves."""
    return {line.split("{")[0].split(" ")[0] for line in exposition.splitlines() if line and line[0] != "#"}


def promised_names() -> set[str]:
    """What a healthy app's metrics are called in Prometheus: names.metric_prometheus_name() of every metric of
    names.METRIC_SPECS (a histogram as its _bucket/_sum/_count), less the ones a healthy app never serves
    (`llmmeter reconcile`'s, or a disabled setting's)."""
    expected = set()
    for metric, (kind, _unit) in names.METRIC_SPECS.items():
        if metric in names.NOT_SERVED_BY_A_HEALTHY_APP:
            continue
        base = names.metric_prometheus_name(metric)
        expected |= {base + s for s in ("_bucket", "_sum", "_count")} if kind == names.KIND_HISTOGRAM else {base}
    return expected


def check_token_labels(line: str) -> None:
    """A token counter's exposition line carries every label the dashboards filter on."""
    for label in (names.prometheus_label(names.PROVIDER), names.prometheus_label(names.REQUEST_MODEL),
                  names.prometheus_label(names.LABEL_TOKEN_TYPE), "tenant", "user", "environment",
                  names.prometheus_label("service.name")):
        assert f"{label}=" in line, f"{label} missing from {line}"
