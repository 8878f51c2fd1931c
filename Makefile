# Two entry points a new user needs: `make demo` and `make test` (README.md). Both build .venv themselves.
VENV ?= .venv
PY := $(VENV)/bin/python
# CrewAI pins openai<3 and pydantic<2.13 (the main venv has openai 3.x): its tests (tests/crewai) get a venv of their own.
VENV_CREWAI ?= .venv-crewai

.PHONY: demo test lint bench bench-instructions system-deps dashboards collector bench-frameworks

$(VENV)/.installed-demo: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[demo]'
	touch $@

$(VENV)/.installed-test: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[demo,test]'
	touch $@ $(VENV)/.installed-demo

demo: $(VENV)/.installed-demo
	$(VENV)/bin/llmmeter demo

system-deps:
	bash scripts/system-deps.sh

lint: $(VENV)/.installed-test
	$(PY) -m ruff check .

# The Go builds (CPU) overlap the Debian and pip installs (network, disk): a cold run waits for the longest.
test:
	$(MAKE) --no-print-directory -j3 system-deps collector venvs
	$(MAKE) --no-print-directory lint
	$(PY) -m pytest -n 2
	$(MAKE) --no-print-directory test-crewai

# The two test venvs one after the other: two editable installs of this tree at once would race on its egg-info.
.PHONY: venvs test-crewai
venvs:
	$(MAKE) --no-print-directory $(VENV)/.installed-test
	$(MAKE) --no-print-directory $(VENV_CREWAI)/.installed

$(VENV_CREWAI)/.installed: pyproject.toml
	python3 -m venv $(VENV_CREWAI)
	$(VENV_CREWAI)/bin/python -m pip install -q --upgrade pip
	$(VENV_CREWAI)/bin/python -m pip install -q -e '.[crewai-test]'
	touch $@

test-crewai: $(VENV_CREWAI)/.installed
	$(VENV_CREWAI)/bin/python -m pytest tests/crewai

bench: $(VENV)/.installed-test
	$(PY) benchmarks/bench_overhead.py

bench-instructions: system-deps $(VENV)/.installed-test
	$(PY) benchmarks/bench_instructions.py --diagnose

dashboards: $(VENV)/.installed-test
	$(PY) dashboards/build.py

# otelcol-llmmeter, Jaeger and Prometheus 3, built from the Go modules pinned in collector/ (cached by hash; needs Go >= 1.26).
collector:
	bash scripts/build-collector.sh

.PHONY: bench-startup
bench-startup: $(VENV)/.installed-test
	$(PY) benchmarks/bench_startup.py

# Agent-framework overhead (benchmarks/bench_frameworks.py): llmmeter vs OpenInference vs OpenLLMetry on one Agents SDK run.
bench-frameworks: $(VENV)/.installed-test
	$(PY) -m pip install -q -e '.[bench-frameworks]'
	$(PY) benchmarks/bench_frameworks.py

# CrewAI overhead (benchmarks/bench_crewai.py): llmmeter vs OpenInference vs OpenLLMetry on one CrewAI run, in .venv-crewai.
.PHONY: bench-crewai
bench-crewai: $(VENV_CREWAI)/.installed
	$(VENV_CREWAI)/bin/python -m pip install -q -e '.[crewai-test,bench-crewai]'
	$(VENV_CREWAI)/bin/python benchmarks/bench_crewai.py
