"""The drift table (rich) and the JSON form of a :class:`Reconciliation`."""

from __future__ import annotations

import datetime as dt
import json

from rich.console import Console
from rich.table import Table

from llmmeter.reconcile.compare import Reconciliation, tidy


def _usd(value: float) -> str:
    return f"${value:,.4f}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{tidy(value):+.1%}"


def _tokens(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def to_json(result: Reconciliation) -> str:
    return json.dumps([row.to_json() for row in result.rows], indent=2)


def render(result: Reconciliation, console: Console, max_drift: float, min_usd: float) -> None:
    """Per day × model, per model (with the effective discount), unseen traffic, non-model lines, verdict."""
    exceeded = set(result.exceeded(max_drift, min_usd))
    last = result.end - dt.timedelta(days=1)
    console.print(f"{result.provider}, UTC days {result.start} .. {last}; billed: the provider's cost report, "
                  f"metered: {result.source}", highlight=False, soft_wrap=True)
    table = Table()
    for name in ("day", "model", "billed", "metered", "drift", "billed tokens", "metered tokens"):
        table.add_column(name, justify="left" if name in ("day", "model") else "right")
    for row in result.rows:
        style = "bold red" if row in exceeded else None
        table.add_row(row.day.isoformat(), row.model, _usd(row.billed_usd), _usd(row.metered_usd),
                      _pct(row.drift_ratio), _tokens(row.billed_tokens), _tokens(row.metered_tokens), style=style)
    console.print(table)

    per_model = Table(title="per model over the window", title_justify="left")
    for name in ("model", "billed", "metered", "drift", "token drift", "billed/metered"):
        per_model.add_column(name, justify="left" if name == "model" else "right")
    for summary in result.models:
        ratio = summary.effective_discount
        per_model.add_row(summary.model, _usd(summary.billed_usd), _usd(summary.metered_usd), _pct(summary.drift_ratio),
                          _pct(summary.token_drift), "n/a" if ratio is None else f"{ratio:.3f}")
    console.print(per_model)

    if len({scope for scope, _model, _usd in result.by_scope}) > 1:
        scopes = Table(title=f"billed per {result.scope_name}", title_justify="left")
        for name in (result.scope_name, "model", "billed"):
            scopes.add_column(name, justify="right" if name == "billed" else "left")
        for scope, model, usd in result.by_scope:
            scopes.add_row(scope, model, _usd(usd))
        console.print(scopes)

    for unseen in result.unseen:
        days = ", ".join(day.isoformat() for day in unseen.days)
        console.print(f"[yellow]billed but never metered:[/yellow] {unseen.model}: {_usd(unseen.billed_usd)} on {days}")
        for scope, usd in unseen.by_scope:
            console.print(f"  {result.scope_name} {scope}: {_usd(usd)} over the window")
        for key, scope, tokens in unseen.by_api_key:
            console.print(f"  api key {key} ({result.scope_name} {scope}): {tokens:,} tokens over the window")
    for summary in result.unpriced:
        console.print(f"[yellow]metered without a price:[/yellow] {summary.model}: llmmeter counted "
                      f"{summary.metered_tokens:,} tokens but has no price for it; the provider billed "
                      f"{_usd(summary.billed_usd)}. Add it to the price table "
                      f"(llmmeter prices show {(summary.metered_as or (summary.model,))[0]})",
                      highlight=False, soft_wrap=True)
    for line_item, usd in result.non_model:
        console.print(f"billed outside any model (not metered by llmmeter): {line_item}: {_usd(usd)}")

    suggestions = result.discount_suggestions(max_drift)
    discounts = [s for s in suggestions if (s.effective_discount or 1) < 1]
    if discounts:
        spec = ",".join(f"{result.provider}/{name}={s.effective_discount:.3g}" for s in discounts
                        for name in (s.metered_as or (s.model,)))
        console.print("tokens agree but dollars do not: the effective discount (billed/metered) is "
                      f'LLMMETER_DISCOUNTS="{spec}"', highlight=False, soft_wrap=True)
    for summary in suggestions:
        if (summary.effective_discount or 0) > 1:
            console.print(f"tokens agree but llmmeter priced {summary.model} below the bill (billed/metered "
                          f"{summary.effective_discount:.3f}): check its rates in the price table (service tier, "
                          "long context, cache writes)", highlight=False, soft_wrap=True)
    if exceeded:
        console.print(f"[bold red]{len(exceeded)} day × model row(s) drift more than {max_drift:.1%}[/bold red]")
    else:
        console.print(f"[green]every day × model within {max_drift:.1%}[/green]")
