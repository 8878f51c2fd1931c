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
    """Reads llmmeter's cost and token counters per UTC day from the Prometheus HTTP API.

    Per day and counter, two instant queries evaluated at the next midnight, summed by ``gen_ai_request_model``:
    ``increase(x[1d])``, plus ``min_over_time(x[1d]) unless x offset 1d`` -- the first value of every series born
    that day, which ``increase()`` cannot see (a user or label set that made one call that day would otherwise
    count for nothing; a restarted process with a new instance label starts new series). What stays approximate
    (documented in the README): ``increase()`` extrapolates up to half a scrape interval at the window edges, and a
    series that reset the same day it was born counts its post-reset minimum. Use the ledger for exact figures.
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

    @staticmethod
    def day_exprs(series: str, by: str) -> tuple[str, str]:
        """(increase over the day, first values of the series born that day) for a counter selector."""
        return (f"sum by ({by}) (increase({series}[1d]))",
                f"sum by ({by}) (min_over_time({series}[1d]) unless {series} offset 1d)")

    def metered(self, provider: str, start: dt.date, end: dt.date) -> MeteredByDay:
        lbl = names.prometheus_label
        model, provider_label, token_type = lbl(names.REQUEST_MODEL), lbl(names.PROVIDER), lbl(names.LABEL_TOKEN_TYPE)
        cost = names.metric_prometheus_name(names.METRIC_COST)
        tokens = names.metric_prometheus_name(names.METRIC_TOKENS)
        selector = f'{provider_label}="{provider}"'
        types = f"{names.TOKEN_TYPE_INPUT}|{names.TOKEN_TYPE_OUTPUT}"
        cost_exprs = self.day_exprs(f"{cost}{{{selector}}}", model)
        token_exprs = self.day_exprs(f'{tokens}{{{selector}, {token_type}=~"{types}"}}', f"{model}, {token_type}")
        usd: dict[tuple[dt.date, str], float] = {}
        counted: dict[tuple[dt.date, str, str], float] = {}
        day = start
        while day < end:
            at = midnight(day + dt.timedelta(days=1))
            for expr in cost_exprs:
                for labels, value in self._query(expr, at):
                    key = (day, labels.get(model, ""))
                    usd[key] = usd.get(key, 0.0) + value
            for expr in token_exprs:
                for labels, value in self._query(expr, at):
                    tkey = (day, labels.get(model, ""), labels.get(token_type, ""))
                    counted[tkey] = counted.get(tkey, 0.0) + value
            day += dt.timedelta(days=1)
        out: MeteredByDay = {key: Metered(usd=value) for key, value in usd.items()}
        for (day, name, kind), value in counted.items():
            add = (Metered(input_tokens=round(value)) if kind == names.TOKEN_TYPE_INPUT
                   else Metered(output_tokens=round(value)))
            out[(day, name)] = out.get((day, name), Metered()) + add
        return out
