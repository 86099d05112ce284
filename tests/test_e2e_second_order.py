"""Methods that update the weights they keep, through Snakemake's command line: obs,
woodfisher and lobs cells (rule mask_updated writes updated.pt, training starts from it)
and an IMP chain whose pruning step is WoodFisher, on a plugin network small enough for
the full OBS inverse (a 64-8-2 MLP on a made-up 8x8 stripes dataset: seconds)."""

from __future__ import annotations

import os

import pandas as pd
import pytest
import torch
import yaml

from prunelib.foundations.artifacts import load_pt, read_parquet_rows
from prunelib.methods.masking import kept_count

from conftest import PYTHON, REPO, SNAKEMAKE, run

#: (commands started in the run's folder import this checkout, not the installed one)
ENV = {**os.environ, "PYTHONPATH": str(REPO)}

pytestmark = pytest.mark.e2e

PLUGIN = '''
import torch
from torch import nn
from prunelib import register_arch, register_dataset

@register_arch("mlp8", description="64-8-2 MLP", cost=0.5)
def mlp8(num_classes, in_channels, image_size):
    return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * image_size ** 2, 8), nn.ReLU(),
                         nn.Linear(8, num_classes))

@register_dataset("stripes", num_classes=2, in_channels=1, image_size=8, mean=(0.5,), std=(0.5,),
                  description="horizontal vs vertical stripes, with noise")
def stripes(root):
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (96,), generator=g)
    x = torch.randint(0, 64, (96, 8, 8), generator=g, dtype=torch.uint8)
    x[y == 0, ::2, :] = 255
    x[y == 1, :, ::2] = 255
    return {"train_x": x[:64], "train_y": y[:64], "test_x": x[64:], "test_y": y[64:], "source": "made here"}
'''
N = 64 * 8 + 8 * 2  # prunable weights of mlp8
FISHER = {"batch_size": 2, "num_batches": 16}
CFG = {"plugins": ["mine.py"], "device": "cpu",
       "grid": {"archs": ["mlp8"], "datasets": ["stripes"], "ratios": [1, 4, 8], "seeds": [0],
                "methods": ["obs", "woodfisher", "lobs", "snip", "woodfisher_imp"], "variants": ["none", "invert"]},
       "score": {"batch_size": 16, "per_method": {"obs": {**FISHER, "group": 16}, "woodfisher": {**FISHER, "block_size": 32},
                                "lobs": {"batch_size": 16, "num_batches": 2}}},
       "iterative": {"round_factor": 0.5},
       "train": {"epochs": 1, "batch_size": 16}}
SEED = "results/stripes/mlp8/seed0"


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    wd = tmp_path_factory.mktemp("e2e_second_order")
    (wd / "mine.py").write_text(PLUGIN)
    (wd / "config.yaml").write_text(yaml.safe_dump({**CFG, "data_dir": str(wd)}))
    run([SNAKEMAKE, "-s", REPO / "Snakefile", "--directory", wd, "--cores", "2"])
    return wd


def test_every_cell_meets_its_ratio_and_trains_from_the_updated_weights(done):
    df = pd.read_parquet(done / "results/all.parquet")
    assert (df["status"] == "ok").all()
    assert (df["compression_error"].abs() < 1e-12).all()
    assert set(df["method"]) == {"dense", "obs", "woodfisher", "lobs", "snip", "woodfisher_imp"}
    for method in ("obs", "woodfisher", "lobs"):
        for r in (4, 8):
            cell = done / SEED / method / f"r{r}"
            updated, mask, final = (load_pt(cell / n) for n in ("updated.pt", "mask.pt", "final.pt"))
            assert final["meta"]["inputs"]["init"]["path"].endswith(f"{method}/r{r}/updated.pt")
            assert final["meta"]["started_from"] == "updated"
            kept = sum(int(m.sum()) for m in mask["masks"].values())
            target = (kept_count(N, r) if method != "lobs"
                      else kept_count(512, r) + kept_count(16, r))
            assert kept == target, (method, r)
            for n, m in mask["masks"].items():
                assert updated["state_dict"][n][~m].eq(0).all()
            assert any(v["update_norm"] > 0 for v in mask["meta"]["update"]["norms"].values())
            # the invert variant trains from the init, and has no say over the update
            inv = load_pt(done / SEED / method / f"r{r}-invert" / "final.pt")
            assert "updated.pt" not in inv["meta"]["inputs"]["init"]["path"]
    assert not (done / SEED / "snip" / "r4" / "updated.pt").exists()  # other methods: as before


def test_audit_run_lists_and_checks_the_updated_weights(done):
    out = run([PYTHON, "-m", "prunelib", "audit", "run", done / SEED / "obs" / "r4"], cwd=done, env=ENV).stdout
    assert "updated.pt checksum" in out and "updated.pt records the update mask.pt records" in out
    assert "lineage: final.pt <- init" in out and "FAIL" not in out
    out = run([PYTHON, "-m", "prunelib", "audit", "mask", done / SEED / "lobs" / "r4" / "mask.pt"], cwd=done, env=ENV).stdout
    assert "update_norm" in out


def test_the_woodfisher_chain_prunes_with_the_update(done):
    chain = done / SEED / "woodfisher_imp" / "imp"
    rounds = sorted(p.name for p in chain.iterdir() if p.is_dir())
    assert rounds[0] == "round0" and len(rounds) >= 3
    prev = None
    for name in rounds[1:]:
        mask = load_pt(chain / name / "mask.pt")
        rows = read_parquet_rows(chain / name / "mask.parquet")
        assert sum(r["kept"] for r in rows) == mask["meta"]["n_kept"]
        upd = mask["meta"]["update"]
        assert upd["pruner"] == "woodfisher" and upd["discarded"] is False
        assert any(v["update_norm"] > 0 for v in upd["norms"].values())
        if prev is not None:
            assert all(bool((mask["masks"][n] <= prev[n]).all()) for n in prev)
        prev = mask["masks"]


def test_a_flipped_byte_in_the_updated_weights_is_refused_by_the_next_job(done):
    cell = done / SEED / "woodfisher" / "r8"
    path = cell / "updated.pt"
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 3] ^= 0x10
    path.write_bytes(bytes(raw))
    (cell / "final.pt").unlink()
    res = run([SNAKEMAKE, "-s", REPO / "Snakefile", "--directory", done, "--cores", "1",
               str(cell.relative_to(done) / "final.pt")], check=False)
    assert res.returncode != 0
    log = done / "results/logs/train/stripes/mlp8/seed0/woodfisher/r8.log"
    said = (res.stdout + res.stderr + (log.read_text() if log.exists() else "")).lower()
    assert "updated.pt" in said and "sha256" in said
    assert not (cell / "final.pt").exists()
    assert torch is not None
