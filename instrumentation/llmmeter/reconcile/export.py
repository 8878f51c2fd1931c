"""Exporting the drift for an alert: a Prometheus text file for node_exporter's textfile collector.

Why a text file: ``llmmeter reconcile`` is a batch job (a daily cron or Kubernetes CronJob), and its result must
stay visible until the next run. A gauge pushed over OTLP would be dropped by the collector's ``prometheus``
exporter after ``metric_expiration`` and go stale in Prometheus 5 minutes after a remote write; node_exporter's
textfile collector (``--collector.textfile.directory``) re-serves the file on every scrape until it is replaced,
with no Pushgateway to run. The file is written atomically (temporary file + rename in the same directory), as
the collector's documentation asks, so a scrape never reads half a file.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

from llmmeter import names
from llmmeter.reconcile.compare import Reconciliation

HELP = ("(metered - billed) / billed per provider and model over the last window llmmeter reconcile compared; "
        "+Inf: metered spend the provider did not bill")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(round(float(value), 9) + 0.0)


def textfile(result: Reconciliation) -> str:
    """The exposition text: one ``llmmeter_reconcile_drift_ratio`` sample per model with spend on either side."""
    metric = names.metric_prometheus_name(names.METRIC_RECONCILE_DRIFT)
    provider, model = names.prometheus_label(names.PROVIDER), names.prometheus_label(names.REQUEST_MODEL)
    lines = [f"# HELP {metric} {HELP}", f"# TYPE {metric} gauge"]
    for summary in result.models:
        ratio = summary.drift_ratio
        if ratio is None:
            if summary.metered_usd <= 0:
                continue
            ratio = math.inf
        lines.append(f'{metric}{{{provider}="{_escape(result.provider)}",{model}="{_escape(summary.model)}"}} '
                     f"{_number(ratio)}")
    return "\n".join(lines) + "\n"


def write_textfile(result: Reconciliation, path: str | os.PathLike[str]) -> Path:
    """Write :func:`textfile` to ``path`` atomically; returns the path."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(textfile(result))
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return target
