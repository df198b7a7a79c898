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

# Two workers: most of a test's time is spent waiting on brokers, processes and timeouts.
TEST_WORKERS ?= 2

.PHONY: test
test: lint typecheck tools kafka-jars cdc-jars registry-jars postgres ## lint, typecheck, then every tier (unit, integration on Apache Kafka and Apicurio Registry, PostgreSQL → Debezium end to end)
	$(BIN)/pytest -m "not slow" -n $(TEST_WORKERS) --dist loadfile --durations=10

.PHONY: test-slow
test-slow: $(STAMP) kafka-jars ## the long runs: short chaos runs under both protocols, broker outages, the bench smoke
	$(BIN)/pytest -m slow --durations=5

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
chaos: $(STAMP) kafka-jars ## ~30 min on Apache Kafka: 10 min of kills per rebalance protocol, a 3-node failover run, a 30 s outage
	$(BIN)/python -m tests.chaos --protocol classic $(CHAOS_ARGS)
	$(BIN)/python -m tests.chaos --protocol consumer $(CHAOS_ARGS)
	$(BIN)/python -m tests.chaos --broker cluster --duration 180 --records 30000 --max-down 8 $(CHAOS_ARGS)
	CHAOS_OUTAGE_SECONDS=30 $(BIN)/pytest -p no:cacheprovider tests/integration/test_broker_outage.py

.PHONY: soak
soak: $(STAMP) kafka-jars ## 30 min at 300 events/s with the faulty API: RSS, fds and threads must stay flat
	$(BIN)/python -m tests.chaos.soak $(SOAK_ARGS)

# --- Apache Kafka for tests/brokers (a real KRaft broker from Maven Central's jars) ----------
# The broker's runtime classpath is copied once into .cache/ (git ignores it), with Maven's
# local repository there too: after the first run the stamp keeps this offline. The version is
# the one tests/brokers/pom.xml names, so the folder, the jars and tests/brokers/apache.py agree.
KAFKA_VERSION := $(shell sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' tests/brokers/pom.xml)
KAFKA_HOME := .cache/kafka-$(KAFKA_VERSION)
KAFKA_STAMP := $(KAFKA_HOME)/.installed

$(KAFKA_STAMP): tests/brokers/pom.xml
	@command -v java >/dev/null && command -v mvn >/dev/null \
		&& [ "$$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)" -ge 17 ] 2>/dev/null \
		|| { echo "Apache Kafka for the integration tests needs Java 17+ and Maven: apt-get install openjdk-17-jdk-headless maven"; exit 1; }
	rm -rf $(KAFKA_HOME)
	mvn -B -q -f tests/brokers/pom.xml -Dmaven.repo.local=$(CURDIR)/.cache/m2 \
		org.apache.maven.plugins:maven-dependency-plugin:copy-dependencies \
		-DincludeScope=runtime -DoutputDirectory=$(CURDIR)/$(KAFKA_HOME)/libs
	touch $(KAFKA_STAMP)

.PHONY: kafka-jars
kafka-jars: $(KAFKA_STAMP) ## fetch Apache Kafka's jars once into .cache/ (needs Java 17+ and Maven)


# --- Kafka Connect and Debezium for tests/cdc (PostgreSQL → Debezium → Kafka, end to end) ------
# Like the broker's jars: Connect's runtime classpath and the Debezium PostgreSQL plugin are
# copied once out of Maven Central into .cache/cdc (about 60 MB, 84 MB of Maven repository),
# and the stamp, named by the versions tests/cdc/pom.xml pins, keeps later runs offline.
pom_property = $(shell sed -n 's:.*<$(1)>\(.*\)</$(1)>.*:\1:p' tests/cdc/pom.xml)
CONNECT_VERSION := $(call pom_property,kafka.connect.version)
DEBEZIUM_VERSION := $(call pom_property,debezium.version)
CDC_HOME := .cache/cdc
CDC_STAMP := $(CDC_HOME)/.installed-$(CONNECT_VERSION)-$(DEBEZIUM_VERSION)
PG_BIN ?= /usr/lib/postgresql/15/bin

$(CDC_STAMP): tests/cdc/pom.xml
	@command -v java >/dev/null && command -v mvn >/dev/null \
		&& [ "$$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)" -ge 17 ] 2>/dev/null \
		|| { echo "Kafka Connect and Debezium for the end-to-end tests need Java 17+ and Maven: apt-get install openjdk-17-jdk-headless maven"; exit 1; }
	rm -rf $(CDC_HOME)/connect-$(CONNECT_VERSION) $(CDC_HOME)/plugins-$(DEBEZIUM_VERSION) $(CDC_HOME)/markers
	mvn -B -q -f tests/cdc/pom.xml -Dmaven.repo.local=$(CURDIR)/.cache/m2 generate-resources
	touch $(CDC_STAMP)

.PHONY: cdc-jars
cdc-jars: $(CDC_STAMP) ## fetch Kafka Connect and the Debezium PostgreSQL connector once into .cache/

# --- Apicurio Registry for the Avro tests (a Confluent-compatible schema registry) -----------
# Like the broker's jars: the registry application (2.6, Java 17) is unpacked once out of Maven
# Central into .cache/ (about 140 MB), and the stamp, named by the version tests/registry/pom.xml
# pins, keeps later runs offline.
APICURIO_VERSION := $(shell sed -n 's:.*<apicurio.version>\(.*\)</apicurio.version>.*:\1:p' tests/registry/pom.xml)
APICURIO_HOME := .cache/apicurio-$(APICURIO_VERSION)
APICURIO_STAMP := $(APICURIO_HOME)/.installed

$(APICURIO_STAMP): tests/registry/pom.xml
	@command -v java >/dev/null && command -v mvn >/dev/null \
		&& [ "$$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)" -ge 17 ] 2>/dev/null \
		|| { echo "the schema registry for the Avro tests needs Java 17+ and Maven: apt-get install openjdk-17-jdk-headless maven"; exit 1; }
	rm -rf $(APICURIO_HOME)
	mvn -B -q -f tests/registry/pom.xml -Dmaven.repo.local=$(CURDIR)/.cache/m2 generate-resources
	touch $(APICURIO_STAMP)

.PHONY: registry-jars
registry-jars: $(APICURIO_STAMP) ## fetch Apicurio Registry 2.6 once into .cache/ (the Avro tests' schema registry; Java 17+, Maven)

.PHONY: postgres
postgres: ## check that PostgreSQL's server is installed (tests/cdc and demo-cdc run a private cluster)
	@test -x $(PG_BIN)/initdb || { echo "the end-to-end tests need PostgreSQL's server in $(PG_BIN): apt-get install postgresql (or make PG_BIN=...)"; exit 1; }

FORMAT ?= json

.PHONY: demo-cdc
demo-cdc: $(STAMP) kafka-jars cdc-jars postgres $(if $(filter avro,$(FORMAT)),registry-jars) ## PostgreSQL → Debezium → Kafka → customer-sync, SQL changes while you watch (FORMAT=avro: Avro through a schema registry; needs Java, Maven, PostgreSQL)
	$(BIN)/python -m tests.cdc.demo --format $(FORMAT)
