"""Density allocation as its own axis: ERK, ER and uniform counts, exact totals, any score
with any allocation, labelled rows, and a user's allocation held to its contract."""

from __future__ import annotations

import math
import subprocess
from fractions import Fraction

import pandas as pd
import pytest
import yaml

from prunelib.catalogue import registry
from prunelib.config import contracts
from prunelib.methods import allocation, bounds
from prunelib.methods.masking import kept_count

from cells import run_cell, settings
from conftest import HANG_SECONDS, PYTHON, REPO, SNAKEMAKE


def shapes_of(arch, dataset):
    sizes = bounds.prunable_sizes(arch, dataset, (), False, False)
    import torch

    from prunelib.data import datasets
    from prunelib.nets import models

    d = datasets.info(dataset)
    with torch.device("meta"):
        model = models.build(arch, d.num_classes, d.in_channels, d.image_size)
    params = dict(model.named_parameters())
    return {n: tuple(params[n].shape) for n in sizes}


def test_erk_on_lenet300_by_hand():
    # N = 266,200, K = round(N / 16) = 16,638.  ERK raw densities (sum of dims / product):
    # fc1 1084/235200, fc2 400/30000, fc3 110/1000; sum raw * n = 1084 + 400 + 110 = 1594,
    # eps = 16638 / 1594, and eps * 0.11 > 1: fc3 dense (1,000).  Then eps = 15638 / 1484:
    # fc1 15638 * 1084 / 1484 = 11422.97, fc2 15638 * 400 / 1484 = 4215.09; floors 11422 +
    # 4215 = 15637, the one left goes to the larger remainder (fc1).
    shapes = shapes_of("lenet300", "mnist")
    assert allocation.erk(shapes, kept_count(266_200, 16)) == {"fc1.weight": 11423, "fc2.weight": 4215,
                                                              "fc3.weight": 1000}


def reference_erdos_renyi(shapes, total, kernel):
    """RigL's get_sparsities_erdos_renyi, written out again with exact fractions, and
    made whole by the largest remainders."""
    n = {k: math.prod(s) for k, s in shapes.items()}
    raw = {k: (Fraction(sum(s), math.prod(s)) if kernel else Fraction(s[0] + s[1], s[0] * s[1]))
           for k, s in shapes.items()}
    dense = set()
    while True:
        rhs = total - sum(n[k] for k in dense)
        eps = rhs / sum(raw[k] * n[k] for k in n if k not in dense)
        worst = max((k for k in n if k not in dense), key=lambda k: raw[k])
        if eps * raw[worst] <= 1:
            break
        dense.add(worst)
    ideal = {k: (Fraction(n[k]) if k in dense else eps * raw[k] * n[k]) for k in n}
    counts = {k: math.floor(v) for k, v in ideal.items()}
    for k in sorted(ideal, key=lambda k: (-(ideal[k] - counts[k]), list(n).index(k)))[:total - sum(counts.values())]:
        counts[k] += 1
    return counts


@pytest.mark.parametrize("arch,dataset", [("lenet300", "mnist"), ("lenet5", "mnist"),
                                          ("resnet20", "synthetic_cifar10")])
@pytest.mark.parametrize("ratio", [2, 10, 64, 500])
def test_erk_and_er_counts_match_the_reference_and_meet_the_ratio_exactly(arch, dataset, ratio):
    shapes = shapes_of(arch, dataset)
    total = kept_count(sum(math.prod(s) for s in shapes.values()), ratio)
    for name, kernel in (("erk", True), ("er", False)):
        got = allocation.counts_for(name, shapes, total)
        assert got == reference_erdos_renyi(shapes, total, kernel), (name, arch, ratio)
        assert sum(got.values()) == total and all(0 <= got[k] <= math.prod(shapes[k]) for k in shapes)


def test_uniform_keeps_the_first_tensor_dense_and_the_rest_at_one_density():
    shapes = shapes_of("lenet5", "mnist")
    sizes = {k: math.prod(s) for k, s in shapes.items()}
    total = kept_count(sum(sizes.values()), 10)
    got = allocation.counts_for("uniform", shapes, total)
    first, *rest = list(shapes)
    assert got[first] == sizes[first] and sum(got.values()) == total
    densities = [got[k] / sizes[k] for k in rest]
    assert max(densities) - min(densities) < 2 / min(sizes[k] for k in rest)  # one density, up to rounding


def test_a_user_allocation_that_misses_the_total_is_refused():
    registry.register_allocation("half_off", description="counts that do not add up")(
        lambda shapes, total: {n: 0 for n in shapes})
    try:
        with pytest.raises(allocation.AllocationError, match=r"allocation half_off: its counts sum to 0; "
                                                             r"expected exactly 16,638"):
            allocation.counts_for("half_off", shapes_of("lenet300", "mnist"), 16_638)
    finally:
        del registry.ALLOCATIONS["half_off"]


def test_any_score_with_any_allocation_and_the_hashes_of_the_methods_own_scopes_unchanged(tmp_path, mnist_pt):
    plain = settings(train={"epochs": 1, "train_subset": 300})
    assert "allocation" not in contracts.mask_contract(plain, "snip", 16, 0).to_dict()
    assert contracts.init_contract(plain, "lenet300", "mnist", 0, "pytorch_default").to_dict()["prune"] == \
        {"include_bias": False, "include_norm": False}
    for method, alloc in (("snip", "erk"), ("global_magnitude", "uniform"), ("random", "er")):
        s = settings(train={"epochs": 1, "train_subset": 300}, prune={"allocation": alloc},
                     grid={"methods": [method]})
        # the init (and the scores) do not depend on the allocation: only the mask reruns
        assert contracts.init_contract(s, "lenet300", "mnist", 0, "pytorch_default").hash() == \
            contracts.init_contract(plain, "lenet300", "mnist", 0, "pytorch_default").hash()
        assert contracts.score_contract(s, method, 0).hash() == contracts.score_contract(plain, method, 0).hash()
        cell = run_cell(tmp_path / alloc, mnist_pt, s, "lenet300", method, 16, until="mask")
        from prunelib.foundations.artifacts import load_pt

        blob = load_pt(cell.mask)
        kept = {n: int(m.sum()) for n, m in blob["masks"].items()}
        shapes = {n: tuple(m.shape) for n, m in blob["masks"].items()}
        assert kept == allocation.counts_for(alloc, shapes, kept_count(266_200, 16))
        assert blob["meta"]["allocation"] == alloc and blob["meta"]["scope"] == alloc


@pytest.mark.e2e
def test_snip_with_erk_runs_through_the_grid_labelled(tmp_path, mnist_root):
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({
        "preset": "fast", "device": "cpu", "data_dir": str(mnist_root), "prune": {"allocation": "erk"},
        "grid": {"archs": ["lenet300"], "datasets": ["mnist"], "methods": ["snip"], "ratios": [1, 16], "seeds": [0]},
        "train": {"epochs": 1, "train_subset": 500, "batch_size": 100}}))
    proc = subprocess.run([SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--directory", str(tmp_path), "--cores", "2"],
                          capture_output=True, text=True, timeout=HANG_SECONDS)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = pd.read_parquet(tmp_path / "results/all.parquet")
    snip = rows[rows["method"] == "snip"].iloc[0]
    assert snip["allocation"] == "erk" and snip["n_kept"] == kept_count(266_200, 16)
    table = (tmp_path / "reports/tables/mnist_lenet300.md").read_text()
    assert "| snip+erk " in table
    audit = subprocess.run([PYTHON, "-m", "prunelib", "audit", "mask",
                            "results/mnist/lenet300/seed0/snip/r16/mask.pt"], cwd=tmp_path, capture_output=True,
                           text=True)
    assert audit.returncode == 0 and "method snip, allocation erk, r = 16" in audit.stdout, audit.stdout
