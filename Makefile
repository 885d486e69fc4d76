# Two commands on a fresh machine: `make lab` and `make test`. Both create .venv and install.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check --quiet
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)

.PHONY: lab test test-pythons demo bench lint format clean

# The core semantics (handler tasks, dispatch, the in-memory bus) on each Python 3.10-3.13 that
# pyenv has here, each in its own .venv-pyXY with only what those tests import (pins: pyproject).
PYENV_ROOT ?= $(shell pyenv root 2>/dev/null)
PYTHONS := $(sort $(wildcard $(PYENV_ROOT)/versions/3.1[0-3].*/bin/python3))
CORE_TESTS := tests/unit/bus/test_handler_tasks.py tests/unit/bus/test_base.py \
	tests/unit/bus/test_memory.py tests/conformance/test_memory.py
CORE_TEST_DEPS := $(shell grep -oE '"(pytest|pytest-asyncio|pytest-timeout|hypothesis)[<>=~!][^"]*"' pyproject.toml)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# One stamp per set of extras; reinstalls when pyproject.toml changes.
$(VENV)/.installed-lab: pyproject.toml | $(BIN)/python
	$(PIP) install -e '.[lab]'
	touch $@

$(VENV)/.installed-all: pyproject.toml | $(BIN)/python
	$(PIP) install -e '.[lab,brokers,test]'
	touch $@ $(VENV)/.installed-lab

# The kit's JupyterLab defaults (jupyter/overrides.json: no news prompt, no update check) go
# into the venv's JupyterLab; the browser opens at 00_start_here.
lab: $(VENV)/.installed-lab  ## open the notebooks in JupyterLab (in-memory bus; no broker needed)
	jupyter/install-settings $(BIN)/python
	$(BIN)/jupyter lab --notebook-dir=notebooks --LabApp.default_url=/lab/tree/00_start_here.ipynb \
		$(ALLOW_ROOT)

# Most tests wait on a broker, so pytest runs them in TEST_WORKERS processes (pytest-xdist; each
# starts brokers of its own) even on two cores. Whole files go to a worker (a notebook's cells
# share one kernel), and tests/conftest.py sends all of tests/docker to one. They go in collection
# order, which starts the few long files (binder, browser, docker) first, not last as xdist's
# order by test count would. A worker whose teardown hangs ends itself (tests/support/hangs.py);
# one such crash is replaced, a second ends the run. TEST_WORKERS=0: serial.
TEST_WORKERS ?= 3

test: $(VENV)/.installed-all  ## lint, the core tests on every Python, then every test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(MAKE) test-pythons
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder \
		--max-worker-restart 1

test-pythons:  ## the core semantics tests on each other Python 3.10-3.13 found under pyenv
	@if [ -z "$(PYTHONS)" ]; then \
		echo "test-pythons: no Python 3.10-3.13 under pyenv ('$(PYENV_ROOT)')"; \
		[ "$$CI" != true ] || exit 1; \
	fi
	@main=$$($(PYTHON) -c 'import sys; print("%d%d" % sys.version_info[:2])'); \
	for py in $(PYTHONS); do \
		venv=.venv-py$$($$py -c 'import sys; print("%d%d" % sys.version_info[:2])'); \
		if [ "$$venv" = ".venv-py$$main" ]; then \
			echo "== $$venv: the main suite runs on this Python"; continue; \
		fi; \
		echo "== $$venv: $$($$py --version)"; \
		if [ ! -f $$venv/.installed-core ] || [ pyproject.toml -nt $$venv/.installed-core ]; then \
			$$py -m venv $$venv && \
			$$venv/bin/python -m pip --disable-pip-version-check --quiet install \
				-e . $(CORE_TEST_DEPS) && touch $$venv/.installed-core || exit 1; \
		fi; \
		$$venv/bin/python -m pytest -q -o addopts=--strict-markers $(CORE_TESTS) || exit 1; \
	done

demo: $(VENV)/.installed-lab  ## the tutorial's complete example
	$(BIN)/python -m eventsource_lab demo

# The benchmarks run again on the newest Python 3.12+ under pyenv, in .venv-bench: there handler
# tasks start eagerly, so dispatch costs far less than on 3.10-3.11 (a loop pass per handler).
BENCH_PYTHON := $(lastword $(sort $(wildcard $(PYENV_ROOT)/versions/3.1[2-9].*/bin/python3)))

bench: $(VENV)/.installed-all  ## each bus beside its baseline, on this Python and on 3.12+
	$(BIN)/python benchmarks/memory_bus.py
	$(BIN)/python benchmarks/run_all.py
	@if [ -z "$(BENCH_PYTHON)" ]; then echo "bench: no Python 3.12+ under pyenv"; exit 0; fi; \
	if [ ! -f .venv-bench/.installed ] || [ pyproject.toml -nt .venv-bench/.installed ]; then \
		$(BENCH_PYTHON) -m venv .venv-bench && \
		.venv-bench/bin/python -m pip --disable-pip-version-check --quiet install -e '.[brokers]' \
		&& touch .venv-bench/.installed || exit 1; \
	fi; \
	.venv-bench/bin/python benchmarks/memory_bus.py && .venv-bench/bin/python benchmarks/run_all.py

lint: $(VENV)/.installed-all
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed-all
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .venv-py* .pytest_cache .ruff_cache *.egg-info
