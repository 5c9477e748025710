# The two commands of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test test-sqlite test-postgres test-browser lint services bench docs

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev,docs]"
	touch $@

## Runs the whole pipeline on embedded defaults (SQLite, embedded Redis) and prints each step's timing.
demo: $(VENV)/.installed
	$(PY) -m example.demo

services:
	bash .ci/services

## ruff, the manual (built with warnings as errors), then the test suite on SQLite and on PostgreSQL, against the
## real Redis.  The browser tests (tests/browser: the example site on its own SQLite file, in headless Chromium) run
## once, in the SQLite pass: the test database setting does not reach them.
test: $(VENV)/.installed services
	$(VENV)/bin/ruff check .
	$(MAKE) docs
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

## The manual (docs/) as HTML in docs/_build/html; every Sphinx warning is an error.
docs: $(VENV)/.installed
	$(VENV)/bin/sphinx-build -W --keep-going -b html docs docs/_build/html

## The benchmarks (bench/) against the local Redis and PostgreSQL; writes the results table into
## docs/_generated/benchmark-results.md (shown by docs/benchmarks.md), docs/benchmarks.png and bench/REPORT.md.
bench: $(VENV)/.bench-installed services
	$(PY) -m bench
