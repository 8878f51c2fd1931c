# Two entry points a new user needs: `make demo` and `make test` (README.md). Both build .venv themselves.
VENV ?= .venv
PY := $(VENV)/bin/python

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
	$(MAKE) --no-print-directory -j3 system-deps collector $(VENV)/.installed-test
	$(MAKE) --no-print-directory lint
	$(PY) -m pytest -n 2

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
