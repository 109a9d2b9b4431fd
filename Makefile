# a0verify — every target sets itself up (local virtual environment in .venv).
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed-stamp
export NUMBA_CACHE_DIR ?= $(CURDIR)/.cache/numba
export MPLBACKEND ?= Agg

.PHONY: demo test test-fast test-all lint typecheck bench snakemake-lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,pdf]'
	touch $(STAMP)

## Quick start 1: make a synthetic case and run the whole pipeline on it.
demo: $(STAMP)
	$(BIN)/a0verify demo --out a0verify-demo

## Quick start 2: the test suite (what CI runs), then lint.
test: $(STAMP)
	$(BIN)/pytest -q -m "not slurm" --durations=15
	$(MAKE) --no-print-directory lint

test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not slow and not slurm"

test-all: $(STAMP)
	$(BIN)/pytest -q --durations=25

lint: $(STAMP)
	$(BIN)/ruff check a0verify tests benchmarks
	$(BIN)/mypy a0verify

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) .cache .pytest_cache .mypy_cache .ruff_cache a0verify-demo results .snakemake
