# One entry point for people and CI alike. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11 (apt-get install python3.11 python3.11-venv)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,demo]'
	touch $(STAMP)

.PHONY: install
install: $(STAMP) ## create .venv and install the service with its dev tools

.PHONY: lint
lint: $(STAMP) ## ruff (lint and format check)
	$(BIN)/ruff check service tests benchmarks
	$(BIN)/ruff format --check service tests benchmarks

.PHONY: typecheck
typecheck: $(STAMP) ## mypy, strict on service/
	$(BIN)/mypy

.PHONY: unit
unit: $(STAMP) ## unit tests only (no broker)
	$(BIN)/pytest tests/unit

.PHONY: test
test: lint typecheck tools ## lint, typecheck, then every test (unit and integration against a real broker)
	$(BIN)/pytest --durations=10

# --- deployment checkers (tests/deploy, tests/integration/test_observability.py) ---
# Each is installed once and only when missing, so `make test` stays idempotent and offline after
# the first run. checkov lives in its own virtualenv: ~100 pinned packages that must not
# constrain (or be constrained by) the service's dependencies.
TOOLS_VENV ?= .venv-tools
DEPLOY_STAMP := $(VENV)/.deploy-installed
CHECKOV_STAMP := $(TOOLS_VENV)/.installed
CHECKOV_VERSION ?= 3.3.30

$(DEPLOY_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install --quiet -e '.[dev,demo,deploy]'
	touch $(DEPLOY_STAMP)

$(CHECKOV_STAMP):
	$(PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/pip install --quiet --upgrade pip
	$(TOOLS_VENV)/bin/pip install --quiet 'checkov==$(CHECKOV_VERSION)'
	touch $(CHECKOV_STAMP)

.PHONY: tools
tools: $(DEPLOY_STAMP) $(CHECKOV_STAMP) ## install the deployment checkers: hadolint, kubernetes-validate, checkov, promtool
	@command -v promtool >/dev/null && command -v prometheus >/dev/null || { \
		echo "installing Prometheus (Debian package) for promtool and the dashboard test"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }
	@command -v kubectl >/dev/null || { echo "kubectl (with kustomize) is required: https://kubernetes.io/docs/tasks/tools/"; exit 1; }

.PHONY: demo
demo: $(STAMP) ## the whole pipeline on this machine: broker, simulator, CDC events, live view
	$(BIN)/customer-sync demo

.PHONY: bench
bench: $(STAMP) ## measure throughput, API efficiency, memory and latency (a few minutes)
	$(BIN)/python -m benchmarks.bench $(BENCH_ARGS)

.PHONY: schemas
schemas: $(STAMP) ## regenerate schemas/ (JSON Schema 2020-12) from the code's pydantic models
	$(BIN)/python -m service.contracts.schemas

.PHONY: readme
readme: $(STAMP) ## regenerate the README's configuration table from the Settings model
	$(BIN)/python -m service.contracts.docgen

.PHONY: check
check: $(STAMP) ## preflight a configuration (env vars): brokers, topics, lag, API credentials
	$(BIN)/customer-sync check

.PHONY: format
format: $(STAMP) ## rewrite files with ruff
	$(BIN)/ruff check --fix service tests benchmarks
	$(BIN)/ruff format service tests benchmarks

.PHONY: clean
clean: ## remove the virtualenv and caches
	rm -rf $(VENV) $(TOOLS_VENV) .pytest_cache .mypy_cache .ruff_cache

# --- reliability under faults (issue 6) -------------------------------------------------
CHAOS_ARGS ?=
SOAK_ARGS ?=

.PHONY: chaos
chaos: $(STAMP) ## 10 min: 2 instances killed at random under a faulty API, then an independent check; a 30 s broker outage
	$(BIN)/python -m tests.chaos $(CHAOS_ARGS)
	CHAOS_OUTAGE_SECONDS=30 $(BIN)/pytest -p no:cacheprovider tests/integration/test_broker_outage.py

.PHONY: soak
soak: $(STAMP) ## 30 min at 300 events/s with the faulty API: RSS, fds and threads must stay flat
	$(BIN)/python -m tests.chaos.soak $(SOAK_ARGS)
