"""The reproduction ledger: finished cells' rows kept in git, read where results/ lacks them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from prunelib import config
from prunelib.foundations import paths
from prunelib.foundations.artifacts import ChecksumError
from prunelib.report import ledger, reproductions

from cells import run_cell

REPO = Path(__file__).resolve().parents[1]
SHORT = (("train", {"steps": 6, "train_subset": 300}), ("eval", {"every_steps": 3, "keep_last": 2}))


def _rep(steps: int = 6):
    over = (("train", {"steps": steps, "train_subset": 300}),) + SHORT[1:]
    return reproductions.Reproduction("snip_short", "snip", "lenet300", "snip", (20,), (0, 1), dense_seeds=(0,),
                                      paper="SNIP", paper_key="snip", overrides=over)


def _run(root: Path, rep, method: str, ratio: float, seed: int, data_path) -> Path:
    s = reproductions.settings_of(rep)
    folder = root / paths.CELL.format(dataset=rep.dataset, arch=rep.arch, seed=seed, method=method,
                                      ratio=config.format_ratio(ratio), variant="")
    cell = run_cell(root, data_path, s, rep.arch, method, ratio, seed, dataset=rep.dataset, folder=folder)
    bench = root / paths.benchmark("train", paths.CELL_ID.format(dataset=rep.dataset, arch=rep.arch, seed=seed,
                                                                 method=method, ratio=config.format_ratio(ratio),
                                                                 variant=""))
    bench.parent.mkdir(parents=True, exist_ok=True)
    bench.write_text("s\th:m:s\n754.0\t0:12:34\n")  # what Snakemake's benchmark directive writes
    return Path(cell.eval)


@pytest.fixture(scope="module")
def ran(tmp_path_factory, mnist_pt):
    """One results folder with two of the reproduction's cells (snip r = 20 seed 0, dense seed 0)."""
    root = tmp_path_factory.mktemp("ran")
    rep = _rep()
    _run(root, rep, "snip", 20, 0, mnist_pt)
    _run(root, rep, "dense", 1, 0, mnist_pt)
    return root, rep


def test_kept_rows_make_the_same_table_as_the_results_they_were_kept_from(ran, tmp_path):
    root, rep = ran
    book = tmp_path / "ledger.parquet"
    counts = ledger.keep(root, book, reproductions.page_paths([rep], with_study=False))
    assert (counts["new"], counts["same"], counts["replaced"], counts["total"]) == (4, 0, 0, 4)  # 2 evals, 2 times
    from_disk = reproductions.rows(root, [rep])
    empty = tmp_path / "fresh_clone"
    empty.mkdir()
    from_ledger = reproductions.rows(ledger.Cells(empty, book), [rep])
    assert from_ledger == from_disk
    (row,) = [r for r in from_ledger if r["r (sparsity)"] == "20 (95%)"]
    assert row["seeds (time per seed)"].startswith("0 (n = 1); seed 1 not run; one seed ≈ 12.6 min")
    # without the ledger the fresh clone has nothing
    assert all(r["ours: final error %"] == "—" for r in reproductions.rows(empty, [rep]))
    text = reproductions.write(empty, tmp_path / "page.md", [rep], study=False, ledger=book)
    assert "**Read:** 0 artifacts read from" in text and "2 from the ledger" in text


def test_keeping_again_adds_nothing_and_rewrites_nothing(ran, tmp_path):
    root, rep = ran
    book = tmp_path / "ledger.parquet"
    ledger.keep(root, book, reproductions.page_paths([rep], with_study=False))
    before = book.read_bytes()
    counts = ledger.keep(root, book, reproductions.page_paths([rep], with_study=False))
    assert (counts["new"], counts["same"], counts["replaced"]) == (0, 4, 0)
    assert book.read_bytes() == before


def test_a_flipped_byte_in_the_ledger_is_refused(ran, tmp_path):
    root, rep = ran
    book = tmp_path / "ledger.parquet"
    ledger.keep(root, book, reproductions.page_paths([rep], with_study=False))
    data = bytearray(book.read_bytes())
    data[len(data) // 2] ^= 0x01
    book.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match="checksum mismatch"):
        ledger.Cells(tmp_path, book)


def test_a_corrupted_result_is_refused_not_kept(ran, tmp_path):
    root, rep = ran
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    (ev,) = [p for p in copy.rglob("eval.parquet") if "/snip/" in str(p)]
    data = bytearray(ev.read_bytes())
    data[100] ^= 0x01
    ev.write_bytes(bytes(data))
    counts = ledger.keep(copy, tmp_path / "ledger.parquet", reproductions.page_paths([rep], with_study=False))
    assert counts["new"] == 3 and len(counts["refused"]) == 1 and "checksum mismatch" in counts["refused"][0]
    assert str(ev.relative_to(copy)) not in ledger.read(tmp_path / "ledger.parquet")


def test_results_made_with_other_settings_do_not_hide_kept_rows_and_stale_kept_rows_are_not_results(
        ran, tmp_path, mnist_pt):
    root, rep = ran
    book = tmp_path / "ledger.parquet"
    ledger.keep(root, book, reproductions.page_paths([rep], with_study=False))
    # another results/ holds the same cells made with other settings (7 steps): the kept rows win
    other = _rep(steps=7)
    elsewhere = tmp_path / "elsewhere"
    _run(elsewhere, other, "snip", 20, 0, mnist_pt)
    assert "seed 0 stale" in reproductions.rows(elsewhere, [rep])[1]["seeds (time per seed)"]
    assert reproductions.rows(ledger.Cells(elsewhere, book), [rep]) == reproductions.rows(root, [rep])
    # and kept rows made with other settings than asked are stale, not results
    empty = tmp_path / "empty"
    empty.mkdir()
    (row,) = [r for r in reproductions.rows(ledger.Cells(empty, book), [other]) if r["r (sparsity)"] == "20 (95%)"]
    assert row["ours: final error %"] == "—" and "seed 0 stale" in row["seeds (time per seed)"]


def test_the_committed_ledger_verifies_and_holds_only_what_the_page_reads():
    kept = ledger.read(REPO / ledger.LEDGER)
    assert kept, "docs/reproductions/ledger.parquet is empty"
    assert set(kept) <= set(reproductions.page_paths())


def test_run_leaves_out_the_cells_the_ledger_keeps_with_the_settings_asked_for(ran, tmp_path, capsys):
    root, rep = ran
    book = tmp_path / "ledger.parquet"
    ledger.keep(root, book, reproductions.page_paths([rep], with_study=False))
    from prunelib.config import contracts

    s, other = reproductions.settings_of(rep), reproductions.settings_of(_rep(steps=7))
    (path,) = [p for r, seed, v, p in rep.variant_cells() if r == 20 and seed == 0]
    (unrun,) = [p for r, seed, v, p in rep.variant_cells() if r == 20 and seed == 1]
    hash_of = lambda st, seed: contracts.eval_contract(st, "lenet300", "mnist", "snip", 20, seed, "none").cell_hash
    targets = [(path, hash_of(s, 0)), (unrun, hash_of(s, 1))]
    assert ledger.not_kept(targets, book, "run") == [unrun]
    assert "1 of 2 cells are kept" in capsys.readouterr().out
    assert ledger.not_kept([(path, hash_of(other, 0))], book, "run") == [path]  # kept with other settings: run
    assert ledger.not_kept(targets, None, "run") == [path, unrun]
