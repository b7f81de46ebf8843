# Paperboy: `make install`, then `make run` (the local stack) and `make test` (the whole suite).
# `make install` = `make system` (Debian packages and PostgREST, scripts/install_system.sh) + `make venv`.
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin

.PHONY: install system venv run test test-fast lint format typecheck bench smoke check-migrations worker api clean

install: system venv

system:
	bash scripts/install_system.sh

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements.lock
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

run: install
	$(PY) scripts/run_local.py

api: install
	$(BIN)/uvicorn paperboy_api.app:app --host 0.0.0.0 --port 8080 --http paperboy_api.protocol:Protocol

worker: install
	$(BIN)/python -m paperboy_worker

test: install
	$(BIN)/pytest

test-fast: install
	$(BIN)/pytest -m "not integration"

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: venv
	$(BIN)/mypy

check-migrations:
	bash scripts/check_migrations.sh

bench: install
	$(PY) -m bench

# One ranking, one analysis and one highlights call against the configured LLM provider.
smoke: venv
	$(PY) scripts/smoke.py

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
