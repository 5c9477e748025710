# The two commands of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test test-sqlite test-postgres test-browser lint services bench

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

## Runs the whole pipeline on embedded defaults (SQLite, embedded Redis) and prints each step's timing.
demo: $(VENV)/.installed
	$(PY) -m example.demo

services:
	bash .ci/services

## The test suite, on SQLite and then on PostgreSQL, against the real Redis, plus ruff.  The browser tests
## (tests/browser: the example site on its own SQLite file, in headless Chromium) run once, in the SQLite pass:
## the test database setting does not reach them.
test: $(VENV)/.installed services
	$(VENV)/bin/ruff check .
	TEST_DATABASE=sqlite $(PY) -m pytest
	TEST_DATABASE=postgres $(PY) -m pytest --ignore=tests/browser

test-sqlite: $(VENV)/.installed
	TEST_DATABASE=sqlite $(PY) -m pytest

test-postgres: $(VENV)/.installed services
	TEST_DATABASE=postgres $(PY) -m pytest --ignore=tests/browser

## Only the browser tests; screenshots in test-artifacts/screenshots/, server logs in test-artifacts/browser-logs/.
test-browser: $(VENV)/.installed services
	$(PY) -m pytest tests/browser

$(VENV)/.bench-installed: $(VENV)/.installed
	$(PY) -m pip install -q -e ".[dev,bench]"
	touch $@

## The benchmarks (bench/) against the local Redis and PostgreSQL; writes docs/benchmarks.md and docs/benchmarks.png.
bench: $(VENV)/.bench-installed services
	$(PY) -m bench
