# Tradelab: `make run` to try it, `make test` to check it. Nothing here needs more than pip,
# except the PostgreSQL binaries (initdb/pg_ctl) that `make test` starts a throwaway cluster from.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
PYTEST_ARGS ?=

.PHONY: run test test-sqlite test-postgres lint format install install-dev lock bench clean screenshots

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt | $(VENV)/bin/python
	$(PIP) install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements-dev.txt requirements.txt $(VENV)/.installed
	$(PIP) install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

## run: migrate, seed demo data on an empty database, and serve web + worker + live progress
run: install
	$(PY) manage.py migrate --no-input
	$(PY) manage.py seed_demo --if-empty
	$(PY) manage.py seed_research --if-empty
	$(PY) manage.py seed_study --if-empty
	$(PY) manage.py collectstatic --no-input -v0
	$(PY) -m config.serve

## test: lint, then the whole suite on SQLite and again on PostgreSQL. The two passes run at
## once (most of each is one busy core), each with a var/ directory of its own; each pass's
## output is printed whole when it ends.
test: install-dev lint
	$(MAKE) --no-print-directory --output-sync=target -j2 test-sqlite test-postgres

test-sqlite: install-dev
	@echo "=== test suite on SQLite ==="
	env -u DATABASE_URL TRADELAB_VAR_DIR=$(CURDIR)/var/test-sqlite $(PY) -m pytest $(PYTEST_ARGS)

# With DATABASE_URL set, use that server; otherwise start a throwaway cluster.
test-postgres: install-dev
	@echo "=== test suite on PostgreSQL ==="
ifdef DATABASE_URL
	TRADELAB_VAR_DIR=$(CURDIR)/var/test-postgres $(PY) -m pytest $(PYTEST_ARGS)
else
	TRADELAB_VAR_DIR=$(CURDIR)/var/test-postgres \
		$(PY) tests/run_with_postgres.py -- $(PY) -m pytest $(PYTEST_ARGS)
endif

lint: install-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .
	$(VENV)/bin/lint-imports

format: install-dev
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

## screenshots: the README's screenshots (docs/screenshots/), taken in chromium from a freshly
## seeded throwaway demo served as `make run` serves it
screenshots: install-dev
	$(PY) docs/screenshots.py

bench: install-dev
	$(PY) bench/ledger.py
	$(PY) bench/service.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
