# The task runner the README names. Every target sets up .venv first if needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup browser demo test lint docs bench clean

$(BIN)/.installed-dev: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

setup: $(BIN)/.installed-dev browser

# What the demo needs and no more: clerksync and its embedded store (the dev extra and the
# browser are the tests').
$(BIN)/.installed-demo: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[embedded]'
	touch $@

# The inspector's browser tests drive Debian's chromium through Playwright (never a browser
# Playwright would download). Installed with apt when missing and we are root; otherwise
# say how, and the browser tests skip with that reason (with CI set they fail instead).
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian's chromium for the browser tests (apt-get)"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null \
	    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; }; \
	  else \
	    echo "note: no /usr/bin/chromium; the browser tests will skip (sudo apt-get install chromium)"; \
	  fi; \
	fi

# The journeys' Next.js app (mongoose) and doctor's MongoDB-shell fixes run under Node in
# the tests: npm installs what tests/support/node/package-lock.json pins.
NODE_DIR := tests/support/node
$(NODE_DIR)/node_modules/.installed: $(NODE_DIR)/package.json $(NODE_DIR)/package-lock.json
	cd $(NODE_DIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

demo: $(BIN)/.installed-demo  ## the embedded store + a local receiver with this machine's kept dev secret
	$(BIN)/clerksync serve --dev

# Bytecode is written even where the environment says not to (PYTHONDONTWRITEBYTECODE, set
# in many container images): every command the tests start would otherwise compile clerksync
# from source, and each worker would rewrite every test module again: about a tenth of the suite's CPU.
test: setup $(NODE_DIR)/node_modules/.installed
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/python -m pytest

docs: setup  ## the docs site into site/; --strict: a broken link or anchor fails the build
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

lint: setup
	$(BIN)/ruff check clerksync tests bench
	$(BIN)/ruff format --check clerksync tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: setup
	$(BIN)/python bench/help_bench.py
	$(BIN)/python bench/serve_bench.py

clean:
	rm -rf $(VENV) .clerksync site $(NODE_DIR)/node_modules
