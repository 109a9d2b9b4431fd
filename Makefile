# a0verify — every target sets itself up (local virtual environment in .venv).
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed-stamp
export NUMBA_CACHE_DIR ?= $(CURDIR)/.cache/numba
export MPLBACKEND ?= Agg

.PHONY: demo test test-fast test-all test-slurm test-pacs lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,pdf,batch,dicom]'
	touch $(STAMP)

## Quick start 1: make a synthetic case and run the whole pipeline on it.
demo: $(STAMP)
	$(BIN)/a0verify demo --out a0verify-demo

## Quick start 2: lint, then the test suite (what CI runs).
test: $(STAMP)
	$(MAKE) --no-print-directory lint
	$(BIN)/pytest -q -m "not slurm" --durations=15

test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not slow and not slurm"

test-all: $(STAMP)
	$(BIN)/pytest -q --durations=25

## Real Slurm run: installs slurm-wlm + munge, starts a one-node cluster (skips if it cannot).
test-slurm: $(STAMP)
	$(BIN)/pytest -q -rs -m slurm tests/test_slurm.py

## DICOM outputs through a real Orthanc (Debian packages orthanc, dicom3tools; skips with the reason).
test-pacs: $(STAMP)
	$(BIN)/pytest -q -rs tests/test_pacs.py

lint: $(STAMP)
	$(BIN)/ruff check a0verify tests benchmarks
	$(BIN)/mypy a0verify

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) .cache .pytest_cache .mypy_cache .ruff_cache a0verify-demo results .snakemake
