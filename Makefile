# The task runner the README names. Every target sets up .venv first if needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test lint bench clean

$(BIN)/.installed-dev: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

setup: $(BIN)/.installed-dev

demo: setup  ## the embedded store + a local receiver with this machine's kept dev secret
	$(BIN)/clerksync serve --dev

test: setup
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check clerksync tests bench
	$(BIN)/ruff format --check clerksync tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: setup
	$(BIN)/python bench/help_bench.py
	$(BIN)/python bench/serve_bench.py

clean:
	rm -rf $(VENV) .clerksync
