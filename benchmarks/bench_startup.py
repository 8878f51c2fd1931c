"""llmmeter's share of start-up under ``opentelemetry-instrument``: CPU time and peak RSS of whole processes.

Two arms, the same packages at the same versions (every supported LLM SDK installed, as in the test
extras), one difference:

* ``bare``: ``opentelemetry-instrument`` without llmmeter. Built from this venv without copying anything: a
  throwaway venv whose only site-packages entry is a directory of symlinks to this venv's site-packages,
  minus llmmeter's ``dist-info`` and its editable ``.pth`` (so no llmmeter entry point exists);
* ``llmmeter``: the same, plus llmmeter (its distro, configurator, seven instrumentors, post-instrument hook).

Each arm runs three apps: ``idle`` (``pass``: an app that uses no LLM SDK), ``openai`` (``import openai``:
the instrumentor wraps it when it is imported) and ``all_sdks`` (imports every supported SDK). A fourth
figure, ``estimate``, is the llmmeter arm counting one short text with the tokenizer: what loading a
vocabulary costs, now paid only by a process that needs an estimate. ``python -c "import openai"``
without any OTel is the reference the issue compared against.

Each process is measured by ``os.wait4`` (user+system CPU seconds, peak RSS); the arms alternate, and the
median of ``--rounds`` runs is reported with ``added`` (llmmeter - bare) and ``ratio`` (llmmeter / bare).

    python benchmarks/bench_startup.py            # a few minutes; --rounds 3 for a quicker run
    git archive <commit> instrumentation | tar -x -C /tmp/old
    python benchmarks/bench_startup.py --variant before=/tmp/old/instrumentation   # adds arm llmmeter@before
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_overhead import machine, result_header, write_result

SCHEMA_VERSION = 1
DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "startup.json")
SDKS = ("openai", "anthropic", "boto3", "google.genai", "mistralai", "cohere", "ollama")
APPS: dict[str, str] = {
    "idle": "pass",
    "openai": "import openai",
    "all_sdks": "; ".join(f"import {sdk}" for sdk in SDKS),
}
ESTIMATE_APP = "from llmmeter import estimate; estimate.count_tokens('hello world', 'gpt-4o', wait=True)"
ENV = {
    "OTEL_TRACES_EXPORTER": "none",
    "OTEL_METRICS_EXPORTER": "none",
    "OTEL_LOGS_EXPORTER": "none",
    "LLMMETER_SUMMARY": "off",
    "PYTHONDONTWRITEBYTECODE": "1",
}


def _is_llmmeter_entry(name: str) -> bool:
    return name.startswith(("llmmeter-", "__editable__.llmmeter", "__editable___llmmeter")) or name == "llmmeter"


def build_bare_python(root: Path, llmmeter_source: str | None = None) -> str:
    """A venv whose site-packages is this venv's without llmmeter (symlinks; nothing is installed).

    With ``llmmeter_source`` (a directory holding a ``llmmeter/`` package, e.g. an older tree), llmmeter's
    entry points are kept and that copy is what they load: a variant arm.
    """
    site = Path(sysconfig.get_paths()["purelib"])
    shadow = root / "site"
    shadow.mkdir(parents=True)
    for entry in site.iterdir():
        keep_dist_info = llmmeter_source is not None and entry.name.endswith(".dist-info")
        if (keep_dist_info or not _is_llmmeter_entry(entry.name)) and not entry.name.endswith(".pth"):
            (shadow / entry.name).symlink_to(entry)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / "venv")], check=True)
    python = root / "venv" / "bin" / "python"
    bare_site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip()
    # .pth files of the real site-packages (setuptools' distutils shim) are processed for site dirs only.
    for pth in site.glob("*.pth"):
        if not _is_llmmeter_entry(pth.name):
            shutil.copy(pth, bare_site)
    lines = [str(shadow)] + ([os.path.abspath(llmmeter_source)] if llmmeter_source else [])
    Path(bare_site, "shadow.pth").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(python)


def run_once(argv: list[str]) -> dict[str, float]:
    """CPU seconds (user + system) and peak RSS (MB) of one process, from the kernel's accounting."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LLMMETER_", "PYTHONPATH"))}
    env.update(ENV)
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
    if process.returncode != 0:
        raise RuntimeError(f"{argv} exited {process.returncode}: {stderr[-2000:]}")
    return {"cpu_s": usage.ru_utime + usage.ru_stime, "rss_mb": usage.ru_maxrss / 1024}


def instrumented(python: str, code: str) -> list[str]:
    """``opentelemetry-instrument <python> -c code``, with the instrument script of ``python``'s packages."""
    launcher = "import sys; from opentelemetry.instrumentation.auto_instrumentation import run; run()"
    return [python, "-c", launcher, python, "-c", code]


def summarize(samples: list[dict[str, float]]) -> dict[str, float]:
    return {key: round(statistics.median(s[key] for s in samples), 3) for key in ("cpu_s", "rss_mb")}


def measure(rounds: int, variants: dict[str, str] | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="llmmeter-bench-startup-") as tmp:
        bare = build_bare_python(Path(tmp) / "bare")
        # The bare arm really has no llmmeter: no module, no entry point.
        check = subprocess.run([bare, "-c", "import importlib.util as u; print(u.find_spec('llmmeter') is None)"],
                               capture_output=True, text=True, check=True)
        if check.stdout.strip() != "True":
            raise RuntimeError("the bare arm can import llmmeter")
        arms = {"bare": bare, "llmmeter": sys.executable}
        for name, source in (variants or {}).items():
            arms[f"llmmeter@{name}"] = build_bare_python(Path(tmp) / name, source)
        samples: dict[str, dict[str, list[dict[str, float]]]] = {arm: {app: [] for app in APPS} for arm in arms}
        estimate_samples: list[dict[str, float]] = []
        reference: list[dict[str, float]] = []
        for round_ in range(rounds):
            order = list(arms) if round_ % 2 == 0 else list(reversed(arms))
            for app, code in APPS.items():
                for arm in order:
                    samples[arm][app].append(run_once(instrumented(arms[arm], code)))
            estimate_samples.append(run_once(instrumented(sys.executable, ESTIMATE_APP)))
            reference.append(run_once([sys.executable, "-c", "import openai"]))
    figures = {arm: {app: summarize(runs) for app, runs in apps.items()} for arm, apps in samples.items()}
    added: dict[str, dict[str, float]] = {}
    ratio: dict[str, dict[str, float | None]] = {}
    for app in APPS:
        base, with_llmmeter = figures["bare"][app], figures["llmmeter"][app]
        added[app] = {key: round(with_llmmeter[key] - base[key], 3) for key in base}
        ratio[app] = {key: round(with_llmmeter[key] / base[key], 3) if base[key] else None for key in base}
    variant_added = {
        arm: {app: {key: round(figures[arm][app][key] - figures["bare"][app][key], 3) for key in ("cpu_s", "rss_mb")}
              for app in APPS}
        for arm in figures if arm.startswith("llmmeter@")
    }
    return {
        **result_header(SCHEMA_VERSION),
        "machine": machine(),
        "rounds": rounds,
        "sdks_installed": list(SDKS),
        "apps": APPS,
        "arms": figures,
        "added": added,
        "ratio": ratio,
        "variants_added": variant_added,
        "llmmeter_first_estimate": summarize(estimate_samples),
        "reference_plain_import_openai": summarize(reference),
        "samples": {"arms": samples, "estimate": estimate_samples, "reference": reference},
    }


def render(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="start-up under opentelemetry-instrument (median of rounds)", title_justify="left")
    for name in ("app", "bare CPU s", "llmmeter CPU s", "added CPU s", "ratio", "bare RSS MB", "llmmeter RSS MB",
                 "added RSS MB"):
        table.add_column(name, justify="right" if name != "app" else "left")
    for app in result["apps"]:
        bare, llm = result["arms"]["bare"][app], result["arms"]["llmmeter"][app]
        table.add_row(app, f"{bare['cpu_s']:.2f}", f"{llm['cpu_s']:.2f}", f"{result['added'][app]['cpu_s']:+.2f}",
                      f"{result['ratio'][app]['cpu_s']:.2f}", f"{bare['rss_mb']:.0f}", f"{llm['rss_mb']:.0f}",
                      f"{result['added'][app]['rss_mb']:+.0f}")
    console = Console(width=max(120, Console().width))
    console.print(table)
    for arm, apps in result.get("variants_added", {}).items():
        console.print(f"{arm} adds: " + ", ".join(
            f"{app} {fig['cpu_s']:+.2f} s CPU / {fig['rss_mb']:+.0f} MB" for app, fig in apps.items()))
    est, ref = result["llmmeter_first_estimate"], result["reference_plain_import_openai"]
    console.print(f"llmmeter arm, idle app + one tiktoken estimate: {est['cpu_s']:.2f} s CPU, {est['rss_mb']:.0f} MB")
    console.print(f"reference, python -c 'import openai' (no OTel): {ref['cpu_s']:.2f} s CPU, {ref['rss_mb']:.0f} MB")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="runs of each (arm, app), median reported")
    parser.add_argument("--out", default=DEFAULT_OUT)
    parser.add_argument("--no-table", action="store_true")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=DIR",
                        help="also measure the llmmeter package in DIR/llmmeter (e.g. an older tree) as llmmeter@NAME")
    args = parser.parse_args(argv)
    variants = dict(item.split("=", 1) for item in args.variant)
    for name, source in variants.items():
        if not os.path.isdir(os.path.join(source, "llmmeter")):
            parser.error(f"--variant {name}={source}: no llmmeter/ package there")
    result = measure(max(1, args.rounds), variants)
    write_result(result, args.out)
    if not args.no_table:
        render(result)
        print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
