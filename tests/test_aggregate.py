"""Tables checked against values computed by hand from small eval rows."""

import math

import pandas as pd
import pytest

from prunelib import aggregate


def _rows():
    rows = []
    for seed, (d, s4, s16) in enumerate([(0.98, 0.90, 0.50), (0.96, 0.92, 0.70), (0.97, 0.94, 0.60)]):
        rows.append({"dataset": "mnist", "arch": "lenet5", "method": "dense", "ratio": 1.0, "seed": seed,
                     "top1": d, "top5": 1.0})
        rows.append({"dataset": "mnist", "arch": "lenet5", "method": "snip", "ratio": 4.0, "seed": seed,
                     "top1": s4, "top5": 0.99})
        rows.append({"dataset": "mnist", "arch": "lenet5", "method": "snip", "ratio": 16.0, "seed": seed,
                     "top1": s16, "top5": 0.95})
    rows.append({"dataset": "mnist", "arch": "lenet5", "method": "random", "ratio": 4.0, "seed": 0,
                 "top1": 0.8, "top5": 0.97})
    return pd.DataFrame(rows)


def test_cell_is_mean_sample_std_and_n():
    assert aggregate.fmt_cell([0.90, 0.92, 0.94]) == "92.00 ± 2.00 (3)"      # std with n - 1
    assert aggregate.fmt_cell([0.50, 0.70, 0.60]) == "60.00 ± 10.00 (3)"
    assert aggregate.fmt_cell([0.8]) == "80.00 ± – (1)"
    assert aggregate.fmt_cell([]) == ""


def test_blalock_table_layout():
    t = aggregate.blalock_table(_rows(), "top1")
    assert list(t.index) == ["dense", "random", "snip"]          # dense first, then registry order
    assert list(t.columns) == ["r=1", "r=4", "r=16"]
    assert t.loc["dense", "r=1"] == "97.00 ± 1.00 (3)"
    assert t.loc["snip", "r=4"] == "92.00 ± 2.00 (3)"
    assert t.loc["random", "r=4"] == "80.00 ± – (1)"
    assert t.loc["random", "r=16"] == "—"


def test_run_writes_tables_and_figures(tmp_path):
    paths = []
    for i, row in _rows().iterrows():
        p = tmp_path / f"e{i}.parquet"
        pd.DataFrame([row]).to_parquet(p)
        paths.append(str(p))
    aggregate.run(paths, str(tmp_path / "all.parquet"), str(tmp_path / "reports"))
    assert len(pd.read_parquet(tmp_path / "all.parquet")) == 10
    md = (tmp_path / "reports/tables/mnist_lenet5.md").read_text()
    assert "| snip | — | 92.00 ± 2.00 (3) | 60.00 ± 10.00 (3) |" in md
    tex = (tmp_path / "reports/tables/mnist_lenet5_top1.tex").read_text()
    assert r"92.00 $\pm$ 2.00 (3)" in tex and r"\begin{tabular}{lrrr}" in tex
    assert (tmp_path / "reports/figures/mnist_lenet5_accuracy.png").stat().st_size > 10_000
    assert (tmp_path / "reports/figures/mnist_lenet5_accuracy.svg").exists()
