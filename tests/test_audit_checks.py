"""Each check `prunelib audit` makes, on cells built in-process by the stage functions
(seconds, no Snakemake): every corruption is written with a consistent checksum, so
only the content check under test can catch it, and exactly that check fails."""

from __future__ import annotations

import shutil

import pytest
import yaml

from prunelib import config, stages

from prunelib.audit import checks as audit
from prunelib.config import contracts
from prunelib.foundations.artifacts import load_pt, read_parquet_rows, save_pt, write_parquet
from prunelib.methods.masking import kept_count

from cells import settings

N = 266_200
SETTINGS = settings(train={"epochs": 1, "train_subset": 256, "batch_size": 64})


@pytest.fixture(scope="module")
def cells(tmp_path_factory, mnist_pt):
    """results-like folder with global_magnitude at r = 16 and r = 4 (shared init and
    scores) and a layer_magnitude mask at r = 16."""
    root = tmp_path_factory.mktemp("audit_cells")
    s, seed = SETTINGS, 0
    init, scores = root / "init.pt", root / "scores.pt"
    stages.run_init(contracts.init_contract(s, "lenet300", "mnist", seed, "pytorch_default"), init,
                    root / "init.parquet")
    stages.run_score(contracts.score_contract(s, "global_magnitude", seed), init, mnist_pt, scores)
    for r in (16, 4):
        d = root / f"r{r}"
        stages.run_mask(contracts.mask_contract(s, "global_magnitude", r, seed), init, scores, d / "mask.pt",
                        d / "mask.parquet")
        stages.run_train(contracts.train_contract(s, "global_magnitude", r, seed, "mnist"), init, d / "mask.pt",
                         mnist_pt, d / "final.pt", d / "train_log.parquet")
        stages.run_eval(contracts.eval_contract(s, "lenet300", "mnist", "global_magnitude", r, seed),
                        d / "final.pt", d / "mask.pt", mnist_pt, d / "eval.parquet")
    stages.run_mask(contracts.mask_contract(s, "layer_magnitude", 16, seed), init, scores,
                    root / "layer" / "mask.pt", root / "layer" / "mask.parquet")
    return root


@pytest.fixture
def cell(cells, tmp_path):
    dst = tmp_path / "cell"
    shutil.copytree(cells / "r16", dst)
    return dst


def failed_checks(cell) -> dict:
    rep = audit.audit_run(cell)
    return {r["check"]: r["detail"] for r in rep["checks"] if r["status"] == "FAIL"}


def test_the_untouched_cells_pass_every_check(cells):
    for name in ("r16", "r4"):
        rep = audit.audit_run(cells / name)
        assert rep["ok"], rep["checks"]
        assert {r["check"] for r in rep["checks"]} >= {
            "mask.pt keeps round(n / r)", "mask.parquet agrees with mask.pt",
            "every pruned weight of final.pt is exactly zero", "final.pt was trained with this mask.pt (meta)",
            "eval row counts match mask.pt", "eval row method/ratio/seed match mask.pt",
            "eval row n_nonzero_prunable matches final.pt", "train_log.parquet has one row per epoch"}
    rep = audit.audit_mask(cells / "layer" / "mask.pt")
    assert rep["problems"] == [] and rep["parquet_check"] == "ok"


def _drop_one_kept_weight(path, name="fc1.weight") -> None:
    """Prune one more weight of ``name`` and keep the mask's meta and table consistent with it."""
    blob = load_pt(path)
    m = blob["masks"][name]
    m.view(-1)[int(m.view(-1).nonzero()[0])] = False
    blob["meta"]["n_kept"] -= 1
    save_pt(blob, path)
    table = path.with_name("mask.parquet")
    rows = read_parquet_rows(table)
    for r in rows:
        if r["name"] == name:
            r["kept"] -= 1
    write_parquet(rows, table)


def test_a_mask_one_weight_short_of_round_n_over_r_fails_the_count_check(cell):
    _drop_one_kept_weight(cell / "mask.pt")
    rep = audit.audit_mask(cell / "mask.pt")
    k = kept_count(N, 16)
    assert rep["problems"] == [f"{cell / 'mask.pt'}: keeps {k - 1} of {N}, round(n / r) = {k} at r = 16"]
    failed = failed_checks(cell)
    assert failed["mask.pt keeps round(n / r)"] == f"keeps {k - 1} of {N}, round(n / r) = {k} at r = 16"
    assert "mask.parquet agrees with mask.pt" not in failed


def test_a_layer_mask_is_counted_per_tensor(cells, tmp_path):
    shutil.copytree(cells / "layer", tmp_path / "layer")
    path = tmp_path / "layer" / "mask.pt"
    # move one kept weight from fc1 to fc2: the total is still right, fc1 and fc2 are not
    _drop_one_kept_weight(path, "fc1.weight")
    blob = load_pt(path)
    m = blob["masks"]["fc2.weight"]
    m.view(-1)[int((~m).view(-1).nonzero()[0])] = True
    blob["meta"]["n_kept"] += 1
    save_pt(blob, path)
    rows = read_parquet_rows(path.with_name("mask.parquet"))
    rows[1]["kept"] += 1
    write_parquet(rows, path.with_name("mask.parquet"))
    problems = audit.audit_mask(path)["problems"]
    assert problems == [
        f"{path}: fc1.weight keeps {kept_count(235_200, 16) - 1} of 235200, round(n / r) = {kept_count(235_200, 16)}",
        f"{path}: fc2.weight keeps {kept_count(30_000, 16) + 1} of 30000, round(n / r) = {kept_count(30_000, 16)}"]


def test_a_mask_table_that_disagrees_with_the_mask_is_found(cell):
    rows = read_parquet_rows(cell / "mask.parquet")
    rows[2]["kept"] += 1
    write_parquet(rows, cell / "mask.parquet")
    rep = audit.audit_mask(cell / "mask.pt")
    assert rep["parquet_check"] == "MISMATCH" and len(rep["problems"]) == 1
    assert "fc3.weight says kept" in rep["problems"][0]
    assert failed_checks(cell) == {"mask.parquet agrees with mask.pt": "differs for fc3.weight"}


def test_a_final_pt_trained_with_another_mask_is_found(cell, cells):
    blob = load_pt(cell / "final.pt")
    blob["meta"]["mask"] = load_pt(cells / "r4" / "mask.pt")["meta"]
    save_pt(blob, cell / "final.pt")
    # (the eval row's lineage no longer matches the rewritten final.pt either)
    assert list(failed_checks(cell)) == ["final.pt was trained with this mask.pt (meta)",
                                         "eval row final_sha256 is final.pt on disk"]
    # the other cell's final.pt itself: its extra weights are non-zero too
    shutil.copy(cells / "r4" / "final.pt", cell / "final.pt")
    shutil.copy(cells / "r4" / "final.pt.sha256", cell / "final.pt.sha256")
    failed = failed_checks(cell)
    assert {"final.pt was trained with this mask.pt (meta)", "every pruned weight of final.pt is exactly zero",
            "eval row n_nonzero_prunable matches final.pt", "eval row final_sha256 is final.pt on disk"} == set(failed)


@pytest.mark.parametrize("change, check", [
    ({"ratio": 4.0}, "eval row method/ratio/seed match mask.pt"),
    ({"seed": 1}, "eval row method/ratio/seed match mask.pt"),
    ({"method": "snip"}, "eval row method/ratio/seed match mask.pt"),
    ({"n_kept": kept_count(N, 16) + 1}, "eval row counts match mask.pt"),
    ({"n_nonzero_prunable": 1}, "eval row n_nonzero_prunable matches final.pt"),
])
def test_a_mismatched_eval_row_is_found(cell, change, check):
    row = read_parquet_rows(cell / "eval.parquet")[0]
    write_parquet([{**row, **change}], cell / "eval.parquet")
    assert list(failed_checks(cell)) == [check]


def test_a_train_log_out_of_epoch_order_is_found(cell):
    rows = read_parquet_rows(cell / "train_log.parquet")
    write_parquet([{**rows[0], "epoch": 2}, {**rows[0], "epoch": 1}], cell / "train_log.parquet")
    assert list(failed_checks(cell)) == ["train_log.parquet has one row per epoch"]


def test_a_missing_or_changed_artifact_is_named(cell):
    (cell / "train_log.parquet").unlink()
    assert failed_checks(cell) == {"train_log.parquet present": "missing"}
    data = bytearray((cell / "mask.parquet").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (cell / "mask.parquet").write_bytes(bytes(data))
    failed = failed_checks(cell)
    assert failed["mask.parquet intact"].startswith(f"{cell / 'mask.parquet'}: checksum mismatch")


def test_audit_grid_tells_complete_stale_failed_and_missing_apart(tmp_path):
    cfg = {"preset": "fast", "grid": {"archs": ["lenet300"], "datasets": ["mnist"], "methods": ["snip"],
                                      "ratios": [1, 4, 16], "seeds": [0, 1]}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    s = config.load(tmp_path / "config.yaml")
    rels = {}
    for c in config.cells(s):
        rels[(c.seed, c.method, c.ratio)] = (f"{c.dataset}/{c.arch}/seed{c.seed}/{c.method}/r{c.ratio}",
                                             contracts.eval_contract(s, c.arch, c.dataset, c.method, float(c.ratio),
                                                                     c.seed, c.variant).cell_hash)
    res = tmp_path / "results"

    def row(key, **kw):
        rel, h = rels[key]
        write_parquet([{"status": "ok", "settings_hash": h, **kw}], res / rel / "eval.parquet")

    row((0, "dense", "1"))                                   # complete
    row((0, "snip", "4"), settings_hash="0123456789ab")      # stale
    row((0, "snip", "16"), status="failed")                  # failed: diverged
    log = res / "logs" / "train" / f"{rels[(1, 'dense', '1')][0]}.log"
    log.parent.mkdir(parents=True)
    log.write_text("epoch 1\nRuntimeError: out of memory\n")  # failed: started, no eval row
    (res / rels[(1, "snip", "4")][0]).mkdir(parents=True)
    (res / rels[(1, "snip", "4")][0] / "eval.parquet").write_bytes(b"PAR1 cut")  # failed: unreadable
    # (fast: the states alone; checksums of the grid are tests/test_verified_reads.py's)
    rep = audit.audit_grid(tmp_path / "config.yaml", tmp_path, fast=True)
    states = {c["cell"]: (c["state"], c["detail"]) for c in rep["cells"]}
    assert rep["counts"] == {"complete": 1, "stale": 1, "failed": 3, "missing": 1, "corrupted": 0}
    assert states[rels[(0, "snip", "4")][0]][0] == "stale"
    assert states[rels[(0, "snip", "16")][0]] == ("failed", "status failed")
    assert states[rels[(1, "dense", "1")][0]] == ("failed", "train job left no output: RuntimeError: out of memory")
    assert states[rels[(1, "snip", "4")][0]][0] == "failed"
    assert "not a readable Parquet file" in states[rels[(1, "snip", "4")][0]][1]
    assert states[rels[(1, "snip", "16")][0]] == ("missing", "")
    assert "6 cells: 1 complete, 1 stale, 3 failed, 1 missing" in audit.render_grid(rep)
