# Developer commands. `make test` installs what it needs (venv, packages, redis-server) first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: install system-deps lint format test-unit test-integration test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

STAMP := $(VENV)/.installed

$(STAMP): setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test,dev]'
	touch $(STAMP)

install: system-deps $(STAMP)

# redis-server is needed by the integration tests (and the demo).
system-deps:
	@command -v redis-server >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq redis-server; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq redis-server; fi; }

lint: $(STAMP)
	$(BIN)/ruff check workers tests celeryconfig.py
	$(BIN)/ruff format --check workers tests celeryconfig.py
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format workers tests celeryconfig.py
	$(BIN)/ruff check --fix workers tests celeryconfig.py

test-unit: $(STAMP)
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

test-integration: install
	$(BIN)/pytest tests/integration $(PYTEST_ARGS)

# The whole suite; pytest exits 5 when nothing ran, which fails the target like any error.
test: install
	$(BIN)/pytest $(PYTEST_ARGS)
