"""`prunelib audit rows`: two runs' eval rows compared column by column."""

from __future__ import annotations

from prunelib.audit import rows as compare_rows
from prunelib.foundations.artifacts import write_parquet

from conftest import PYTHON, run

ROW = {"dataset": "mnist", "arch": "lenet300", "method": "snip", "ratio": 16.0, "seed": 0, "variant": "none",
       "top1": 0.95, "n_kept": 16638, "train_seconds": 3.2, "torch_version": "2.14.1", "settings_hash": "abc"}


def test_timing_and_provenance_aside_identical_rows_are_identical(tmp_path):
    write_parquet([ROW, {**ROW, "seed": 1}], tmp_path / "a.parquet")
    write_parquet([{**ROW, "seed": 1, "train_seconds": 9.9}, {**ROW, "train_seconds": 1.0, "settings_hash": "def"}],
                  tmp_path / "b.parquet")
    rep = compare_rows.compare(tmp_path / "a.parquet", tmp_path / "b.parquet")
    assert rep["identical"] and rep["differing_provenance"] == {"settings_hash": 1}
    out = run([PYTHON, "-m", "prunelib", "audit", "rows", tmp_path / "a.parquet", tmp_path / "b.parquet"])
    assert "identical" in out.stdout


def test_a_changed_result_or_a_missing_cell_is_a_difference(tmp_path):
    write_parquet([ROW, {**ROW, "seed": 1}], tmp_path / "a.parquet")
    write_parquet([{**ROW, "n_kept": 16639}], tmp_path / "b.parquet")
    rep = compare_rows.compare(tmp_path / "a.parquet", tmp_path / "b.parquet")
    assert not rep["identical"] and rep["differing_columns"] == {"n_kept": 1} and rep["only_in_a"] == 1
    proc = run([PYTHON, "-m", "prunelib", "audit", "rows", tmp_path / "a.parquet", tmp_path / "b.parquet"],
               check=False)
    assert proc.returncode == 1 and "n_kept: differs in 1 rows" in proc.stdout
