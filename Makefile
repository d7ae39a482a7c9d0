# One entry point for people and CI. Every target sets itself up from nothing.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench dashboards deps system-deps clean

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
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache *.egg-info
