# The two set-up commands of the README: `make demo` and `make test`. Both start from nothing:
# they create the virtualenv, install the project, and start the services they need.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

UI_TESTS := carbon_pipeline_tests/ui

.PHONY: setup demo demo-ui ui test lint bench bench-quick

# pip's own output goes to a log, shown only if the install fails.
$(BIN)/carbon-pipeline: pyproject.toml
	@echo "setting up $(VENV) (log: $(VENV)/install.log) ..."
	@$(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install --quiet --upgrade pip > $(VENV)/install.log 2>&1 || (cat $(VENV)/install.log; exit 1)
	@$(BIN)/pip install --quiet -e ".[test]" >> $(VENV)/install.log 2>&1 || (cat $(VENV)/install.log; exit 1)
	@touch $@

setup: $(BIN)/carbon-pipeline

demo: setup
	$(BIN)/carbon-pipeline demo

demo-ui: setup
	$(BIN)/carbon-pipeline demo-ui

# The Dagster UI on the pipeline's instance (PostgreSQL beside DATABASE_URL's database).
ui: setup
	$(BIN)/carbon-pipeline ui

# The browser test drives Debian's Chromium with playwright-core (no browser download).
/usr/bin/chromium:
	apt-get install -y --no-install-recommends chromium || \
	  (apt-get update && apt-get install -y --no-install-recommends chromium)

$(UI_TESTS)/node_modules/playwright-core: $(UI_TESTS)/package.json $(UI_TESTS)/package-lock.json
	cd $(UI_TESTS) && npm ci --no-audit --no-fund
	touch $@

test: setup /usr/bin/chromium $(UI_TESTS)/node_modules/playwright-core
	$(BIN)/pytest

lint: setup
	$(BIN)/ruff check carbon_pipeline carbon_pipeline_tests
	$(BIN)/ruff format --check carbon_pipeline carbon_pipeline_tests

bench: setup
	$(BIN)/python -m carbon_pipeline_tests.bench

bench-quick: setup
	$(BIN)/python -m carbon_pipeline_tests.bench --quick
