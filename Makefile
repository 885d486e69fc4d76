# Two commands on a fresh machine: `make lab` and `make test`. Both create .venv and install.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check --quiet
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)

.PHONY: lab test demo bench lint format clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# One stamp per set of extras; reinstalls when pyproject.toml changes.
$(VENV)/.installed-lab: pyproject.toml | $(BIN)/python
	$(PIP) install -e '.[lab]'
	touch $@

$(VENV)/.installed-all: pyproject.toml | $(BIN)/python
	$(PIP) install -e '.[lab,brokers,test]'
	touch $@ $(VENV)/.installed-lab

lab: $(VENV)/.installed-lab  ## open the notebooks in JupyterLab (in-memory bus; no broker needed)
	$(BIN)/jupyter lab --notebook-dir=notebooks $(ALLOW_ROOT)

test: $(VENV)/.installed-all  ## lint, then every test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

demo: $(VENV)/.installed-lab  ## the tutorial's complete example
	$(BIN)/python -m eventsource_lab demo

bench: $(VENV)/.installed-all  ## each bus beside its baseline
	$(BIN)/python benchmarks/memory_bus.py
	$(BIN)/python benchmarks/run_all.py

lint: $(VENV)/.installed-all
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed-all
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
