"""The ``llmmeter`` command: the demo, price-table look-ups and a start-up config check."""

from __future__ import annotations

import json
import sys

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


@app.command("check-config")
def check_config() -> None:
    """Validate every LLMMETER_* setting, the price file and the budgets file, as start-up would."""
    from llmmeter.config import Settings

    try:
        settings = Settings.from_env()
        from llmmeter import pricing

        pricing.get_price_table()
        from llmmeter.frameworks import guards

        guards.load()  # LLMMETER_AGENT_GUARDS: per-agent loop-guard limits for framework runs
    except ConfigError as exc:
        Console(stderr=True).print(f"[red]llmmeter: {exc}[/red]")
        raise typer.Exit(2) from None
    typer.echo(json.dumps(settings.__dict__, indent=2, default=list))


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


def main() -> None:
    app(prog_name="llmmeter")


if __name__ == "__main__":
    sys.exit(main())
