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
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

.PHONY: install
install: $(STAMP) ## create .venv and install the service with its dev tools

.PHONY: lint
lint: $(STAMP) ## ruff (lint and format check)
	$(BIN)/ruff check service tests
	$(BIN)/ruff format --check service tests

.PHONY: typecheck
typecheck: $(STAMP) ## mypy, strict on service/
	$(BIN)/mypy

.PHONY: unit
unit: $(STAMP) ## unit tests only (no broker)
	$(BIN)/pytest tests/unit

.PHONY: test
test: lint typecheck ## lint, typecheck, then every test (unit and integration against a real broker)
	$(BIN)/pytest

.PHONY: demo
demo: $(STAMP) ## the whole pipeline on this machine: broker, simulator, CDC events, live view
	$(BIN)/customer-sync demo

.PHONY: format
format: $(STAMP) ## rewrite files with ruff
	$(BIN)/ruff check --fix service tests
	$(BIN)/ruff format service tests

.PHONY: clean
clean: ## remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

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
