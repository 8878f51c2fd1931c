"""Where "what llmmeter metered" comes from: a :class:`MeteredSource` per store.

The comparison only needs, per UTC day × model (as the app named it), the dollars llmmeter priced and the
input/output tokens it counted. Prometheus (the metrics pipeline) is one source; the cost ledger (one row per
call) is the exact one when the app writes it.
"""

from __future__ import annotations

import datetime as dt
import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Protocol

from llmmeter import names
from llmmeter.reconcile.client import ReconcileError
from llmmeter.reconcile.report import midnight


@dataclass(frozen=True, slots=True)
class Metered:
    """What llmmeter counted for one day × model. ``input_tokens`` includes cache reads/writes (semconv)."""

    usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0

    def __add__(self, other: Metered) -> Metered:
        return Metered(self.usd + other.usd, self.input_tokens + other.input_tokens,
                       self.output_tokens + other.output_tokens)


MeteredByDay = dict[tuple[dt.date, str], Metered]


class MeteredSource(Protocol):
    """A store llmmeter's figures can be read back from."""

    description: str

    def metered(self, provider: str, start: dt.date, end: dt.date) -> MeteredByDay:
        """``(day, model) -> Metered`` for calls to ``provider`` (``gen_ai.provider.name``) in ``[start, end)``."""
        ...


class PrometheusSource:
    """Reads ``increase()`` of llmmeter's cost and token counters per UTC day from the Prometheus HTTP API.

    One instant query per day and counter, evaluated at the next midnight over ``[1d]``, summed by
    ``gen_ai_request_model``. What ``increase()`` implies (documented in the README): it handles counter resets
    (app restarts) but extrapolates at the window edges, and a series' first sample is not an increase -- a
    label set first seen that day under-counts by its first value. Use the ledger for exact figures.
    """

    def __init__(self, url: str, timeout_s: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.description = f"Prometheus {self.url}"

    def _query(self, expr: str, at: dt.datetime) -> list[tuple[dict[str, str], float]]:
        query = urllib.parse.urlencode({"query": expr, "time": f"{at.timestamp():.3f}"})
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/query?{query}", timeout=self.timeout_s) as response:
                doc = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            try:
                detail = json.loads(exc.read()).get("error")
            except (ValueError, AttributeError):
                detail = exc.reason
            raise ReconcileError(f"Prometheus {self.url} refused the query ({exc.code}: {detail}): {expr}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise ReconcileError(f"cannot read Prometheus at {self.url} ({getattr(exc, 'reason', exc)})") from None
        if doc.get("status") != "success":
            raise ReconcileError(f"Prometheus {self.url}: {doc.get('error') or doc}")
        return [(item["metric"], float(item["value"][1])) for item in doc["data"]["result"]]

    def metered(self, provider: str, start: dt.date, end: dt.date) -> MeteredByDay:
        lbl = names.prometheus_label
        model, provider_label, token_type = lbl(names.REQUEST_MODEL), lbl(names.PROVIDER), lbl(names.LABEL_TOKEN_TYPE)
        cost = names.metric_prometheus_name(names.METRIC_COST)
        tokens = names.metric_prometheus_name(names.METRIC_TOKENS)
        selector = f'{provider_label}="{provider}"'
        cost_expr = f"sum by ({model}) (increase({cost}{{{selector}}}[1d]))"
        types = f"{names.TOKEN_TYPE_INPUT}|{names.TOKEN_TYPE_OUTPUT}"
        tokens_expr = (f"sum by ({model}, {token_type}) "
                       f'(increase({tokens}{{{selector}, {token_type}=~"{types}"}}[1d]))')
        out: MeteredByDay = {}
        day = start
        while day < end:
            at = midnight(day + dt.timedelta(days=1))
            for labels, value in self._query(cost_expr, at):
                key = (day, labels.get(model, ""))
                out[key] = out.get(key, Metered()) + Metered(usd=value)
            for labels, value in self._query(tokens_expr, at):
                key = (day, labels.get(model, ""))
                count = round(value)
                add = (Metered(input_tokens=count) if labels.get(token_type) == names.TOKEN_TYPE_INPUT
                       else Metered(output_tokens=count))
                out[key] = out.get(key, Metered()) + add
            day += dt.timedelta(days=1)
        return out
