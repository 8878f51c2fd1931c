"""pytest plugin: ``pytest -p llmmeter.prompts_plugin --llmmeter-prompts 'prompts/*.txt'`` runs the prompt
footprint check (:mod:`llmmeter.prompts`) with the test session and fails the session when a template grew past
the threshold against the baseline. Options mirror ``llmmeter prompts check``."""

from __future__ import annotations

from typing import Any

from llmmeter import prompts


def pytest_addoption(parser: Any) -> None:
    group = parser.getgroup("llmmeter-prompts", "llmmeter prompt footprint")
    group.addoption("--llmmeter-prompts", action="append", default=[], metavar="GLOB",
                    help="prompt template files to check (repeatable)")
    group.addoption("--llmmeter-prompts-model", action="append", default=[], metavar="MODEL",
                    help="target model(s) whose tokenizer counts (default gpt-4o-mini)")
    group.addoption("--llmmeter-prompts-baseline", default=prompts.DEFAULT_BASELINE, metavar="FILE")
    group.addoption("--llmmeter-prompts-threshold", type=float, default=prompts.DEFAULT_THRESHOLD, metavar="FRACTION")


def pytest_sessionfinish(session: Any, exitstatus: int) -> None:
    options = session.config.option
    patterns = options.llmmeter_prompts
    if not patterns:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    try:
        baseline = prompts.load_baseline(options.llmmeter_prompts_baseline)
        footprints = prompts.measure(prompts.templates(patterns, session.config.rootpath),
                                     options.llmmeter_prompts_model or ["gpt-4o-mini"], baseline)
    except prompts.ConfigError as error:
        if reporter is not None:
            reporter.write_line(str(error), red=True)
        session.exitstatus = 1
        return
    grown = prompts.over_threshold(footprints, options.llmmeter_prompts_threshold)
    for f in grown:
        if reporter is not None:
            reporter.write_line(f"llmmeter prompts: {f.prompt} [{f.model}] grew {f.baseline} -> {f.tokens} tokens "
                                f"({f.change:+.1%}), over {options.llmmeter_prompts_threshold:.0%}", red=True)
    if grown:
        session.exitstatus = 1
