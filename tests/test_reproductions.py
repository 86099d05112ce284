"""docs/reproductions.md: made by `prunelib reproductions write` from eval rows on disk."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from prunelib import config

from prunelib.foundations import paths
from prunelib.foundations.artifacts import read_parquet_rows

from prunelib.report import reproductions

from cells import run_cell

REPO = Path(__file__).resolve().parents[1]

SHORT = (("train", {"steps": 6, "train_subset": 300}), ("eval", {"every_steps": 3, "keep_last": 2}))


def _run_cell(root: Path, rep, s, method: str, ratio: float, seed: int, data_path) -> dict:
    """One cell through the stage functions, its eval row at the path Snakemake would use."""
    folder = root / paths.CELL.format(dataset=rep.dataset, arch=rep.arch, seed=seed, method=method,
                                      ratio=config.format_ratio(ratio), variant="")
    cell = run_cell(root, data_path, s, rep.arch, method, ratio, seed, dataset=rep.dataset, folder=folder)
    return read_parquet_rows(cell.eval)[0]


def test_the_table_reports_final_and_best_of_checkpoints_errors_from_the_eval_rows_and_names_what_is_missing(
        tmp_path, mnist_pt):
    rep = reproductions.Reproduction("snip_short", "snip", "lenet300", "snip", (20,), (0, 1), dense_seeds=(0,),
                                     paper="SNIP", overrides=SHORT)
    s = reproductions.settings_of(rep)
    assert s.init.scheme == "variance_scaling" and s.train.steps == 6  # the preset, shortened
    snip = _run_cell(tmp_path, rep, s, "snip", 20, 0, mnist_pt)
    dense = _run_cell(tmp_path, rep, s, "dense", 1, 0, mnist_pt)
    table = {row["r"]: row for row in reproductions.rows(tmp_path, [rep])}
    assert set(table) == {"1", "20"}
    row = table["20"]
    assert row["seeds"] == "0" and row["not run / failed"] == "seed 1 not run"
    assert row["final error % (ours)"] == f"{100 * (1 - snip['top1']):.2f} (n = 1)"
    assert row["best-of-checkpoints error % (paper's metric)"] == f"{100 * (1 - snip['best_test_top1']):.2f} (n = 1)"
    assert row["kept / prunable"] == f"{snip['n_kept']:,} / {snip['n_prunable']:,}"
    assert "variance_scaling" in row["protocol"] and "biases pruned" in row["protocol"]
    assert "checkpoints every 3 steps, last 2" in row["protocol"]
    assert table["1"]["method"] == "dense" and table["1"]["final error % (ours)"].startswith(
        f"{100 * (1 - dense['top1']):.2f}")
    text = reproductions.write(tmp_path, tmp_path / "reproductions.md", [rep])
    assert (tmp_path / "reproductions.md").read_text() == text
    assert "| snip | lenet300 | snip | 20 | 95% |" in text and "`prunelib reproductions run snip_short`" in text


def test_a_row_made_with_other_settings_than_the_preset_now_states_is_shown_stale_not_counted(tmp_path, mnist_pt):
    made = reproductions.Reproduction("x", "snip", "lenet300", "snip", (20,), (0,), overrides=SHORT)
    _run_cell(tmp_path, made, reproductions.settings_of(made), "snip", 20, 0, mnist_pt)
    now = reproductions.Reproduction("x", "snip", "lenet300", "snip", (20,), (0,),
                                     overrides=(("train", {"steps": 7, "train_subset": 300}),) + SHORT[1:])
    (row,) = reproductions.rows(tmp_path, [now])
    assert row["final error % (ours)"] == "—" and "seed 0 stale" in row["not run / failed"]


def test_the_checked_in_table_matches_the_runs_and_presets_as_they_are_now():
    """docs/reproductions.md is regenerated from results; its protocols and commands must
    be those the runs and presets give now (a preset edited after the runs makes this
    fail until the table is regenerated)."""
    text = (REPO / reproductions.DOC).read_text()
    body = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| preset")]
    expected = [(rep, r) for rep in reproductions.RUNS for r in rep.ratios_shown()]
    assert len(body) == len(expected)
    for line, (rep, r) in zip(body, expected):
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        assert cells[:4] == [rep.preset, rep.arch, "dense" if r == 1 else rep.method, config.format_ratio(r)]
        assert cells[-2] == f"{rep.paper}: {reproductions.protocol(rep)}"
        assert cells[-1] == f"`{rep.command()}`"


def test_every_reproduction_is_a_valid_config_and_names_cells_of_its_grid():
    for rep in reproductions.RUNS:
        s = reproductions.settings_of(rep)
        grid_cells = {(c.arch, c.method, float(c.ratio), int(c.seed)) for c in config.cells(s)}
        for ratio, seed, path in rep.cells():
            cell = paths.parse_cell(Path(path).parent)
            assert (cell["arch"], cell["method"], float(cell["ratio"]), int(cell["seed"])) in grid_cells, path


def test_unknown_reproduction_is_one_line():
    with pytest.raises(SystemExit, match="unknown run 'nope'; allowed: snip_lenet300"):
        reproductions.get("nope")
