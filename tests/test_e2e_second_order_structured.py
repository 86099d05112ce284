"""Kron-OBS and EigenDamage through Snakemake's command line, shrunk: LeNet-5 on MNIST
(256 training images, one epoch), r = 2 plus the dense control.  Kron-OBS's mask job is
the updated-weights rule; EigenDamage's trains and evaluates the network it built.  The
compression table shows both with measured speed-ups (recorded, not asserted)."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

from conftest import REPO, run

pytestmark = pytest.mark.e2e


def test_kron_obs_and_eigendamage_reach_the_tables_with_measured_speedups(tmp_path, mnist_root, snakemake_bin):
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({
        "preset": "second_order_structured", "device": "cpu", "data_dir": str(mnist_root),
        "grid": {"archs": ["lenet5"], "datasets": ["mnist"], "pairs": None,
                 "methods": ["kron_obs", "eigendamage"], "ratios": [1, 2], "seeds": [0]},
        "train": {"epochs": 1, "train_subset": 256, "batch_size": 64}, "report": {"table_ratios": [2]}}))
    run([snakemake_bin, "-s", REPO / "Snakefile", "--directory", tmp_path, "--cores", "2"], timeout=1200)
    df = pd.read_parquet(tmp_path / "results" / "all.parquet").set_index("method")
    assert df.loc["kron_obs", "granularity"] == "filter" and df.loc["eigendamage", "granularity"] == "eigenbasis"
    for m in ("kron_obs", "eigendamage"):
        assert bool(df.loc[m, "slim_equal"]) and df.loc[m, "empirical_ratio"] >= 2
        assert df.loc[m, "measured_speedup_train"] > 0 and df.loc[m, "speedup"] > 1
    assert (tmp_path / "results" / "mnist" / "lenet5" / "seed0" / "kron_obs" / "r2" / "updated.pt").exists()
    table = (tmp_path / "reports" / "tables" / "mnist_lenet5.md").read_text()
    assert "| kron_obs | 2 |" in table and "| eigendamage | 2 |" in table and "eigenbasis" in table
