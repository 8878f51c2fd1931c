"""The ``llmmeter`` command: the demo, price-table look-ups and a start-up config check."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import typer
from rich.console import Console

from llmmeter.config import ConfigError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="What your LLM calls cost, per call and per label.")
prices_app = typer.Typer(no_args_is_help=True, help="Look up and validate price tables.")
app.add_typer(prices_app, name="prices")


@app.command()
def demo(
    agent: bool = typer.Option(True, help="Also run the agent scenario (a tool loop the loop guard stops)."),
    agents: bool = typer.Option(False, "--agents", help="Also run OpenAI Agents SDK and LangGraph runs."),
) -> None:
    """Run a small multi-feature app through the real openai SDK against a local server and show the bill.

    No API key, no network, no collector: the server listens on 127.0.0.1. Set OTEL_EXPORTER_OTLP_ENDPOINT to
    also send the spans and metrics to a collector (see collector/README.md).
    """
    from llmmeter.demo.app import run_demo

    try:
        from llmmeter.summary import _console

        run_demo(_console(sys.stdout), agent=agent, frameworks=agents)
    except ConfigError as exc:
        Console(stderr=True).print(f"[red]llmmeter: {exc}[/red]")
        raise typer.Exit(2) from None


@prices_app.command("show")
def prices_show(model: str, provider: str = typer.Option(None, help="gen_ai.provider.name, e.g. aws.bedrock")) -> None:
    """Show the price entry a model name resolves to (after normalization), or say it has none."""
    from llmmeter import pricing

    try:
        entry = pricing.describe(model, provider=provider)
    except ConfigError as exc:
        Console(stderr=True).print(f"[red]llmmeter: {exc}[/red]")
        raise typer.Exit(2) from None
    if not entry:
        Console(stderr=True).print(f"[yellow]{model}: no price (calls to it are reported as unpriced)[/yellow]")
        raise typer.Exit(1)
    typer.echo(json.dumps(entry, indent=2, sort_keys=True))


@prices_app.command("check")
def prices_check(path: str) -> None:
    """Validate a price file (llmmeter's format or LiteLLM's model_prices_and_context_window.json)."""
    from llmmeter import pricing

    try:
        table = pricing.load_price_table(path)
    except ConfigError as exc:
        Console(stderr=True).print(f"[red]llmmeter: {exc}[/red]")
        raise typer.Exit(2) from None
    typer.echo(f"{path}: {len(table)} priced models")


# --- llmmeter prices update (issue 12: prices that stay right) ------------------------------------------------
@prices_app.command("update")
def prices_update(
    source: str = typer.Option(None, "--from", help="URL or file of the new table: LiteLLM's "
                               "model_prices_and_context_window.json or llmmeter's format. Default: LiteLLM's."),
    check: bool = typer.Option(False, "--check", help="Write nothing; exit 1 when the table in force is older "
                               "than the source (misses or misprices a model of an instrumented provider)."),
    output: str = typer.Option(None, "--output", "-o", help="Override file to write (default: LLMMETER_PRICE_FILE)."),
    show: int = typer.Option(20, "--show", help="Models listed per kind of change."),
    timeout: float = typer.Option(30.0, "--timeout", help="Seconds to wait for a URL."),
) -> None:
    """Fetch and validate a newer price table, print the diff against the table in force, write it atomically."""
    from datetime import UTC, datetime

    from llmmeter import pricing
    from llmmeter.config import ENV_PRICE_FILE
    from llmmeter.pricing import update

    err = Console(stderr=True)
    source = source or update.DEFAULT_SOURCE
    try:
        in_force = pricing.get_price_table()
        _raw, new = update.parse_source(update.read_source(source, timeout), source)
        if check:
            reasons = update.stale_reasons(in_force, new)
            for line in reasons[:show]:
                typer.echo(f"  {line}")
            if len(reasons) > show:
                typer.echo(f"  ... {len(reasons) - show} more (--show N)")
            if reasons:
                typer.echo(f"stale: the table in force ({in_force.version}) misses or misprices {len(reasons)} "
                           f"model(s) that {source} prices; run `llmmeter prices update`")
                raise typer.Exit(1)
            typer.echo(f"up to date: the table in force ({in_force.version}) prices every model of an "
                       f"instrumented provider in {source} at its rates")
            return
        target = output or next((p.strip() for p in os.environ.get(ENV_PRICE_FILE, "").split(os.pathsep)
                                 if p.strip()), None)
        if not target:
            err.print(f"[red]llmmeter: say where to write the table: --output PATH (then set {ENV_PRICE_FILE} "
                      "to that path)[/red]")
            raise typer.Exit(2)
        document = update.override_document(new, source, datetime.now(UTC))
        written = pricing.parse_price_data(document, target)  # what LLMMETER_PRICE_FILE will load
        after = pricing.table_with(target, written)
        for line in update.format_diff(update.diff_tables(in_force, after), show):
            typer.echo(line)
        update.write_atomically(target, document)
        typer.echo(f"wrote {target}: {len(written)} priced models from {source}")
        if os.path.abspath(target) not in {os.path.abspath(p.strip()) for p in
                                           os.environ.get(ENV_PRICE_FILE, "").split(os.pathsep) if p.strip()}:
            typer.echo(f"set {ENV_PRICE_FILE}={target} to use it")
    except ConfigError as exc:
        err.print(f"[red]llmmeter: {exc}[/red]")
        raise typer.Exit(2) from None
    except OSError as exc:
        err.print(f"[red]llmmeter: cannot write {output}: {exc}[/red]")
        raise typer.Exit(2) from None


@app.command("check-config")
def check_config() -> None:
    """Validate every LLMMETER_* setting, the price file and the budgets, with the check start-up runs.

    Exit 0: start-up would succeed as configured. 2: start-up would stop (LLMMETER_ON_CONFIG_ERROR=exit,
    the default). 1: start-up would go on with the named parts disabled (LLMMETER_ON_CONFIG_ERROR=warn).
    """
    from rich.markup import escape

    from llmmeter import config, startup
    from llmmeter.summary import _console

    err = _console(sys.stderr, soft_wrap=True)  # a message is one line, never folded
    try:
        config.set_settings(None)
        report = startup.check()
    except ConfigError as exc:  # the policy variable itself is bad
        err.print(f"[red]llmmeter: {escape(str(exc))}[/red]", highlight=False)
        raise typer.Exit(2) from None
    for name, closest in report.unknown_variables:
        err.print(f"[yellow]llmmeter: warning: {escape(config.unknown_variable_message(name, closest))}[/yellow]",
                  highlight=False)
    if report.fatal:
        for problem in report.problems:
            err.print(f"[red]llmmeter: {escape(str(problem.error))}[/red]", highlight=False)
        err.print(f"[red]start-up would stop (exit {startup.EXIT_CONFIG_ERROR}); "
                  f"{config.ENV_ON_CONFIG_ERROR}=warn would start with these parts disabled[/red]", highlight=False)
        raise typer.Exit(2)
    for problem in report.problems:
        err.print(f"[yellow]llmmeter: {escape(str(problem.error))}: start-up goes on with {problem.part} "
                  f"disabled ({escape(problem.disabled)})[/yellow]", highlight=False)
    typer.echo(json.dumps(report.settings.__dict__, indent=2, default=list))
    if report.problems:
        raise typer.Exit(1)


# --- llmmeter reconcile ------------------------------------------------------------------------------
@app.command("reconcile")
def reconcile_cmd(
    provider: str = typer.Argument(..., help="openai or anthropic"),
    since: str = typer.Option("7d", help="How many complete UTC days to compare, ending at --until."),
    until: str = typer.Option(None, help="Exclusive end day YYYY-MM-DD (UTC); default today, whose report is "
                                         "still incomplete."),
    base_url: str = typer.Option(None, help="The provider's API base URL (default the public API)."),
    prometheus: str = typer.Option(None, help="Prometheus base URL to read llmmeter's metrics from."),
    ledger: str = typer.Option(None, help="llmmeter's cost ledger (directory or file) to read instead."),
    scope: list[str] = typer.Option(None, help="Only this OpenAI project / Anthropic workspace id of the bill "
                                               "(repeatable; default the whole organisation)."),
    output_format: str = typer.Option("table", "--format", help="table or json"),
    max_drift: float = typer.Option(0.05, help="Exit 1 when a day × model drifts more than this fraction."),
    min_usd: float = typer.Option(0.01, help="Ignore day × model rows where both sides are below this (USD)."),
    prometheus_textfile: str = typer.Option(None, help="Also write llmmeter_reconcile_drift_ratio to this .prom "
                                                       "file for node_exporter's textfile collector."),
) -> None:
    """Compare llmmeter's cost with the provider's own cost and usage reports (the invoice), per day × model.

    Keys come from OPENAI_ADMIN_KEY / ANTHROPIC_ADMIN_KEY (organisation admin keys) and are never printed.
    Exit codes: 0 within --max-drift, 1 past it, 2 bad input or an unreadable report.
    """
    import datetime as dt
    import os

    from llmmeter import reconcile as rec
    from llmmeter.reconcile import export, render

    err = Console(stderr=True)

    def fail(message: str) -> typer.Exit:
        err.print(f"[red]llmmeter reconcile: {message}[/red]", highlight=False, soft_wrap=True)
        return typer.Exit(2)

    if provider not in rec.PROVIDERS:
        raise fail(f"provider {provider!r}: expected one of {', '.join(rec.PROVIDERS)}")
    if output_format not in ("table", "json"):
        raise fail(f"--format {output_format!r}: expected table or json")
    if bool(prometheus) == bool(ledger):
        raise fail("give exactly one of --prometheus URL or --ledger PATH (where llmmeter's figures are)")
    if not 0 <= max_drift:
        raise fail(f"--max-drift {max_drift}: expected a fraction >= 0, e.g. 0.05")
    module = rec.PROVIDERS[provider]
    key = os.environ.get(module.KEY_ENV, "").strip()
    if not key:
        raise fail(f"{module.KEY_ENV} is not set: the {provider} cost and usage reports need an organisation "
                   "admin key")
    try:
        days = rec.parse_since(since)
        end = rec.parse_until(until)
        start = end - dt.timedelta(days=days)
        source = rec.PrometheusSource(prometheus) if prometheus else rec.ledger_source(ledger)
        result = rec.reconcile(provider, key, source, start, end, base_url=base_url,
                               scopes=frozenset(scope) if scope else None)
        if prometheus_textfile:
            export.write_textfile(result, prometheus_textfile)
    except rec.ReconcileError as exc:
        raise fail(str(exc)) from None
    except OSError as exc:
        raise fail(f"{prometheus_textfile}: {exc.strerror or exc}") from None
    if output_format == "json":
        typer.echo(render.to_json(result))
    else:
        render.render(result, Console(width=max(Console().width, 120)), max_drift, min_usd)
    if result.exceeded(max_drift, min_usd):
        raise typer.Exit(1)


# --- llmmeter report: the cost ledger's reports (llmmeter.report) --------------------------------------------
report_app = typer.Typer(no_args_is_help=True, help="Query the cost ledger: top spenders, daily cost, runs, ...")
app.add_typer(report_app, name="report")
_FORMAT = typer.Option("table", "--format", help="table | json | csv")
_SINCE = typer.Option(None, "--since", help="Only calls since: 24h, 7d, 30m or an ISO date/time (UTC)")
_BETWEEN = typer.Option(None, "--between", help="Only calls between two ISO dates/times: --between A B")
_LEDGER = typer.Option(None, "--ledger", help="Ledger directory (default: LLMMETER_LEDGER, else the default place)")
_CLICKHOUSE = typer.Option(None, "--clickhouse", help="Query ClickHouse (http://host:8123) instead of the ledger")
_TABLE = typer.Option("otel.otel_traces", "--table", help="The clickhouse exporter's traces table")


def _report(name: str, build: Any, fmt: str, since: str | None, between: tuple[str, str] | None,
            ledger: str | None, clickhouse: str | None, table: str, title: str, fields: Any = None,
            extra: Any = ()) -> list[list[dict]]:
    """Run one report (plus ``extra`` query builders) on the ledger or ClickHouse and print the first; errors
    are one line on stderr, exit 2. Returns the rows of every query."""
    from llmmeter.report import render

    if fmt not in render.FORMATS:
        typer.echo(f"llmmeter report {name}: --format {fmt!r}: expected one of {', '.join(render.FORMATS)}", err=True)
        raise typer.Exit(2)
    try:
        lo = hi = None
        if since and between:
            raise ValueError("--since and --between: give one of them")
        if since:
            lo = render.parse_since(since)
        if between:
            lo, hi = render.parse_time(between[0]), render.parse_time(between[1])
        dialect = "clickhouse" if clickhouse else "sqlite"
        built = [build(dialect), *(more(dialect) for more in extra)]
        results = _report_rows(built, lo, hi, ledger, clickhouse, table)
    except (ValueError, OSError, RuntimeError, ConfigError) as exc:
        typer.echo(f"llmmeter report {name}: {exc}", err=True)
        raise typer.Exit(2) from None
    if fields is not False:
        render.emit(Console(width=200), fmt, title, results[0], fields or built[0].fields)
    return results


def _report_rows(built: list[Any], lo: int | None, hi: int | None, ledger: str | None, clickhouse: str | None,
                 table: str) -> list[list[dict]]:
    from llmmeter.report import engine

    if clickhouse:
        from llmmeter.report.clickhouse import check_table

        return [engine.on_clickhouse_http(clickhouse, q, check_table(table), lo, hi) for q in built]
    from llmmeter import ledger as ledger_mod
    from llmmeter.config import Settings
    from llmmeter.ledger.store import open_store

    configured = ledger or Settings.from_env().ledger
    directory = ledger_mod.resolve(configured, zero_infrastructure=True) if configured != "off" else None
    if directory is None:
        raise ValueError("the ledger is off (LLMMETER_LEDGER=off); pass --ledger DIR")
    store = open_store(directory, lo, hi)
    try:
        for problem in store.problems:
            typer.echo(f"llmmeter report: {problem}", err=True)
        return [engine.on_sqlite(store, q) for q in built]
    finally:
        store.close()


@report_app.command("top")
def report_top(
    by: str = typer.Option(..., "--by", help="user, tenant, session, conversation, feature, route, prompt, model, "
                           "provider, agent, or any attribution key"),
    limit: int = typer.Option(10, "--limit", min=1),
    fmt: str = _FORMAT, since: str = _SINCE, between: tuple[str, str] = _BETWEEN, ledger: str = _LEDGER,
    clickhouse: str = _CLICKHOUSE, table: str = _TABLE,
    html_file: str = typer.Option(None, "--html", help="Also write a self-contained page with charts to FILE"),
) -> None:
    """The costliest values of a key: calls, tokens by type, cost and share of the total."""
    from llmmeter.report import queries, render

    fields = render.TOP_JSON_FIELDS if fmt == "json" else None
    extra = (lambda d: queries.daily_by(by, d), lambda d: queries.tokens("route", d)) if html_file else ()
    results = _report("top", lambda d: queries.top(by, limit, d), fmt, since, between, ledger, clickhouse, table,
                      f"top {limit} by {by}", fields, extra)
    if html_file:
        from llmmeter.report import html

        top_rows, daily_rows, token_rows = results
        keys = [row["key"] for row in top_rows]
        page = html.page(
            f"LLM cost by {by}",
            [(f"Cost per day by {by} (top {limit}, rest as other)", html.stacked_days(daily_rows, keys, "per day")),
             (f"Top {limit} by {by}", html.bar_chart(top_rows, "key", "cost_usd", "top")),
             ("Input tokens per call by route (p50, p95)", html.token_bars(token_rows, "tokens"))],
            f"from {clickhouse or 'the cost ledger'}; {sum(r['calls'] for r in top_rows):,} calls in the top {limit}",
        )
        try:
            with open(html_file, "w", encoding="utf-8") as out:
                out.write(page)
        except OSError as exc:
            typer.echo(f"llmmeter report top: cannot write --html {html_file}: {exc}", err=True)
            raise typer.Exit(2) from None


@report_app.command("daily")
def report_daily(fmt: str = _FORMAT, since: str = _SINCE, between: tuple[str, str] = _BETWEEN,
                 ledger: str = _LEDGER, clickhouse: str = _CLICKHOUSE, table: str = _TABLE) -> None:
    """Cost per UTC day with the change against the day before."""
    from llmmeter.report import queries

    _report("daily", queries.daily, fmt, since, between, ledger, clickhouse, table, "cost per day")


@report_app.command("outcomes")
def report_outcomes(by: str = typer.Option("feature", "--by", help="feature, agent, or any key"),
                    fmt: str = _FORMAT, since: str = _SINCE, between: tuple[str, str] = _BETWEEN,
                    ledger: str = _LEDGER, clickhouse: str = _CLICKHOUSE, table: str = _TABLE) -> None:
    """Cost per successful outcome (llmmeter.record_outcome) per feature (or agent, ...)."""
    from llmmeter.report import queries

    _report("outcomes", lambda d: queries.outcomes(by, d), fmt, since, between, ledger, clickhouse, table,
            f"cost per successful outcome by {by}")


@report_app.command("tokens")
def report_tokens(by: str = typer.Option("route", "--by", help="route, feature, or any key"),
                  fmt: str = _FORMAT, since: str = _SINCE, between: tuple[str, str] = _BETWEEN,
                  ledger: str = _LEDGER, clickhouse: str = _CLICKHOUSE, table: str = _TABLE) -> None:
    """p50 / p95 / max input and output tokens per route (or feature, ...)."""
    from llmmeter.report import queries

    _report("tokens", lambda d: queries.tokens(by, d), fmt, since, between, ledger, clickhouse, table,
            f"tokens per call by {by}")


@report_app.command("prompts")
def report_prompts(fmt: str = _FORMAT, since: str = _SINCE, between: tuple[str, str] = _BETWEEN,
                   ledger: str = _LEDGER, clickhouse: str = _CLICKHOUSE, table: str = _TABLE) -> None:
    """Input-token footprint per prompt template and version, largest jumps between versions first."""
    from llmmeter.report import queries

    _report("prompts", queries.prompts, fmt, since, between, ledger, clickhouse, table, "prompt footprint")


@report_app.command("cache")
def report_cache(fmt: str = _FORMAT, since: str = _SINCE, between: tuple[str, str] = _BETWEEN,
                 ledger: str = _LEDGER, clickhouse: str = _CLICKHOUSE, table: str = _TABLE,
                 app_caches: bool = typer.Option(False, "--app", help="The app's own caches (llmmeter.record_cache)"),
                 ) -> None:
    """Provider prompt-cache reads (share of input, dollars saved) per provider and model; --app: the app's caches."""
    from llmmeter.report import queries

    if app_caches:
        _report("cache", queries.app_cache, fmt, since, between, ledger, clickhouse, table, "app caches")
        return
    _report("cache", queries.cache, fmt, since, between, ledger, clickhouse, table, "provider prompt cache")


@report_app.command("unpriced")
def report_unpriced(fmt: str = _FORMAT, since: str = _SINCE, between: tuple[str, str] = _BETWEEN,
                    ledger: str = _LEDGER, clickhouse: str = _CLICKHOUSE, table: str = _TABLE) -> None:
    """Calls with no known price (not in the cost totals), by provider and model."""
    from llmmeter.report import queries

    _report("unpriced", queries.unpriced, fmt, since, between, ledger, clickhouse, table, "unpriced calls")


@report_app.command("estimated")
def report_estimated(fmt: str = _FORMAT, since: str = _SINCE, between: tuple[str, str] = _BETWEEN,
                     ledger: str = _LEDGER, clickhouse: str = _CLICKHOUSE, table: str = _TABLE) -> None:
    """Calls whose token counts were estimated with a tokenizer, by reason and model."""
    from llmmeter.report import queries

    _report("estimated", queries.estimated, fmt, since, between, ledger, clickhouse, table, "estimated usage")


@report_app.command("run")
def report_run(trace_id: str, fmt: str = _FORMAT, ledger: str = _LEDGER, clickhouse: str = _CLICKHOUSE,
               table: str = _TABLE) -> None:
    """One agent run or request (a trace id), call by call, as a tree."""
    from llmmeter.report import queries, render

    trace_id = trace_id.lower()
    rows = _report("run", lambda d: queries.run(trace_id, d), fmt, None, None, ledger, clickhouse, table,
                   f"trace {trace_id}", None if fmt != "table" else False)[0]
    if fmt == "table":
        if not rows:
            Console(stderr=True).print(f"llmmeter report run: no calls with trace id {trace_id} in the ledger")
            raise typer.Exit(1)
        Console(width=200).print(render.run_tree(trace_id, rows))


# --- llmmeter prompts check: prompt-template token footprint against a baseline (llmmeter.prompts) -------------
prompts_app = typer.Typer(no_args_is_help=True, help="Prompt templates' token footprint, checked in CI.")
app.add_typer(prompts_app, name="prompts")


@prompts_app.command("check")
def prompts_check(
    patterns: list[str] = typer.Argument(..., help="Template files (globs, ** allowed)"),
    model: list[str] = typer.Option(["gpt-4o-mini"], "--model", help="Target model(s): their tokenizer and price"),
    baseline: str = typer.Option(".llmmeter-prompts.json", "--baseline", help="The committed baseline file"),
    threshold: float = typer.Option(0.20, "--threshold", help="Fail when a template grows more than this fraction"),
    calls_per_day: int = typer.Option(1000, "--calls-per-day", min=1, help="Daily volume the cost is stated at"),
    update: bool = typer.Option(False, "--update", help="Rewrite the baseline with the current counts"),
    fmt: str = _FORMAT,
) -> None:
    """Count each template's tokens per model, compare with the baseline; exit 1 when one grew past the threshold."""
    from llmmeter import prompts
    from llmmeter.report import render

    try:
        texts = prompts.templates(patterns)
        known = None if update else prompts.load_baseline(baseline)
        footprints = prompts.measure(texts, model, known)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    if update:
        prompts.write_baseline(baseline, footprints)
        typer.echo(f"{baseline}: {len(footprints)} prompt/model counts written")
        return
    rows = [{"prompt": f.prompt, "model": f.model, "baseline_tokens": f.baseline, "tokens": f.tokens,
             "change": f.change, "cost_per_day_usd": f.daily_usd(calls_per_day),
             "change_per_day_usd": f.daily_change_usd(calls_per_day)} for f in footprints]
    render.emit(Console(width=200), fmt, f"prompt footprint (cost at {calls_per_day:,} calls/day)", rows,
                list(rows[0]) if rows else ["prompt"])
    grown = prompts.over_threshold(footprints, threshold)
    if grown:
        names_ = ", ".join(f"{f.prompt} [{f.model}] {f.change:+.1%}" for f in grown)
        typer.echo(f"llmmeter prompts: over the {threshold:.0%} threshold: {names_}", err=True)
        raise typer.Exit(1)


def main() -> None:
    app(prog_name="llmmeter")


if __name__ == "__main__":
    sys.exit(main())
