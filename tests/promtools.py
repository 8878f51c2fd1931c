"""Helpers for tests that run the real Prometheus tools (promtool, prometheus, alertmanager).

Why: dashboards and alert rules are only proven by a real PromQL engine. The binaries come from the
Debian packages ``prometheus`` and ``prometheus-alertmanager``. On CI (``CI=true``) a missing binary is a
failure, never a skip, so a broken install cannot hide the proof; locally the tests skip with a hint.
"""

from __future__ import annotations

import json
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

from ci_env import missing

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
