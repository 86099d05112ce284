"""The `structured` preset through Snakemake's command line, shrunk: LeNet-5 on the
synthetic CIFAR-10 stand-in, L1-norm filter pruning at r = 2 plus the dense control, one
seed, 256 training images.  The compression table shows the measured speed-ups beside
the theoretical one and names the device; the eval row says the slimmed network equals
the masked one.  The speed-ups are recorded, not asserted."""

from __future__ import annotations

import re
import pandas as pd
import pytest
import yaml

from conftest import REPO, run

pytestmark = pytest.mark.e2e

CONFIG = {
    "preset": "structured",
    "device": "cpu",
    "grid": {"archs": ["lenet5"], "datasets": ["synthetic_cifar10"], "methods": ["global_l1_filter"],
             "ratios": [1, 2], "seeds": [0]},
    "train": {"epochs": 1, "train_subset": 256, "batch_size": 64},
    "report": {"table_ratios": [2]},
}


def test_structured_preset_tables_show_measured_speedups_with_the_device(tmp_path, snakemake_bin):
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({**CONFIG, "data_dir": str(tmp_path / "data")}))
    run([snakemake_bin, "-s", REPO / "Snakefile", "--directory", tmp_path, "--cores", "2"], timeout=600)
    df = pd.read_parquet(tmp_path / "results" / "all.parquet")
    row = df[df["method"] == "global_l1_filter"].iloc[0]
    assert row["granularity"] == "filter" and bool(row["slim_equal"]) and row["slim_max_abs_diff"] <= 1e-5
    for c in ("measured_speedup_infer_b1", "measured_speedup_infer_b256", "measured_speedup_train"):
        assert row[c] > 0
    table = (tmp_path / "reports" / "tables" / "synthetic_cifar10_lenet5.md").read_text()
    assert f"measured speed-ups (dense time / pruned time) on {row['measure_device']}" in table
    assert "measured × infer b256" in table and "speed-up (MACs)" in table
    comp = pd.read_csv(tmp_path / "reports" / "tables" / "synthetic_cifar10_lenet5_compression.csv")
    cell = comp.loc[comp["method"] == "global_l1_filter", "measured × train step"].iloc[0]
    assert re.fullmatch(r"\d+\.\d\d× \(IQR \d+\.\d\d\)", cell), cell  # one seed: never marked
    assert row["measured_speedup_train_repeats"] >= 1 and row["measured_speedup_train_iqr"] >= 0
