# botlib — one command for each job. Every target sets up what it needs.
#   make demo       the main job on the reference data (creates .venv on first use)
#   make test       lint, type-check and the whole test suite (what CI runs)
#   make bench      benchmarks (medians and ratios, printed)
#   make lint       ruff + mypy only
#   make format     apply ruff formatting and fixes
#   make clean      remove the virtualenv and caches (keeps mlruns/)

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install demo test lint format bench clean

help:
	@echo "make demo   - backtest the rule strategies on the reference data, write reports/demo.html"
	@echo "make test   - ruff, mypy and pytest (sets up .venv on first use)"
	@echo "make bench  - run the benchmarks in bench/"
	@echo "make lint   - ruff and mypy only"
	@echo "make format - apply ruff's formatting and safe fixes"
	@echo "make clean  - remove .venv and caches"

# The virtualenv is rebuilt only when pyproject.toml changes; a second call costs milliseconds.
$(STAMP): pyproject.toml
	@echo ">> creating $(VENV) and installing botlib with its pinned dependencies (first run: a few minutes)"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/botlib demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python bench/backtest.py
	$(BIN)/python bench/inference.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache reports .cache
