# Developer and CI entry points. `make test` is what .ci/run runs.
#
#   make demo         the whole product locally: Kafka, generator, the job on 2 processes, output
#   make test         lint, type-check and run every test (starts and stops a test broker)
#   make lint         ruff and mypy only
#   make kafka-start  start the local Kafka broker (KAFKA_ARGS="--brokers 3" for a cluster)
#   make kafka-stop   stop it;  make kafka-status, make kafka-topics likewise
#
# .venv is built with $(PYTHON) on first use and re-installed only when a
# requirements*.txt file changes (the stamp file below is older than it).

SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements-installed
TEST_KAFKA_DIR := .local-kafka-test
PYTEST_ARGS ?=
KAFKA_ARGS ?=
BENCH_ARGS ?=

.DEFAULT_GOAL := test
.PHONY: demo bench test lint venv kafka-start kafka-stop kafka-status kafka-topics clean

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

lint: $(STAMP)
	$(VENV)/bin/ruff check dataflow tests
	$(VENV)/bin/mypy

# The session fixture stops the test broker; stopping it here as well covers a
# crashed or interrupted pytest. pytest's exit code is kept.
test: lint
	@status=0; \
	trap '$(PY) -m dataflow kafka stop --dir $(TEST_KAFKA_DIR)' EXIT; \
	$(PY) -m pytest $(PYTEST_ARGS) || status=$$?; \
	exit $$status

demo: $(STAMP)
	PY=$(PY) bash scripts/demo.sh

# Needs a running broker (make kafka-start); BENCH_ARGS=--quick for a one-minute run.
bench: $(STAMP)
	$(PY) -m dataflow bench $(BENCH_ARGS)

kafka-start: $(STAMP)
	$(PY) -m dataflow kafka start $(KAFKA_ARGS)

kafka-stop: $(STAMP)
	$(PY) -m dataflow kafka stop $(KAFKA_ARGS)

kafka-status: $(STAMP)
	$(PY) -m dataflow kafka status $(KAFKA_ARGS)

kafka-topics: $(STAMP)
	$(PY) -m dataflow kafka create-topics $(KAFKA_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
