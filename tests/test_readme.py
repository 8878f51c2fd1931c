"""README.md promises checked against the code: the provider table, the metric names, the two commands."""

from __future__ import annotations

import re
from importlib import import_module
from pathlib import Path

import tomllib
from llmmeter import names

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _provider_rows() -> dict[str, str]:
    rows = {}
    for match in re.finditer(r"^\| `(llmmeter_[a-z_]+)` \| `([^`]+)` \|", README, re.MULTILINE):
        rows[match.group(1)] = match.group(2)
    return rows


def _entry_points() -> dict[str, str]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return dict(pyproject["project"]["entry-points"]["opentelemetry_instrumentor"])


def test_every_instrumentor_entry_point_is_in_the_readme_table_and_nothing_else() -> None:
    assert set(_provider_rows()) == set(_entry_points())


def test_readme_names_each_instrumentors_declared_sdk_dependency() -> None:
    for name, target in _entry_points().items():
        module_name, cls_name = target.split(":")
        instrumentor = getattr(import_module(module_name), cls_name)()
        declared = tuple(instrumentor.instrumentation_dependencies())
        assert declared, name
        listed = _provider_rows()[name]
        assert any(listed.replace(" ", "") == dep.replace(" ", "") for dep in declared), (name, listed, declared)


def test_metric_table_uses_the_names_module() -> None:
    for metric in (names.METRIC_TOKEN_USAGE, names.METRIC_OPERATION_DURATION, names.METRIC_TOKENS,
                   names.METRIC_COST, names.METRIC_REQUESTS):
        assert f"`{metric}`" in README, metric
        kind, unit = names.METRIC_SPECS[metric]
        prom = names.prometheus_name(metric, unit, counter=kind == names.KIND_COUNTER)
        assert prom in README, prom


def test_readme_opens_with_the_demo_and_test_commands_that_ci_runs() -> None:
    first_block = re.search(r"```bash\n(.*?)```", README, re.DOTALL)
    assert first_block is not None
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines() if line.strip()]
    assert commands == ["make demo", "make test"]
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, re.MULTILINE) and re.search(r"^test:", makefile, re.MULTILINE)
