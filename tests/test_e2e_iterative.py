"""IMP chains and sanity-check variants through Snakemake's command line, on real MNIST.

lenet300; lth, lrr and global_magnitude; r in {2, 4} plus the dense control; one seed;
every variant; 4 steps per training.  One chain per (method, seed) serves both ratios.
"""

from __future__ import annotations

from fractions import Fraction

import pandas as pd
import pytest
import torch
import yaml

from prunelib import config
from prunelib.foundations.artifacts import load_pt, read_parquet_rows
from prunelib.methods.masking import kept_count

from conftest import REPO, run
from test_e2e import jobs_by_rule

pytestmark = pytest.mark.e2e

GRID = {"archs": ["lenet300"], "datasets": ["mnist"], "methods": ["global_magnitude", "lth", "lrr"],
        "ratios": [1, 2, 4], "seeds": [0], "variants": list(config.VARIANTS)}
CFG = {"preset": "fast", "device": "cpu", "grid": GRID,
       "train": {"epochs": 1, "train_subset": 256, "batch_size": 64}}
SEED = "results/mnist/lenet300/seed0"


@pytest.fixture(scope="module")
def done(tmp_path_factory, mnist_root, snakemake_bin_module):
    wd = tmp_path_factory.mktemp("e2e_imp")
    (wd / "config.yaml").write_text(yaml.safe_dump({**CFG, "data_dir": str(mnist_root)}))
    run([snakemake_bin_module, "-s", REPO / "Snakefile", "--directory", wd, "--cores", "2"])
    return wd


@pytest.fixture(scope="module")
def snakemake_bin_module():
    from conftest import SNAKEMAKE

    return SNAKEMAKE


def test_one_chain_lands_exactly_on_every_ratio(done):
    densities = config.imp_densities([1, 2, 4], 0.8)
    for method in ("lth", "lrr"):
        rounds = sorted(p.name for p in (done / SEED / method / "imp").iterdir() if p.is_dir())
        assert rounds == sorted(f"round{j}" for j in range(len(densities) + 1))  # one chain for r = 2 and 4
        prev = None
        for j, d in enumerate([Fraction(1)] + densities):
            blob = load_pt(done / SEED / method / "imp" / f"round{j}" / "mask.pt")
            rows = read_parquet_rows(done / SEED / method / "imp" / f"round{j}" / "mask.parquet")
            assert sum(r["kept"] for r in rows) == kept_count(266_200, 1 / d), (method, j)
            if prev is not None:
                assert all(bool((blob["masks"][n] <= prev[n]).all()) for n in prev)
            prev = blob["masks"]
        for r in (2, 4):
            j = config.imp_round_of([1, 2, 4], 0.8, r)
            cell = done / SEED / method / f"r{r}"
            rnd = done / SEED / method / "imp" / f"round{j}"
            assert all(torch.equal(load_pt(cell / "mask.pt")["masks"][n], load_pt(rnd / "mask.pt")["masks"][n])
                       for n in prev)
            final, trained = load_pt(cell / "final.pt")["state_dict"], load_pt(rnd / "weights.pt")["state_dict"]
            assert all(torch.equal(final[k], trained[k]) for k in trained)  # no retraining for the cell


def test_eval_rows_and_tables_show_each_method_next_to_its_variants(done):
    df = pd.read_parquet(done / "results/all.parquet")
    assert len(df) == 1 + 3 * 2 * len(config.VARIANTS)
    assert (df["status"] == "ok").all()
    # every cell meets its ratio exactly, including lrr's mask-level variants (which start
    # from the dense trained weights, not from the zeros an earlier round left)
    assert (df["compression_error"].abs() < 1e-12).all()
    assert set(df["variant"]) == set(config.VARIANTS)
    table = (done / "reports/tables/mnist_lenet300.md").read_text().split("### Top-5")[0]
    rows = [line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| ")][1:]
    assert rows == ["dense"] + [f"{m}" if v == "none" else f"{m} ({v})"
                                for m in ("global_magnitude", "lth", "lrr") for v in config.VARIANTS]
    variants = (done / "reports/tables/mnist_lenet300_variants.md").read_text()
    assert "| lth | " in variants and "r=4 invert" in variants
    assert (done / "reports/figures/mnist_lenet300_variants.png").stat().st_size > 10_000
    n_rounds = len(config.imp_densities([1, 2, 4], 0.8))
    imp = pd.read_csv(done / "reports/tables/mnist_lenet300_imp_rounds.csv")
    assert list(imp["method"]) == ["lth"] * (n_rounds + 1) + ["lrr"] * (n_rounds + 1)
    assert list(imp["weights remaining (%)"][:2]) == [100.0, 80.0] and imp["r"].iloc[-1] == 4
    assert (done / "reports/figures/mnist_lenet300_imp_rounds.png").stat().st_size > 10_000
    # the variants are references: never marked best
    cells = pd.read_csv(done / "reports/tables/mnist_lenet300_cells.csv")
    assert not cells[cells["method"].str.contains(r"\(")]["best"].any()


def test_variant_artifacts_record_the_transformation_and_seed(done):
    for method in ("lth", "global_magnitude"):
        for v in ("shuffle_layer", "invert"):
            assert load_pt(done / SEED / method / f"r4-{v}" / "mask.pt")["meta"]["variant"]["seed"] == 0
        for v in ("reinit", "shuffle_weights"):
            assert load_pt(done / SEED / method / f"r4-{v}" / "final.pt")["meta"]["variant"]["variant"] == v
    # lth's variants start from the ticket's rewind point; the invert mask is disjoint from lth's at r = 4
    lth = load_pt(done / SEED / "lth/r4/mask.pt")["masks"]
    inv = load_pt(done / SEED / "lth/r4-invert/mask.pt")["masks"]
    assert sum(int((lth[n] & inv[n]).sum()) for n in lth) == 0
    assert sum(int(inv[n].sum()) for n in inv) == kept_count(266_200, 4)


def test_nothing_left_to_do_and_the_grid_audits_clean(done):
    out = run([__import__("conftest").SNAKEMAKE, "-s", REPO / "Snakefile", "--directory", done, "-n"]).stdout
    assert "Nothing to be done" in out
    rep = run([__import__("conftest").PYTHON, "-m", "prunelib", "audit", "grid", "--config",
               done / "config.yaml", "--root", done], check=False)
    assert rep.returncode == 0, rep.stdout + rep.stderr
    n = len(config.cells(config.load(done / "config.yaml")))
    assert n == 1 + 3 * 2 * len(config.VARIANTS)
    assert f"{n} cells: {n} complete, 0 stale, 0 failed, 0 missing" in rep.stdout


def test_a_chain_missing_rounds_5_on_schedules_only_those_rounds(done, tmp_path):
    """Rounds are separate jobs: with rounds 0..4 of lth's chain on disk and nothing after
    (what a run killed in round 5 leaves), a dry run schedules rounds 5..n of that chain
    and the cells that use them, nothing else.  (A real kill and resume, compared with
    an uninterrupted chain, is test_e2e_resume.py.)"""
    import shutil

    n = len(config.imp_densities([1, 2, 4], 0.8))
    work = tmp_path / "copy"
    shutil.copytree(done, work, symlinks=True)
    for j in range(5, n + 1):
        shutil.rmtree(work / SEED / f"lth/imp/round{j}")
    (work / SEED / "lth/imp/rounds.parquet").unlink()
    (work / "results/all.parquet").unlink()  # a killed run never got to aggregate
    shutil.rmtree(work / "reports")
    for v in config.VARIANTS:  # the r = 4 cells need round n; r = 2's round is 4, done
        shutil.rmtree(work / SEED / f"lth/r4{config.variant_suffix(v)}")
    out = run([__import__("conftest").SNAKEMAKE, "-s", REPO / "Snakefile", "--directory", work, "-n"]).stdout
    jobs = jobs_by_rule(out)
    assert jobs["imp_round"] == n - 4 and "imp_dense" not in jobs and "init" not in jobs
    assert jobs["train"] == jobs["mask"] == jobs["eval"] == len(config.VARIANTS)


# --- a chain killed during a round, resumed, against the uninterrupted chain of `done` ---

KILL_ROUND = 3


def _artifact_fingerprints(folder) -> dict:
    """Every .pt (tensors by hash, meta) and Parquet table (rows) under ``folder``, timings aside."""
    import json

    from conftest import tensor_dict_digest
    from test_determinism import without_timings

    out = {}
    for p in sorted(folder.rglob("*.pt")):
        blob = load_pt(p)
        tensors = {f"{k}/{n}": t for k, v in blob.items() if isinstance(v, dict) and k != "meta"
                   for n, t in v.items() if isinstance(t, torch.Tensor)}
        out[str(p.relative_to(folder))] = (tensor_dict_digest(tensors),
                                           json.dumps(without_timings(blob["meta"]), sort_keys=True, default=str))
    for p in sorted(folder.rglob("*.parquet")):
        out[str(p.relative_to(folder))] = json.dumps(without_timings(read_parquet_rows(p)), sort_keys=True,
                                                     default=str)
    return out


@pytest.fixture(scope="module")
def killed_chain(tmp_path_factory, mnist_root, snakemake_bin_module):
    """lth's chain alone, the whole Snakemake process group SIGKILLed while round
    KILL_ROUND runs (its log exists, so its job has started), then unlocked and rerun."""
    import os
    import signal
    import subprocess
    import time

    wd = tmp_path_factory.mktemp("e2e_imp_killed")
    cfg = {**CFG, "grid": {**GRID, "methods": ["lth"], "variants": ["none"]}, "data_dir": str(mnist_root)}
    (wd / "config.yaml").write_text(yaml.safe_dump(cfg))
    base = [snakemake_bin_module, "-s", REPO / "Snakefile", "--directory", wd]
    proc = subprocess.Popen([str(c) for c in base + ["--cores", "2"]], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    started = wd / f"results/logs/imp/mnist/lenet300/seed0/lth/round{KILL_ROUND}.log"
    deadline = time.time() + 600
    while time.time() < deadline and not started.exists() and proc.poll() is None:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert started.exists(), "round %d never started" % KILL_ROUND
    chain = wd / SEED / "lth/imp"
    n = len(config.imp_densities([1, 2, 4], 0.8))
    assert not (chain / f"round{n}" / "weights.pt").exists(), "the chain finished before the kill"
    before = {p.parent.name: p.stat().st_mtime_ns for p in chain.glob("round*/weights.pt")}
    assert set(before) >= {f"round{j}" for j in range(KILL_ROUND)}
    run(base + ["--unlock"])
    run(base + ["--cores", "2", "--rerun-incomplete"])
    return wd, before


def test_a_chain_killed_during_a_round_resumes_there_and_matches_the_uninterrupted_chain(killed_chain, done):
    wd, before = killed_chain
    # the rounds finished before the kill were not redone
    for name, mtime in before.items():
        if name != f"round{KILL_ROUND}":
            assert (wd / SEED / "lth/imp" / name / "weights.pt").stat().st_mtime_ns == mtime, name
    # every round's artifacts (rounds >= 2 rewound to round0/rewind.pt) equal the uninterrupted chain's
    resumed = _artifact_fingerprints(wd / SEED / "lth/imp")
    uninterrupted = _artifact_fingerprints(done / SEED / "lth/imp")
    n = len(config.imp_densities([1, 2, 4], 0.8))
    assert sum(k.endswith("weights.pt") for k in resumed) == n + 1
    assert resumed.keys() == uninterrupted.keys()
    for key in resumed:
        assert resumed[key] == uninterrupted[key], key
    for r in (2, 4):  # and so do the cells built on them
        assert _artifact_fingerprints(wd / SEED / f"lth/r{r}") == _artifact_fingerprints(done / SEED / f"lth/r{r}")
