"""The real workflow through Snakemake's command line, on real MNIST.

One tiny grid (lenet5; snip and global_magnitude; r in {4, 16} plus the dense control;
2 seeds; 1 epoch on 1,000 images).  The first run is killed midway with SIGKILL; the
rerun completes it.  Then: nothing left to do, a changed training setting reruns only
train/eval/aggregate, and the aggregated table holds what the eval rows say.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time

import pandas as pd
import pytest
import torch
import yaml

from prunelib.foundations.artifacts import load_pt

from cells import run_cell
from conftest import PYTHON, REPO, run

pytestmark = pytest.mark.e2e

TINY = {
    "preset": "fast",
    "device": "cpu",
    "grid": {"archs": ["lenet5"], "datasets": ["mnist"], "methods": ["snip", "global_magnitude"],
             "ratios": [1, 4, 16], "seeds": [0, 1]},
    "train": {"epochs": 1, "train_subset": 1000, "batch_size": 100},
}


def smk(snakemake_bin, workdir, *args):
    return [snakemake_bin, "-s", REPO / "Snakefile", "--directory", workdir, *args]


def jobs_by_rule(dry_run_stdout: str) -> dict[str, int]:
    """Parse the job-count table that `snakemake -n` prints."""
    counts = {}
    for line in dry_run_stdout.splitlines():
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if m and m.group(1) != "total":
            counts[m.group(1)] = int(m.group(2))
    return counts


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, mnist_root):
    wd = tmp_path_factory.mktemp("e2e")
    (wd / "config.yaml").write_text(yaml.safe_dump({**TINY, "data_dir": str(mnist_root)}))
    return wd


@pytest.fixture(scope="module")
def completed(workdir):
    from conftest import SNAKEMAKE as snakemake_bin

    # 1. start, and kill the whole Snakemake process group once training has begun
    proc = subprocess.Popen([str(c) for c in smk(snakemake_bin, workdir, "--cores", "2")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and len(list(workdir.glob("results/mnist/**/final.pt"))) < 3:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_with = sorted(str(p.relative_to(workdir)) for p in workdir.glob("results/mnist/**/eval.parquet"))
    assert len(killed_with) < 10, "the run finished before it could be interrupted"
    touched = sorted({str(p.parent.relative_to(workdir)) for p in workdir.glob("results/mnist/*/seed*/*/r*/*")})
    (workdir / "killed_with.txt").write_text("\n".join(touched))  # cells the kill may have cut short
    # no partial artifact: everything present loads
    for p in workdir.glob("results/mnist/**/*.pt"):
        load_pt(p)
    for p in workdir.glob("results/mnist/**/*.parquet"):
        pd.read_parquet(p)
    # 2. a SIGKILLed Snakemake cannot release its lock: unlock as its message says, rerun
    run(smk(snakemake_bin, workdir, "--unlock"))
    out = run(smk(snakemake_bin, workdir, "--cores", "2", "--rerun-incomplete"), timeout=900)
    return workdir, out


def test_rerun_after_kill_completes_every_cell(completed):
    wd, _ = completed
    df = pd.read_parquet(wd / "results" / "all.parquet")
    assert len(df) == 10  # 2 seeds x (dense + 2 methods x 2 ratios)
    assert sorted(df["method"].unique()) == ["dense", "global_magnitude", "snip"]
    assert set(df["ratio"]) == {1.0, 4.0, 16.0}
    assert (df["status"] == "ok").all()
    assert not list(wd.glob("results/**/.*.tmp"))


def test_every_cell_meets_its_ratio_exactly(completed):
    wd, _ = completed
    df = pd.read_parquet(wd / "results" / "all.parquet")
    for _, row in df.iterrows():
        assert row["n_kept"] == int(row["n_prunable"] / row["ratio"] + 0.5)
        assert row["n_params"] == 431_080
        assert abs(row["compression_error"]) < 1e-3
        assert row["collapsed_layers"] == 0


def test_a_mask_recomputed_from_its_stored_scores_in_a_fresh_process_is_bit_identical(completed, tmp_path):
    """Only the mask stage, from the scores on disk; every stage across processes and
    thread counts is test_determinism.py."""
    wd, _ = completed
    cell = wd / "results/mnist/lenet5/seed1/snip/r16"
    settings = '{"method":"snip","ratio":16.0,"seed":1}'
    scores = wd / "results/mnist/lenet5/seed1/snip/scores.pt"
    run([PYTHON, "-m", "prunelib", "mask", "--settings", settings, "--init",
         wd / "results/mnist/lenet5/seed1/init_pytorch_default.pt", "--scores", scores,
         "--out-mask", tmp_path / "m.pt", "--out-table", tmp_path / "m.parquet"], cwd=REPO)
    a, b = load_pt(cell / "mask.pt")["masks"], load_pt(tmp_path / "m.pt")["masks"]
    assert all(torch.equal(a[n], b[n]) for n in a)


def test_aggregated_table_matches_the_eval_rows(completed):
    wd, out = completed
    df = pd.read_parquet(wd / "results" / "all.parquet")
    md = (wd / "reports" / "tables" / "mnist_lenet5.md").read_text()
    csv = pd.read_csv(wd / "reports" / "tables" / "mnist_lenet5_top1.csv", index_col=0)
    assert list(csv.index) == ["dense", "global_magnitude", "snip"]   # dense control first
    assert list(csv.columns) == ["r=1", "r=4", "r=16"]
    vals = 100 * df[(df.method == "snip") & (df.ratio == 4.0)]["top1"]
    expected = f"{vals.mean():.2f} ± {vals.std(ddof=1):.2f} (2)"
    assert csv.loc["snip", "r=4"] == expected
    assert expected in md
    assert csv.loc["snip", "r=1"] == "—"
    assert (wd / "reports" / "figures" / "mnist_lenet5_accuracy.png").stat().st_size > 10_000
    assert (wd / "reports" / "tables" / "mnist_lenet5_top5.tex").exists()


def test_nothing_to_do_on_rerun(completed, snakemake_bin):
    wd, _ = completed
    out = run(smk(snakemake_bin, wd, "-n", "--cores", "1"))
    assert "Nothing to be done" in out.stdout + out.stderr


def test_changed_training_setting_reruns_only_downstream_jobs(completed, snakemake_bin):
    wd, _ = completed
    (wd / "more_epochs.yaml").write_text(yaml.safe_dump({"train": {"epochs": 2}}))
    out = run(smk(snakemake_bin, wd, "-n", "--cores", "1", "--configfile", wd / "config.yaml",
                  wd / "more_epochs.yaml"))
    assert jobs_by_rule(out.stdout) == {"train": 10, "eval": 10, "measure": 1, "aggregate": 1, "all": 1}


def test_added_ratio_adds_only_its_cells(completed, snakemake_bin):
    wd, _ = completed
    (wd / "more_ratios.yaml").write_text(yaml.safe_dump({"grid": {**TINY["grid"], "ratios": [1, 4, 16, 64]}}))
    out = run(smk(snakemake_bin, wd, "-n", "--cores", "1", "--configfile", wd / "config.yaml",
                  wd / "more_ratios.yaml"))
    assert jobs_by_rule(out.stdout) == {"mask": 4, "train": 4, "eval": 4, "measure": 1, "aggregate": 1, "all": 1}


def test_lint_is_clean(snakemake_bin):
    out = run([snakemake_bin, "--lint"], cwd=REPO)
    assert "Congratulations" in out.stdout + out.stderr


def test_cells_the_kill_cut_short_end_with_the_rows_of_an_uninterrupted_run(completed):
    """The README's promise: after a kill, a rerun gives the results a run that was never
    interrupted gives.  Every cell that had anything on disk at the kill is recomputed
    here uninterrupted, in-process with the stage functions (which test_determinism.py
    shows write what the workflow's jobs write), from a fresh init, and compared."""
    from prunelib import config

    wd, _ = completed
    touched = (wd / "killed_with.txt").read_text().split()
    assert touched
    s = config.load(wd / "config.yaml")
    data = wd / "results/data/mnist.pt"
    threads = torch.get_num_threads()
    torch.set_num_threads(s.threads)  # as the jobs ran
    try:
        fresh = wd.parent / f"{wd.name}_uninterrupted"
        for rel in touched:
            _, dataset, arch, seed_dir, method, rdir = rel.split("/")
            seed, ratio = int(seed_dir[4:]), float(rdir[1:])
            run_cell(fresh, data, s, arch, method, ratio, seed, dataset=dataset, folder=fresh / rel)
            from prunelib.audit import rows as compare_rows

            rep = compare_rows.compare(wd / rel / "eval.parquet", fresh / rel / "eval.parquet")
            assert rep["identical"], (rel, rep["differing_columns"])  # (timings and lineage digests aside)
            for name in ("mask.pt", "final.pt"):
                a, b = (load_pt(f / rel / name) for f in (wd, fresh))
                key = "masks" if name == "mask.pt" else "state_dict"
                assert all(torch.equal(a[key][k], b[key][k]) for k in a[key]), (rel, name)
    finally:
        torch.set_num_threads(threads)
