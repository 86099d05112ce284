"""Cluster submission without a cluster: the test-cluster profile (cluster-generic
executor, each submission a background process on this machine).

One small grid, with one cell's mask truncated on purpose so that its train job fails:
the failure is reported with the job's log path, every other cell completes (keep-going),
and grouping sends many jobs per submission.
"""

from __future__ import annotations

import os
import re

import pytest
import yaml

from conftest import REPO, run

pytestmark = pytest.mark.e2e

GRID = {"archs": ["lenet300"], "datasets": ["mnist"], "methods": ["snip"], "ratios": [1, 4, 16],
        "seeds": [0, 1]}
BROKEN = "results/mnist/lenet300/seed1/snip/r16"
N_CELLS = 2 * (1 + 2)  # seeds x (dense + 1 method x 2 pruned ratios)


@pytest.fixture(scope="module")
def cluster_run(tmp_path_factory, mnist_root):
    from conftest import SNAKEMAKE

    wd = tmp_path_factory.mktemp("cluster")
    (wd / "config.yaml").write_text(yaml.safe_dump({
        "preset": "fast", "data_dir": str(mnist_root), "grid": GRID,
        "train": {"train_subset": 1000}}))
    # the profile names its scripts relative to the repository root, where users run it
    os.symlink(REPO / "workflow", wd / "workflow")
    base = [SNAKEMAKE, "-s", REPO / "Snakefile", "--directory", wd]
    run(base + ["--cores", "2", f"{BROKEN}/mask.pt"])
    with open(wd / BROKEN / "mask.pt", "r+b") as fh:   # a corrupted artifact: its train job fails
        fh.truncate(100)
    # status.sh is a file check, so poll it every second, not every 10 s (Snakemake's default
    # for real schedulers), which left both slots idle most of the run
    out = run(base + ["--profile", REPO / "workflow/profiles/test-cluster", "--seconds-between-status-checks", "1"],
              check=False, timeout=900)
    return wd, out


def test_the_failed_job_is_reported_with_its_log_path(cluster_run):
    wd, out = cluster_run
    assert out.returncode != 0
    text = out.stdout + out.stderr
    assert "Error in rule train" in text or "Error in group" in text
    assert "results/logs/train/mnist/lenet300/seed1/snip/r16.log" in text


def test_every_other_cell_completes(cluster_run):
    wd, _ = cluster_run
    cells = sorted(str(p.parent.relative_to(wd)) for p in wd.glob("results/mnist/**/eval.parquet"))
    assert len(cells) == N_CELLS - 1
    assert BROKEN not in cells


def test_grouping_reduces_submissions(cluster_run):
    wd, out = cluster_run
    submissions = (wd / ".snakemake/test-cluster/submissions.log").read_text().splitlines()
    jobs = len(re.findall(r"^\s*rule (init|score|mask|train|eval):", out.stdout + out.stderr, re.M))
    # init 2 + score 2 + (mask, train, eval) of every cell, less the mask made up front and
    # the broken cell's eval, which never ran
    assert jobs >= 2 + 2 + 3 * N_CELLS - 2
    # one submission per init/score job and one per cell (its mask, train and eval together)
    assert len(submissions) <= 2 + 2 + N_CELLS
    assert len(submissions) < jobs / 2
