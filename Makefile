# The two set-up commands of the README: `make demo` and `make test`. Both start from nothing:
# they create the virtualenv, install the project, and start the services they need.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

UI_TESTS := carbon_pipeline_tests/ui

.PHONY: setup catalog demo demo-ui demo-api api ui test test-daemon test-bench test-newest test-oldest upgrade lint bench bench-quick

# The environment is exactly what uv.lock says (versions and hashes), installed by uv, whose
# own version and hashes are in the lock too: pip only bootstraps that uv, hash-checked.
# Their output goes to a log, shown only if the install fails.
UV_PIN = import tomllib; uv = next(p for p in tomllib.load(open("uv.lock", "rb"))["package"] if p["name"] == "uv"); \
  print("uv==" + uv["version"], *("--hash=" + w["hash"] for w in uv["wheels"] + [uv["sdist"]]))
# --compile-bytecode: modules are compiled once, at install, not by every process that imports
# them (where PYTHONDONTWRITEBYTECODE is set, as on this project's development machine, each
# Python process would otherwise recompile dagster's 2,000 modules: 3.6 s, not 1.4 s, to import).
UV_SYNC = UV_PROJECT_ENVIRONMENT=$(VENV) $(BIN)/uv sync --locked --quiet --compile-bytecode

$(BIN)/carbon-pipeline: pyproject.toml uv.lock
	@echo "setting up $(VENV) from uv.lock (log: $(VENV)/install.log) ..."
	@$(PYTHON) -m venv $(VENV)
	@$(PYTHON) -c '$(UV_PIN)' > $(VENV)/uv-requirement.txt
	@$(BIN)/pip install --quiet --require-hashes -r $(VENV)/uv-requirement.txt > $(VENV)/install.log 2>&1 || (cat $(VENV)/install.log; exit 1)
	@$(UV_SYNC) >> $(VENV)/install.log 2>&1 || (cat $(VENV)/install.log; exit 1)
	@touch $@

setup: $(BIN)/carbon-pipeline

demo: setup
	$(BIN)/carbon-pipeline demo

# sql/catalog.json (the tables' and views' COMMENTs, which the asset graph shows) from the
# migrations, on a scratch database of the local PostgreSQL; after every new migration.
catalog: setup
	$(BIN)/python -m carbon_pipeline.catalog

demo-ui: setup
	$(BIN)/carbon-pipeline demo-ui

# The seed's API (docs/api.md) on the demo's data, on http://127.0.0.1:8000.
demo-api: setup
	$(BIN)/carbon-pipeline demo-api

# The Dagster UI on the pipeline's instance (PostgreSQL beside DATABASE_URL's database).
ui: setup
	$(BIN)/carbon-pipeline ui

# Debian packages the tests need, installed before the test workers start (each would
# otherwise try at once). The browser test drives Chromium with playwright-core (no browser
# download); the tests start their own Prometheus servers.
APT_INSTALL = apt-get -o DPkg::Lock::Timeout=900 install -y --no-install-recommends
/usr/bin/chromium /usr/bin/promtool: PACKAGE = $(if $(findstring chromium,$@),chromium,prometheus)
/usr/bin/chromium /usr/bin/promtool:
	$(APT_INSTALL) $(PACKAGE) || (apt-get update && $(APT_INSTALL) $(PACKAGE))

$(UI_TESTS)/node_modules/playwright-core: $(UI_TESTS)/package.json $(UI_TESTS)/package-lock.json
	cd $(UI_TESTS) && npm ci --no-audit --no-fund
	touch $@

# Independent tests run side by side (pytest-xdist): most of the suite's time is spent waiting
# on the services and on processes starting, not computing. TEST_WORKERS=0 runs them one after
# the other.
TEST_WORKERS ?= 6
PYTEST = pytest -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder

test: setup /usr/bin/promtool
	$(BIN)/$(PYTEST)

# A deployment end to end (marker `daemon`): dagster-daemon, the webserver and a browser, whose
# tests wait on the daemon's ticks (a backfill tick is 30 s, an observation a cron minute);
# CI runs them after `make test`, which stays quick for the edit-test loop.
test-daemon: setup /usr/bin/chromium /usr/bin/promtool $(UI_TESTS)/node_modules/playwright-core
	$(BIN)/pytest -n 3 --dist loadgroup --no-loadscope-reorder -m daemon

# The benchmark's own test (its quick mode end to end), which CI runs after `make test`.
test-bench: setup /usr/bin/promtool
	$(BIN)/pytest -n 2 -m bench carbon_pipeline_tests/test_bench.py

# The suite on the newest releases pyproject.toml's ranges allow (today's pip install), or on
# the oldest it names, each in its own environment; the lock and .venv stay as they are.
test-newest: RESOLUTION = highest
test-oldest: RESOLUTION = lowest-direct
test-newest test-oldest: setup /usr/bin/promtool
	@$(BIN)/uv venv --quiet --allow-existing --python $(PYTHON) .venv-$(RESOLUTION)
	@$(BIN)/uv pip install --quiet --compile-bytecode --python .venv-$(RESOLUTION)/bin/python --upgrade \
	  --resolution $(RESOLUTION) --group dev -e .
	@.venv-$(RESOLUTION)/bin/python -c "import dagster, numpy, pandas, pandera, sqlalchemy; \
	  print(' '.join(f'{m.__name__} {m.__version__}' for m in (pandas, numpy, sqlalchemy, dagster, pandera)))"
	.venv-$(RESOLUTION)/bin/$(PYTEST)

# Re-resolve the lock to the newest releases the ranges allow and run the suite on it; commit
# uv.lock if it passes.
upgrade: $(BIN)/carbon-pipeline
	$(BIN)/uv lock --upgrade
	$(UV_SYNC)
	$(MAKE) test

lint: setup
	$(BIN)/ruff check carbon_pipeline carbon_pipeline_tests
	$(BIN)/ruff format --check carbon_pipeline carbon_pipeline_tests

bench: setup /usr/bin/promtool
	$(BIN)/python -m carbon_pipeline_tests.bench
	$(BIN)/python -m carbon_pipeline_tests.bench_queries

bench-quick: setup /usr/bin/promtool
	$(BIN)/python -m carbon_pipeline_tests.bench --quick
	$(BIN)/python -m carbon_pipeline_tests.bench_queries --quick
