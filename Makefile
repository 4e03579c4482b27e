# `make run` starts Switchboard on SQLite; `make test` runs the whole suite.
# Both create .venv and install what is missing first.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
POSTGRES_TEST_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/switchboard_test

.PHONY: run test install install-dev static clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet --editable .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet --editable '.[dev]'
	touch $@ $(VENV)/.installed

static/node_modules/.package-lock.json: static/package.json static/package-lock.json
	cd static && npm ci --no-audit --no-fund --loglevel=error

static: static/node_modules/.package-lock.json

install: $(VENV)/.installed static

install-dev: $(VENV)/.installed-dev static

run: install
	$(BIN)/switchboard run

# In CI (CI=true) the suite runs twice: on SQLite, then on PostgreSQL from the migrations.
# The tests run in one process per CPU (pytest-xdist); a file's tests stay in one process,
# so module fixtures such as a Dovecot server start once. TEST_WORKERS=0 runs them serially.
TEST_WORKERS ?= auto
PYTEST := $(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile

test: install-dev
	$(PYTEST)
ifeq ($(CI),true)
	SWITCHBOARD_TEST_DATABASE_URL=$(POSTGRES_TEST_URL) $(PYTEST)
endif

clean:
	rm -rf $(VENV) static/node_modules .pytest_cache
