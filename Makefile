# jicoo-connector: every command a newcomer needs. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

UV_VERSION := 0.13.9
UV := .uv/bin/uv
VENV := .venv
PY := $(VENV)/bin/python
# Dagster keeps its run storage here (ephemeral for demo/tests, never in the home folder).
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
# pytest keeps each test module's assertion-rewritten bytecode in tests/__pycache__ only when
# bytecode may be written: under a PYTHONDONTWRITEBYTECODE from the caller's environment every
# pytest process (seven in CI) rewrote the 100 test modules again, about 4 s of CPU each.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: dagster-home help setup demo dev test check lint typecheck test-unit test-slow test-dates test-deploy test-py test-pythons bench bench-quick bench-warehouse bench-webhooks sandbox example-changeset clean clean-all

# The instance config (telemetry off, a limit for each organization's pool) from scripts/dagster.yaml;
# an existing dagster.yaml is the user's and is left alone.
dagster-home:
	@mkdir -p $(DAGSTER_HOME)
	@test -s $(DAGSTER_HOME)/dagster.yaml || cp scripts/dagster.yaml $(DAGSTER_HOME)/dagster.yaml
	@grep -q '^concurrency:' $(DAGSTER_HOME)/dagster.yaml || echo "note: $(DAGSTER_HOME)/dagster.yaml sets no pool limit; API steps then share no budget (see scripts/dagster.yaml)"

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

$(UV):
	python3 -m venv .uv
	.uv/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# Bytecode compiled at install, as pip does by default (uv does not): without it every
# process compiles pandas/pyarrow/our modules from source (about 1.5 s of CPU per start).
$(VENV)/.synced: $(UV) pyproject.toml sandbox/pyproject.toml uv.lock
	$(UV) sync --frozen --python python3.11 --quiet --compile-bytecode
	$(VENV)/bin/python -m compileall -q jicoo_connector sandbox/jicoo_sandbox assets
	@touch $@

setup: $(VENV)/.synced ## Install everything (uv from PyPI, then the locked environment in .venv)

# Both keep their Dagster runs in the demo's own home, data/demo/dagster_home, never in
# DAGSTER_HOME (a user's real instance).
demo: setup ## Start the sandbox and run the main job end to end; print where the tables are
	$(PY) scripts/demo.py

dev: setup ## The Dagster UI on the demo's setup (sandbox alongside, its own Dagster home, schedules started)
	$(PY) scripts/dev.py

check: setup ## Lint, format check, strict typing, import contracts, Dagster definitions
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	@$(MAKE) --no-print-directory dagster-home
	JICOO_API_KEY=placeholder-for-validation $(VENV)/bin/dg check defs

# Test processes at once (pytest-xdist): most of the suite waits on subprocesses, rate limits
# and retries, so two keep both cores of CI busy. Each process has its own sandbox and
# PostgreSQL server. TEST_WORKERS=0 runs every test in one process, one after the other.
TEST_WORKERS ?= 2

test-unit: setup ## Run the test suite (fast tier)
	@$(MAKE) --no-print-directory dagster-home
	$(VENV)/bin/pytest -m "not slow" -q -n $(TEST_WORKERS)

test: check test-unit ## Everything CI checks: make check, then the test suite

test-slow: setup ## Heavy tests: crash-and-resume loops, large data
	@$(MAKE) --no-print-directory dagster-home
	$(VENV)/bin/pytest -m slow -q -n $(TEST_WORKERS)

# The smoke set on another supported Python (3.10 to 3.13): the client against the sandbox (retries,
# the total deadline), one day's extract, a failed range's error group, a dry-run apply, the
# Dagster definitions loaded. Its own environment, .venv-py$(PY), with the locked versions, from
# the interpreter pyenv installed (or python$(PY) on the PATH; PYTHON=/path/to/python overrides).
PY ?= 3.10
PYTHON ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/$(PY).*/bin/python$(PY)) python$(PY))
SMOKE_TESTS ?= \
	tests/client/test_client.py::test_listing_returns_exactly_the_stores_bookings \
	tests/client/test_client.py::test_5xx_and_429_bursts_still_yield_exactly_the_bookings \
	tests/client/test_client.py::test_trickle_hits_the_total_deadline_quickly \
	tests/extract/test_extract.py::test_bookings_of_a_jst_day_are_exactly_those_starting_that_day \
	tests/extract/test_extract.py::test_an_unreachable_api_stops_the_range_after_the_first_failure \
	tests/changes/test_apply.py::test_dry_run_sends_nothing_and_writes_no_ledger \
	tests/dagster/test_definitions.py::test_definitions_object_resolves_every_asset_and_job

test-py: $(UV) ## The smoke set on another Python: make test-py PY=3.13 (3.10, 3.12, 3.13)
	UV_PROJECT_ENVIRONMENT=.venv-py$(PY) $(UV) sync --frozen --no-python-downloads --python $(PYTHON) --quiet
	@$(MAKE) --no-print-directory dagster-home
	.venv-py$(PY)/bin/pytest -q -n 0 $(SMOKE_TESTS)

# The Pythons CI runs the smoke set on (the fast tier runs on 3.11), all at once: the set mostly
# waits on the sandbox. Each printed whole when it ends; any failed one fails the target.
SMOKE_PYTHONS ?= 3.10 3.13
test-pythons: $(UV) ## The smoke set on each of SMOKE_PYTHONS at once (CI runs it)
	@printf '%s\n' $(SMOKE_PYTHONS) | xargs -P $(words $(SMOKE_PYTHONS)) -I{} \
		sh -c 'out=$$($(MAKE) --no-print-directory test-py PY={} 2>&1); \
		rc=$$?; printf "== Python %s\n%s\n" {} "$$out"; exit $$rc'

# Days the whole fast tier runs on again (JICOO_TEST_TODAY, read by tests/conftest.py): a month
# end on a Sunday, a leap day, a year end late in the UTC evening (already the next year in
# Tokyo), and the Sunday on which US daylight saving time ends.
TEST_DATES ?= 2027-01-31 2028-02-29 2026-12-31T23:30:00Z 2026-11-01
# Days at once: one pytest session per day (the clock is read at start-up), one process each.
TEST_DAYS_AT_ONCE ?= $(words $(TEST_DATES))

# Each day printed whole when it ends; any failed day fails the target.
test-dates: setup ## The whole fast tier again on each of TEST_DATES (the clock moved to that day)
	@$(MAKE) --no-print-directory dagster-home
	@printf '%s\n' $(TEST_DATES) | xargs -P $(TEST_DAYS_AT_ONCE) -I{} \
		sh -c 'out=$$(JICOO_TEST_TODAY={} $(VENV)/bin/pytest -m "not slow" -q -n 0 2>&1); \
		rc=$$?; printf "== JICOO_TEST_TODAY=%s\n%s\n" {} "$$out"; exit $$rc'

# The deployment image for real (tests/deploy/check_image.py): buildah (installed from Debian's
# packages when missing; root, as in CI) builds deploy/Dockerfile on its own base image or on a
# debootstrap stand-in cached in ~/.cache/jicoo-connector/deploy/ (JICOO_DEPLOY_CACHE=DIR: another
# folder; an empty one runs it from nothing), then its code server and a daemon on PostgreSQL run
# a daily run and a change set against a sandbox.
test-deploy: setup ## Build deploy/Dockerfile with buildah and run it: code server, daemon, two runs (root)
	$(PY) -m tests.deploy.check_image

bench: setup ## Full benchmarks (minutes); results in benchmarks/results/
	$(PY) benchmarks/run.py

bench-quick: setup ## Smoke benchmark run: small sizes, 1 run, no extract_1m or webhooks (about 15 minutes)
	$(PY) benchmarks/run.py --quick

bench-warehouse: setup ## Only the warehouse load: 500,000 bookings into PostgreSQL vs pandas to_sql
	$(PY) benchmarks/run.py --only warehouse --out benchmarks/results/$$(date -u +%F)-warehouse.json

bench-webhooks: setup ## Webhook freshness alone: 60 changes at 1/s, daemon running, its CPU idle and busy (~6 minutes); results in benchmarks/results/<date>-webhooks-load-<N>.json
	$(PY) benchmarks/webhook_freshness.py --save

example-changeset: setup ## Write data/changesets/example.csv afresh (today's free slots of the seed-7 sandbox)
	$(PY) scripts/example_changeset.py

# The example change set first: its slots are today's, so it plans cleanly against this sandbox.
sandbox: setup example-changeset ## Write data/changesets/example.csv, then serve the sandbox on 127.0.0.1:8765 until Ctrl-C
	$(VENV)/bin/jicoo-sandbox serve --host 127.0.0.1 --port 8765 --seed 7 --bookings 2000

clean: ## Remove the environments, caches and the demo's folder; keeps your ledger, apply log, warehouse, webhook events
	rm -rf $(VENV) .venv-py3.* .uv .mypy_cache .ruff_cache .pytest_cache .hypothesis .import_linter_cache
	rm -rf data/demo

# The state a user cannot rebuild: the ledger is the only record of what was applied (and what
# `jicoo ledger undo` needs). Named before it goes; only when asked for by name. Only this
# checkout's .dagster_home: a DAGSTER_HOME set elsewhere may be a real deployment's.
STATE := $(wildcard data/ledger.sqlite* data/apply_log data/warehouse data/warehouse.duckdb* data/webhook_events.sqlite* .dagster_home)
clean-all: clean ## Also delete the ledger, apply log, warehouse, webhook events and Dagster runs (names them first)
	@if [ -n "$(strip $(STATE))" ]; then \
		echo "Deleting, for good: $(STATE)"; \
		rm -rf $(STATE); \
	else echo "No ledger, apply log, warehouse, webhook events or Dagster runs to delete."; fi
