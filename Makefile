# One entry point for people and CI. Every target sets itself up from nothing.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench bench-throughput dashboards deps system-deps clean mutate mutate-io

demo: $(STAMP) system-deps
	$(BIN)/gate-collector demo

test: $(STAMP) system-deps
	$(BIN)/ruff check collector tests
	$(BIN)/mypy
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check collector tests
	$(BIN)/ruff format --check collector tests
	$(BIN)/mypy

bench: $(STAMP) system-deps
	$(BIN)/pytest -q -s -o python_files="bench_*.py" tests/bench

# Issue 16's honest throughput benchmarks in one go (burst with raw / floor / collector /
# competent / baseline rows, one-core saturation at 1,000 and 5,000 accounts, paced
# 100 / 1,000 / 5,000 accounts, idle TLS sessions 1,000 and 10,000); each writes its
# section of tests/bench/RESULTS.md. Sizes: the BENCH_* variables in those files.
BENCH_SESSIONS ?= 1000,10000
bench-throughput: $(STAMP) system-deps
	BENCH_SESSIONS=$(BENCH_SESSIONS) $(BIN)/pytest -q -s -p no:cacheprovider \
		-o python_files="bench_*.py" tests/bench/bench_throughput.py tests/bench/bench_sessions.py

# Mutation testing of the pure cores; not part of `make test` (minutes, not seconds).
# The modules mutated and the fast tests run against each mutant are the lists in
# pyproject.toml [tool.mutmut] (only_mutate, pytest_add_cli_args_test_selection).
# MUTANTS narrows a run: make mutate MUTANTS='collector.gate.errors*'. Score and
# accepted survivors: tests/MUTATION.md.
MUTANTS ?=
MUTATE_JOBS ?= 2
MUTMUT_STAMP := $(VENV)/.mutmut-installed

mutate: $(MUTMUT_STAMP)
	$(BIN)/mutmut run --max-children $(MUTATE_JOBS) $(MUTANTS)
	$(BIN)/mutmut results

# Hand-made mutants of the per-account lifecycle's I/O modules (runner, key lifecycle,
# slot table, snapshot scheduler, sink delivery/backlog/spool/writer, SIGHUP), each run
# against its module's unit tests in tests/unit (seconds per mutant; about 4 minutes in
# all). MUTANTS_IO narrows a run to the mutants whose name contains a word:
# make mutate-io MUTANTS_IO='spool'. The list, the score and the survivors: tests/MUTATION.md.
MUTANTS_IO ?=
mutate-io: $(STAMP)
	$(BIN)/python -m tests.mutate_io $(MUTANTS_IO)

$(MUTMUT_STAMP): $(STAMP)
	$(BIN)/pip install -q -e '.[dev,mutation]'
	touch $(MUTMUT_STAMP)

dashboards: $(STAMP)
	$(BIN)/python -m collector.devtools.grafana

deps: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

# Debian's InfluxDB 1.x and VictoriaMetrics: the real servers the tests write to.
system-deps:
	@bash deploy/install-test-servers.sh

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache *.egg-info mutants
