"""Generate ``collector/rules/llmmeter-alerts.yaml`` (Prometheus alerting rules) from ``llmmeter.names``.

Why a generator: every metric and label name in the rules comes from ``llmmeter.names`` (through
``metric_prometheus_name()`` / ``prometheus_label()``), so a rename there propagates here, and thresholds
are parameters rather than numbers buried in PromQL. ``tests/test_alert_rules.py`` regenerates the file
and fails when the committed copy differs; ``collector/rules/tests/*.yaml`` are ``promtool test rules``
unit tests for every rule, written against the default thresholds.

Usage::

    python collector/rules/build_rules.py                          # rewrite the committed file
    python collector/rules/build_rules.py --set daily_budget_usd=250 --set monthly_budget_usd=5000 \\
        --out /etc/prometheus/rules/llmmeter-alerts.yaml           # your own thresholds
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import sys
from typing import Any

import yaml
from llmmeter import names
from opentelemetry.semconv.attributes.service_attributes import SERVICE_NAME

HERE = pathlib.Path(__file__).resolve().parent
OUTPUT = HERE / "llmmeter-alerts.yaml"


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """Alert thresholds; every field can be overridden with ``--set field=value``."""

    daily_budget_usd: float = 100.0  # org-wide spend per rolling 24 h
    monthly_budget_usd: float = 2000.0  # org-wide spend per rolling 30 days
    user_tokens_per_hour: float = 50000.0  # input+output tokens one user may use per hour
    spike_factor: float = 2.0  # this hour's spend vs the same hour last week
    spike_min_usd_per_hour: float = 1.0  # ...but only when this hour's spend is at least this
    estimated_share: float = 0.2  # share of requests whose tokens were estimated with tiktoken
    cache_hit_drop_factor: float = 0.5  # cache-hit ratio this hour vs the last day
    cache_hit_min_baseline: float = 0.1  # ...only where the last day's ratio was at least this
    verbosity_factor: float = 2.0  # mean output tokens per call this hour vs the last day
    verbosity_min_tokens: float = 200.0  # ...only when this hour's mean is at least this
    error_ratio: float = 0.05  # share of requests with status "error" over 10 minutes
    price_table_max_age_days: float = 30.0  # prices move every few weeks: refresh the table after this
    cache_premium_min_usd_per_hour: float = 0.05  # a feature's cache writes alert only past this premium per hour
    reconcile_max_drift: float = 0.05  # |metered - billed| / billed per model, from `llmmeter reconcile`
    app_cache_drop_factor: float = 0.5  # an app cache's hit rate this hour vs its own last day
    app_cache_min_lookups: float = 100.0  # ...only for a cache with at least this many lookups this hour


def _n(value: float) -> str:
    """A threshold as PromQL text: 100.0 -> "100", 0.05 -> "0.05"."""
    return f"{value:g}"


def _sel(metric: str, **labels: str) -> str:
    """``metric{label="value", ...}``; a value starting with ``~`` becomes a regex match, ``!`` a negation."""
    parts = []
    for key, value in labels.items():
        if value.startswith("~"):
            parts.append(f'{key}=~"{value[1:]}"')
        elif value.startswith("!"):
            parts.append(f'{key}!="{value[1:]}"')
        else:
            parts.append(f'{key}="{value}"')
    return f"{metric}{{{', '.join(parts)}}}" if parts else metric


def build(t: Thresholds) -> dict[str, Any]:
    """The rules file as a dict (one group per concern)."""
    lbl = names.prometheus_label
    cost = names.metric_prometheus_name(names.METRIC_COST)
    tokens = names.metric_prometheus_name(names.METRIC_TOKENS)
    requests = names.metric_prometheus_name(names.METRIC_REQUESTS)
    token_usage = names.metric_prometheus_name(names.METRIC_TOKEN_USAGE)
    budget_spend = names.metric_prometheus_name(names.METRIC_BUDGET_SPEND)
    trips = names.metric_prometheus_name(names.METRIC_LOOP_GUARD_TRIPS)
    provider, model = lbl(names.PROVIDER), lbl(names.REQUEST_MODEL)
    token_type, sc_token_type = lbl(names.LABEL_TOKEN_TYPE), lbl(names.TOKEN_TYPE)
    status, priced, estimated = lbl(names.LABEL_STATUS), lbl(names.LABEL_PRICED), lbl(names.LABEL_ESTIMATED)
    budget, guard = lbl(names.LABEL_BUDGET), lbl(names.LABEL_GUARD)
    service = lbl(SERVICE_NAME)
    user = names.ATTRIBUTION_LABEL_PREFIX + "user"
    by_model = f"{provider}, {model}"

    def alert(name: str, expr: str, for_: str, severity: str, summary: str, description: str, **labels: str) -> dict:
        return {
            "alert": name,
            "expr": expr,
            "for": for_,
            "labels": {"severity": severity, **labels},
            "annotations": {"summary": summary, "description": description},
        }

    daily = f"sum(increase({cost}[1d]))"
    monthly = f"sum(increase({cost}[30d]))"
    budget_rules = [
        alert(
            "LLMSpendDailyBudget80", f"{daily} >= 0.8 * {_n(t.daily_budget_usd)}", "5m", "warning",
            "LLM spend reached 80% of the daily budget",
            f"{{{{ $value | printf \"%.2f\" }}}} USD spent in the last 24 h (budget {_n(t.daily_budget_usd)} USD).",
            budget_window="daily",
        ),
        alert(
            "LLMSpendDailyBudget100", f"{daily} >= {_n(t.daily_budget_usd)}", "5m", "critical",
            "LLM spend exceeded the daily budget",
            f"{{{{ $value | printf \"%.2f\" }}}} USD spent in the last 24 h (budget {_n(t.daily_budget_usd)} USD).",
            budget_window="daily",
        ),
        alert(
            "LLMSpendMonthlyBudget80", f"{monthly} >= 0.8 * {_n(t.monthly_budget_usd)}", "15m", "warning",
            "LLM spend reached 80% of the monthly budget",
            f"{{{{ $value | printf \"%.2f\" }}}} USD spent in the last 30 days "
            f"(budget {_n(t.monthly_budget_usd)} USD).",
            budget_window="monthly",
        ),
        alert(
            "LLMSpendMonthlyBudget100", f"{monthly} >= {_n(t.monthly_budget_usd)}", "15m", "critical",
            "LLM spend exceeded the monthly budget",
            f"{{{{ $value | printf \"%.2f\" }}}} USD spent in the last 30 days "
            f"(budget {_n(t.monthly_budget_usd)} USD).",
            budget_window="monthly",
        ),
        alert(
            "LLMSpendBurnRateHigh", f"sum(rate({cost}[1h])) * 86400 > {_n(t.daily_budget_usd)}", "15m", "warning",
            "LLM spend rate would exhaust the daily budget",
            "At the last hour's rate, a day costs {{ $value | printf \"%.2f\" }} USD "
            f"(daily budget {_n(t.daily_budget_usd)} USD).",
            budget_window="daily",
        ),
        alert(
            "LLMBudgetNearlySpent", f"max by ({budget}) ({budget_spend}) >= 0.8", "0m", "warning",
            "An llmmeter budget is 80% spent",
            "Budget {{ $labels." + budget + " }} is {{ $value | humanizePercentage }} spent.",
        ),
        alert(
            "LLMBudgetSpent", f"max by ({budget}) ({budget_spend}) >= 1", "0m", "critical",
            "An llmmeter budget is spent",
            "Budget {{ $labels." + budget + " }} is {{ $value | humanizePercentage }} spent.",
        ),
    ]

    io_tokens = _sel(tokens, **{token_type: f"~{names.TOKEN_TYPE_INPUT}|{names.TOKEN_TYPE_OUTPUT}", user: "!"})
    hour_cost = f"sum by ({service}) (increase({cost}[1h]))"
    cache_now = (
        f"sum by ({by_model}) (rate({_sel(tokens, **{token_type: 'cache_read'})}[1h])) / "
        f"sum by ({by_model}) (rate({_sel(tokens, **{token_type: names.TOKEN_TYPE_INPUT})}[1h]))"
    )
    cache_day = cache_now.replace("[1h]", "[1d]")
    # llmmeter's records only: an instrumentor beside it (openai-v2) records its own copy of each call.
    # "=~llmmeter|" also matches a pipeline that drops the scope label (then as before, never nothing).
    ours = {sc_token_type: names.TOKEN_TYPE_OUTPUT, lbl(names.OTEL_SCOPE_NAME): f"~{names.LLMMETER_SCOPE}|"}
    out_sum = _sel(f"{token_usage}_sum", **ours)
    out_count = _sel(f"{token_usage}_count", **ours)
    verbosity_now = f"sum by ({by_model}) (rate({out_sum}[1h])) / sum by ({by_model}) (rate({out_count}[1h]))"
    verbosity_day = verbosity_now.replace("[1h]", "[1d]")
    usage_rules = [
        alert(
            "LLMUserTokenRateHigh",
            f"sum by ({user}) (increase({io_tokens}[1h])) > {_n(t.user_tokens_per_hour)}", "5m", "warning",
            "One user is using many tokens",
            "User {{ $labels." + user + " }} used {{ $value | printf \"%.0f\" }} input+output tokens in the last "
            f"hour (limit {_n(t.user_tokens_per_hour)}).",
        ),
        alert(
            "LLMSpendSpikeVsLastWeek",
            f"({hour_cost} > {_n(t.spike_factor)} * sum by ({service}) (increase({cost}[1h] offset 1w))) "
            f"and {hour_cost} > {_n(t.spike_min_usd_per_hour)}",
            "15m", "warning",
            "LLM spend is well above the same hour last week",
            "{{ $labels." + service + " }} spent {{ $value | printf \"%.2f\" }} USD in the last hour, more than "
            f"{_n(t.spike_factor)}x the same hour last week.",
        ),
        alert(
            "LLMCacheHitRatioDrop",
            f"({cache_now}) < {_n(t.cache_hit_drop_factor)} * ({cache_day}) "
            f"and ({cache_day}) > {_n(t.cache_hit_min_baseline)}",
            "30m", "warning",
            "Prompt-cache hit ratio dropped",
            "Cache reads are {{ $value | humanizePercentage }} of input tokens for {{ $labels." + model + " }}, "
            f"under {_n(t.cache_hit_drop_factor)}x the last day's ratio: did a prompt prefix change?",
        ),
        alert(
            "LLMOutputVerbositySpike",
            f"({verbosity_now}) > {_n(t.verbosity_factor)} * ({verbosity_day}) "
            f"and ({verbosity_now}) > {_n(t.verbosity_min_tokens)}",
            "30m", "warning",
            "Responses got much longer",
            "Mean output is {{ $value | printf \"%.0f\" }} tokens per call for {{ $labels." + model + " }}, "
            f"over {_n(t.verbosity_factor)}x the last day's mean.",
        ),
    ]

    unpriced = _sel(requests, **{priced: "false"})
    trips_new = f"{trips} > 0 unless {trips} offset 15m"
    quality_rules = [
        alert(
            "LLMUnpricedModelSeen",
            # `> 0 unless ... offset 1h` also catches a series born in the last hour, whose first sample
            # increase() cannot see (a model called once would otherwise never alert).
            f"sum by ({by_model}) (increase({unpriced}[1h])) > 0 "
            f"or sum by ({by_model}) ({unpriced} > 0 unless {unpriced} offset 1h)",
            "0m", "warning",
            "Calls to a model with no known price",
            "{{ $labels." + provider + " }}/{{ $labels." + model + " }} was called but has no price: its cost is "
            "missing from every spend figure. Add it to the price table.",
        ),
        alert(
            "LLMEstimatedTokenShareHigh",
            f"sum by ({provider}) (rate({_sel(requests, **{estimated: 'true'})}[1h])) "
            f"/ sum by ({provider}) (rate({requests}[1h])) > {_n(t.estimated_share)}",
            "30m", "warning",
            "Many token counts are estimates",
            "{{ $value | humanizePercentage }} of {{ $labels." + provider + " }} requests had tokens estimated "
            "with tiktoken (e.g. streams without usage): enable usage reporting.",
        ),
        alert(
            "LLMLoopGuardTripped",
            f"sum by ({guard}) (increase({trips}[15m])) > 0 or sum by ({guard}) ({trips_new})",
            "0m", "warning",
            "An agent loop guard tripped",
            "Loop guard {{ $labels." + guard + " }} stopped a run in the last 15 minutes.",
        ),
        alert(
            "LLMErrorRatioHigh",
            f"sum by ({provider}) (rate({_sel(requests, **{status: 'error'})}[10m])) "
            f"/ sum by ({provider}) (rate({requests}[10m])) > {_n(t.error_ratio)}",
            "10m", "critical",
            "Many LLM calls fail",
            "{{ $value | humanizePercentage }} of {{ $labels." + provider + " }} calls failed in the last 10 minutes.",
        ),
    ]
    # --- prices (issue 12): a table left to age, and prompt caching that does not pay ---
    table_age = names.metric_prometheus_name(names.METRIC_PRICE_TABLE_AGE)
    savings = names.metric_prometheus_name(names.METRIC_CACHE_SAVINGS)
    premium = names.metric_prometheus_name(names.METRIC_CACHE_WRITE_PREMIUM)
    feature = names.ATTRIBUTION_LABEL_PREFIX + "feature"
    premium_hour = f"sum by ({feature}) (increase({premium}[1h]))"
    savings_hour = f"sum by ({feature}) (increase({savings}[1h]))"
    price_rules = [
        alert(
            "LLMPriceTableStale", f"max by ({service}) ({table_age}) > {_n(t.price_table_max_age_days * 86400)}",
            "1h", "warning",
            "The price table in force is old",
            "{{ $labels." + service + " }} prices calls with a table {{ $value | humanizeDuration }} old "
            f"(limit {_n(t.price_table_max_age_days)} days): run `llmmeter prices update` or set "
            "LLMMETER_PRICE_REFRESH.",
        ),
        alert(
            "LLMCacheWritesNotPaying",
            # A feature with writes and no reads at all has no savings series: count it as 0 saved.
            f"{premium_hour} > ({savings_hour} or {premium_hour} * 0) "
            f"and {premium_hour} > {_n(t.cache_premium_min_usd_per_hour)}",
            "15m", "warning",
            "Prompt caching costs more than it saves",
            "Feature {{ $labels." + feature + " }} paid {{ $value | printf \"%.2f\" }} USD for cache writes above "
            "the uncached input rate in the last hour, more than its cache reads saved: the cached prefix is not "
            "reused enough (or changes between calls).",
        ),
    ]
    # Reconciliation with the invoice: `llmmeter reconcile --prometheus-textfile` writes the gauge (a daily batch
    # job; node_exporter's textfile collector serves it until the next run). abs(): both ways are wrong.
    drift = names.metric_prometheus_name(names.METRIC_RECONCILE_DRIFT)
    reconcile_rules = [
        alert(
            "LLMCostDriftFromInvoice",
            f"max by ({by_model}) (abs({drift})) > {_n(t.reconcile_max_drift)}", "0m", "warning",
            "llmmeter's cost differs from the provider's cost report",
            "{{ $labels." + provider + " }}/{{ $labels." + model + " }}: llmmeter's cost and the provider's own "
            "cost report differ by {{ $value | humanizePercentage }} over the last reconciled window (run `llmmeter "
            "reconcile` for the day-by-day table): a missing or wrong price, a discount, or traffic llmmeter does "
            "not see.",
        ),
    ]
    # The app's own caches (llmmeter.record_cache): a hit rate that falls against its own last day means
    # the model answers what the cache used to (a key change, an eviction storm, a cold deploy).
    lookups = names.metric_prometheus_name(names.METRIC_APP_CACHE_LOOKUPS)
    cache_name = names.prometheus_label(names.LABEL_APP_CACHE)
    hit = f'{lookups}{{{names.prometheus_label(names.LABEL_APP_CACHE_RESULT)}="hit"}}'

    def hit_rate(window: str) -> str:
        every = f"sum by ({cache_name}) (increase({lookups}[{window}]))"
        return f"((sum by ({cache_name}) (increase({hit}[{window}])) or {every} * 0) / {every})"

    app_cache_rules = [
        alert(
            "LLMAppCacheHitRateDrop",
            f"{hit_rate('1h')} < {_n(t.app_cache_drop_factor)} * {hit_rate('1d')} "
            f"and sum by ({cache_name}) (increase({lookups}[1h])) >= {_n(t.app_cache_min_lookups)}",
            "15m", "warning",
            "An app cache answers far fewer lookups than usual",
            "Cache {{ $labels." + cache_name + " }} hit {{ $value | humanizePercentage }} of lookups in the last "
            f"hour, under {_n(t.app_cache_drop_factor)}x its rate over the last day: the model is answering what "
            "the cache used to (a key change, evictions, a cold deploy), and paying for it.",
        ),
    ]
    return {
        "groups": [
            {"name": "llmmeter-budget", "rules": budget_rules},
            {"name": "llmmeter-usage", "rules": usage_rules},
            {"name": "llmmeter-quality", "rules": quality_rules},
            {"name": "llmmeter-prices", "rules": price_rules},
            {"name": "llmmeter-reconcile", "rules": reconcile_rules},
            {"name": "llmmeter-app-cache", "rules": app_cache_rules},
        ]
    }


HEADER = (
    "# GENERATED by collector/rules/build_rules.py from llmmeter.names - do not edit by hand.\n"
    "# Thresholds: {thresholds}\n"
)


def render(t: Thresholds | None = None) -> str:
    """The rules file's text, deterministic so a test can compare it with the committed file."""
    t = t or Thresholds()
    header = HEADER.format(thresholds=", ".join(f"{k}={_n(v)}" for k, v in dataclasses.asdict(t).items()))
    return header + yaml.safe_dump(build(t), sort_keys=False, width=1000, allow_unicode=True)


def parse_overrides(items: list[str]) -> Thresholds:
    """``["daily_budget_usd=250"]`` -> Thresholds with that field changed; unknown fields are an error."""
    fields = {f.name for f in dataclasses.fields(Thresholds)}
    values: dict[str, float] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or key not in fields:
            raise SystemExit(f"--set {item!r}: expected one of {sorted(fields)} as name=value")
        try:
            values[key] = float(raw)
        except ValueError:
            raise SystemExit(f"--set {item!r}: {raw!r} is not a number") from None
    return Thresholds(**values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="override a threshold")
    parser.add_argument("--out", type=pathlib.Path, default=OUTPUT, help="where to write (default: %(default)s)")
    args = parser.parse_args(argv)
    args.out.write_text(render(parse_overrides(args.set)))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
