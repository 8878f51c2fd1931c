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


def main() -> None:
    app(prog_name="llmmeter")


if __name__ == "__main__":
    sys.exit(main())
