# botlib — one command for each job. Every target sets up what it needs.
#   make demo       the main job on the reference data (creates .venv on first use)
#   make test       lint, type-check and the whole test suite (what CI runs)
#   make bench      benchmarks (medians and ratios, printed)
#   make lab        JupyterLab on notebooks/
#   make mlflow-ui  the MLflow UI on the sqlite store
#   make lint       ruff, mypy and the import layers (lint-imports)
#   make format     apply ruff formatting and fixes
#   make clean      remove the virtualenv and caches (keeps mlruns/)

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install redis demo test lint format bench lab mlflow-ui clean

help:
	@echo "make demo   - backtest the rule strategies on the reference data, write reports/demo.html"
	@echo "make test   - ruff, mypy and pytest (sets up .venv on first use)"
	@echo "make bench  - run the benchmarks in bench/"
	@echo "make lab    - JupyterLab on notebooks/ at 127.0.0.1:8888 (LAB_PORT=…), root included"
	@echo "make mlflow-ui - the MLflow UI on 127.0.0.1:5000 (MLFLOW_PORT=…; sqlite store in mlruns/)"
	@echo "make lint   - ruff, mypy and the package's import layers"
	@echo "make format - apply ruff's formatting and safe fixes"
	@echo "make clean  - remove .venv and caches"

# The virtualenv is rebuilt only when pyproject.toml changes; a second call costs milliseconds.
$(STAMP): pyproject.toml
	@echo ">> creating $(VENV) and installing botlib with its pinned dependencies (first run: a few minutes)"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# The Node.js stand-in for the TypeScript backend (tests/backend), from its lockfile.
NODE_STAMP := tests/backend/node_modules/.installed
$(NODE_STAMP): tests/backend/package-lock.json
	cd tests/backend && npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

# redis-server 7+ (users per role need it): Debian's, installed as root if missing.
redis:
	@bash scripts/ensure-redis.sh

install: $(STAMP) redis

demo: $(STAMP) redis
	$(BIN)/botlib demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint redis $(NODE_STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python bench/backtest.py
	$(BIN)/python bench/inference.py
	$(BIN)/python bench/signal_loop.py
	$(BIN)/python bench/optimize.py
	$(BIN)/python bench/fast_path.py
	$(BIN)/python bench/streaming_features.py
	$(BIN)/python bench/registry_watch.py
	$(BIN)/python bench/bridge.py

LAB_PORT ?= 8888
MLFLOW_PORT ?= 5000

# JupyterLab for any user, root included (containers run as root); it prints the URL
# with its access token once it is up.
lab: $(STAMP)
	@echo ">> JupyterLab on http://127.0.0.1:$(LAB_PORT)/lab (the URL with its token follows); Ctrl-C stops it"
	$(BIN)/jupyter lab --notebook-dir=notebooks --ip=127.0.0.1 --port=$(LAB_PORT) \
		--no-browser $(if $(filter 0,$(shell id -u)),--allow-root,)

# The MLflow UI on the project's sqlite store; one worker and no job runner
# (the defaults start ~10 processes and ~2.8 GB on 2 cores).
mlflow-ui: $(STAMP)
	mkdir -p mlruns/artifacts
	@echo ">> the MLflow UI: open http://127.0.0.1:$(MLFLOW_PORT) (Ctrl-C stops it)"
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(BIN)/mlflow server \
		--backend-store-uri sqlite:///mlruns/mlflow.db \
		--default-artifact-root $(CURDIR)/mlruns/artifacts \
		--host 127.0.0.1 --port $(MLFLOW_PORT) --workers 1

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache reports .cache
