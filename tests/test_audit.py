"""`prunelib audit` on a real small run (Snakemake CLI, lenet300, snip, r = 16, one seed,
1,000 training images), on corrupted copies of it and on nonsense paths; and the HTML
report of the same run."""

from __future__ import annotations

import json
from pathlib import Path
import shutil

import pytest
import torch
import yaml

from prunelib.cli import main as cli
from prunelib.foundations.artifacts import load_pt, save_pt

from conftest import PYTHON, REPO, SNAKEMAKE, run

pytestmark = pytest.mark.e2e

SMALL = {
    "preset": "fast", "device": "cpu",
    "grid": {"archs": ["lenet300"], "datasets": ["mnist"], "methods": ["snip"], "ratios": [1, 16], "seeds": [0]},
    "train": {"epochs": 1, "train_subset": 1000, "batch_size": 100},
}
CELL = "results/mnist/lenet300/seed0/snip/r16"


@pytest.fixture(scope="module")
def small_run(tmp_path_factory, mnist_root):
    wd = tmp_path_factory.mktemp("audit")
    (wd / "config.yaml").write_text(yaml.safe_dump({**SMALL, "data_dir": str(mnist_root)}))
    run([SNAKEMAKE, "-s", REPO / "Snakefile", "--directory", wd, "--cores", "2"], timeout=600)
    return wd


def audit(capsys, *args):
    """Run `prunelib audit ...` in-process; (exit code, stdout, stderr)."""
    try:
        rc = cli.main(["audit", *map(str, args)])
    except SystemExit as exc:
        rc = exc.code
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_every_artifact_has_a_checksum_sidecar(small_run):
    cell = small_run / CELL
    for name in ("mask.pt", "mask.parquet", "final.pt", "train_log.parquet", "eval.parquet"):
        digest, fname = (cell / f"{name}.sha256").read_text().split()
        assert fname == name and len(digest) == 64


def test_audit_mask(small_run, capsys):
    rc, out, _ = audit(capsys, "mask", small_run / CELL / "mask.pt", "--json")
    rep = json.loads(out)
    assert rc == 0 and rep["checksum"] == "ok" and rep["parquet_check"] == "ok"
    assert [t["name"] for t in rep["tensors"]] == ["fc1.weight", "fc2.weight", "fc3.weight"]
    assert rep["n_prunable"] == 266_200 and rep["kept"] == round(266_200 / 16)
    assert rep["r_e"] == pytest.approx(266_200 / rep["kept"])
    assert rep["compression_error"] == pytest.approx((rep["r_e"] - 16) / 16)
    rc, out, _ = audit(capsys, "mask", small_run / CELL / "mask.pt")
    assert "fc1.weight  300x784" in out and "n_prunable 266,200" in out


def test_audit_run_passes_on_the_real_cell(small_run, capsys):
    rc, out, _ = audit(capsys, "run", small_run / CELL, "--json")
    rep = json.loads(out)
    assert rc == 0 and rep["ok"], rep["checks"]
    assert {r["status"] for r in rep["checks"]} == {"ok"}
    prov = rep["provenance"]
    assert prov["seed"] == 0 and len(prov["settings_hash"]) == 12 and prov["device"] == "cpu"
    assert prov["torch_version"] == str(torch.__version__) and prov["speedup"] == pytest.approx(16, rel=1e-3)


def test_audit_run_resolves_lineage_against_the_audited_run_wherever_it_starts(small_run, capsys, tmp_path,
                                                                                monkeypatch):
    """From a project with results of its own (same relative paths, other bytes) and from
    an unrelated folder, the verdict on another run's cell is the same: that run's files."""
    cell = small_run / CELL
    decoy = tmp_path / "other_project"
    recorded = [rec["path"] for name in ("final.pt", "mask.pt")
                for rec in load_pt(cell / name)["meta"]["inputs"].values()]
    assert any(not Path(p).is_absolute() for p in recorded)  # (what makes the current folder matter)
    for p in recorded:
        if not Path(p).is_absolute():
            (decoy / p).parent.mkdir(parents=True, exist_ok=True)
            (decoy / p).write_bytes(b"another run's artifact")
    verdicts = []
    for where in (decoy, tmp_path / "unrelated"):
        where.mkdir(exist_ok=True)
        monkeypatch.chdir(where)
        rc, out, _ = audit(capsys, "run", cell, "--json")
        rep = json.loads(out)
        verdicts.append((rc, rep["ok"], [(r["check"], r["status"]) for r in rep["checks"]]))
    assert verdicts[0] == verdicts[1]
    assert verdicts[0][:2] == (0, True), [c for c in verdicts[0][2] if c[1] != "ok"]


def test_audit_compare(small_run, capsys):
    mask = small_run / CELL / "mask.pt"
    dense = small_run / "results/mnist/lenet300/seed0/dense/r1/mask.pt"
    rc, out, _ = audit(capsys, "compare", mask, dense, "--json")
    rep = json.loads(out)
    kept = rep["total"]["kept_a"]
    assert rep["total"]["jaccard"] == pytest.approx(kept / 266_200)   # B keeps everything
    assert rep["total"]["a_kept_by_b"] == 1.0
    rc, out, _ = audit(capsys, "compare", mask, mask)
    assert "(all)" in out and "1.0000   1.0000" in out


def test_audit_grid_of_another_config_says_so_instead_of_listing_missing_cells(small_run, capsys, tmp_path):
    other = yaml.safe_load((small_run / "config.yaml").read_text())
    other["grid"]["seeds"] = [7]
    (tmp_path / "other.yaml").write_text(yaml.safe_dump(other))
    rc, out, _ = audit(capsys, "grid", "--config", tmp_path / "other.yaml", "--root", small_run)
    assert out.startswith(f"auditing the grid of {tmp_path / 'other.yaml'} against {small_run / 'results'}: 2 cells")
    assert ("none of the 2 cells of" in out and "which holds 2 cells of another grid "
            "(e.g. mnist/lenet300/seed0/dense/r1): those results were made with another config" in out)
    assert f"{small_run / 'reports' / 'config.yaml'}" in out and "seed7" not in out  # no list of false "missing"


def test_audit_grid_complete_then_stale(small_run, capsys, monkeypatch):
    rc, out, _ = audit(capsys, "grid", "--config", small_run / "config.yaml", "--root", small_run)
    assert rc == 0 and "2 cells: 2 complete, 0 stale, 0 failed, 0 missing" in out
    changed = yaml.safe_load((small_run / "config.yaml").read_text())
    changed["train"]["epochs"] = 2
    changed["grid"]["ratios"] = [1, 16, 64]
    (small_run / "other.yaml").write_text(yaml.safe_dump(changed))
    rc, out, _ = audit(capsys, "grid", "--config", small_run / "other.yaml", "--root", small_run, "--json")
    rep = json.loads(out)
    assert rep["counts"] == {"complete": 0, "stale": 2, "failed": 0, "corrupted": 0, "missing": 1}
    assert {c["cell"]: c["state"] for c in rep["cells"]}["mnist/lenet300/seed0/snip/r64"] == "missing"


@pytest.fixture
def copy_cell(small_run, tmp_path):
    dst = tmp_path / "cell"
    shutil.copytree(small_run / CELL, dst)
    return dst


def test_one_changed_byte_is_named(copy_cell, capsys):
    data = bytearray((copy_cell / "final.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy_cell / "final.pt").write_bytes(bytes(data))
    rc, out, _ = audit(capsys, "run", copy_cell)
    assert rc == 1 and "FAIL" in out
    assert f"{copy_cell / 'final.pt'}: checksum mismatch: changed or truncated since it was written" in out
    rc, _, err = audit(capsys, "mask", copy_cell / "mask.pt")
    assert rc == 0


def test_a_truncated_file_is_named(copy_cell, capsys):
    path = copy_cell / "mask.pt"
    path.write_bytes(path.read_bytes()[:500])
    rc, out, err = audit(capsys, "mask", path)
    assert rc == 2 and err.strip().count("\n") == 0
    assert err.startswith(f"prunelib audit: {path}: checksum mismatch")
    path.with_name("mask.pt.sha256").unlink()  # without a checksum the load itself fails
    rc, out, err = audit(capsys, "mask", path)
    assert rc == 2 and err.strip() == (f"prunelib audit: {path}: not a readable torch file (500 bytes; "
                                       "truncated or not a .pt artifact: RuntimeError)")


def test_a_pruned_weight_set_nonzero_is_found(copy_cell, capsys):
    blob = load_pt(copy_cell / "final.pt")
    mask = load_pt(copy_cell / "mask.pt")["masks"]["fc1.weight"]
    w = blob["state_dict"]["fc1.weight"]
    w[~mask] = 0.0  # already, by training; now revive one pruned weight
    w.view(-1)[int((~mask).view(-1).nonzero()[0])] = 0.5
    save_pt(blob, copy_cell / "final.pt")  # consistent checksum: only the content check can catch it
    rc, out, _ = audit(capsys, "run", copy_cell, "--json")
    rep = json.loads(out)
    failed = {r["check"]: r["detail"] for r in rep["checks"] if r["status"] == "FAIL"}
    assert rc == 1 and failed["every pruned weight of final.pt is exactly zero"] == "fc1.weight: 1 non-zero"
    assert "eval row n_nonzero_prunable matches final.pt" in failed


def test_nonsense_paths_give_one_line(tmp_path, small_run, capsys):
    (tmp_path / "notes.txt").write_text("hello")
    cases = [
        (("mask", tmp_path / "nope.pt"), f"{tmp_path / 'nope.pt'}: no such file"),
        (("mask", tmp_path), f"{tmp_path}: is a folder, expected a .pt file"),
        (("mask", small_run / CELL / "eval.parquet"),
         f"{small_run / CELL / 'eval.parquet'}: is a Parquet table, expected a .pt artifact (e.g. mask.pt)"),
        (("run", tmp_path / "nope"), f"{tmp_path / 'nope'}: no such folder"),
        (("run", tmp_path), f"{tmp_path}: not a cell folder"),
        (("run", tmp_path / "notes.txt"), f"{tmp_path / 'notes.txt'}: not a folder"),
        (("compare", small_run / CELL / "final.pt", small_run / CELL / "mask.pt"),
         f"{small_run / CELL / 'final.pt'}: not a mask artifact"),
        (("grid", "--config", tmp_path / "none.yaml"), f"{tmp_path / 'none.yaml'}: no such config file"),
    ]
    for args, expected in cases:
        rc, out, err = audit(capsys, *args)
        assert rc == 2, args
        assert err.startswith(f"prunelib audit: {expected}"), (args, err)
        assert err.count("\n") == 1 and "Traceback" not in err


def test_cli_error_has_no_traceback(tmp_path):
    (tmp_path / "x.pt").write_bytes(b"not torch at all")
    proc = run([PYTHON, "-m", "prunelib", "audit", "mask", tmp_path / "x.pt"], check=False)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_html_report_builds(small_run):
    run([SNAKEMAKE, "-s", REPO / "Snakefile", "--directory", small_run, "--report", "reports/report.html"])
    html = (small_run / "reports/report.html").read_text()
    for needle in ("mnist_lenet300_accuracy.png", "mnist_lenet300_density_r16.png", "mnist_lenet300_curves.png",
                   "mnist_lenet300.html", "study_lenet300.html", "config.yaml",
                   "Blalock-style accuracy tables", "reproducible grid of neural-network pruning"):
        assert needle in html, needle
