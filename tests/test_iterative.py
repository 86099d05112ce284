"""Iterative magnitude pruning: one round of every preset checked by hand on real MNIST,
exact densities for every round, and the chain's ranking."""

import dataclasses
from fractions import Fraction

import pytest
import torch

from prunelib import config, stages

from prunelib.config import contracts
from prunelib.catalogue import registry
from prunelib.methods import iterative

from prunelib.nets import models
from prunelib.foundations.paths import imp_round_files
from prunelib.foundations.artifacts import load_pt, read_parquet_rows
from prunelib.methods.masking import kept_count, removal_ranking
from prunelib.train.loop import run_steps

from cells import settings

# 120 training examples in batches of 60: S = 2 steps per epoch, T = 4 epochs = 8 steps.
# Step schedule: lr 0.05 in epochs 0-1 (positions 0-3), 0.005 in epochs 2-3 (4-7).
# lth_rewind rewinds to step round(0.25 * 8) = 2, gimp to round(0.75 * 8) = 6.
#: The magnitude chains (woodfisher_imp prunes by WoodFisher: tests/test_e2e_second_order.py).
MAGNITUDE_CHAINS = tuple(m for m in config.IMP_METHODS if not registry.method(m).imp.get("pruner"))
CFG = {
    "grid": {"archs": ["lenet300"], "datasets": ["mnist"], "methods": list(MAGNITUDE_CHAINS),
             "ratios": [1, 2], "seeds": [0]},
    "train": {"epochs": 4, "train_subset": 120, "batch_size": 60, "lr_schedule": "step",
              "milestones": [2], "gamma": 0.1, "lr": 0.05},
    "iterative": {"round_factor": 0.5, "rewind_fraction": 0.25, "gimp_fraction": 0.75},
}
S = settings(CFG)
T, SPE = 8, 2


def lr_by_hand(p: int) -> float:
    return 0.05 if p // SPE < 2 else 0.05 * 0.1


# method -> (the weights survivors are reset to, retraining positions, lr of every step)
EXPECTED = {
    "lth": ("init", range(0, 8), lr_by_hand),
    "lth_rewind": ("step2", range(2, 8), lr_by_hand),
    "gimp": ("step6", range(0, 8), lr_by_hand),
    "lrr": ("trained", range(0, 8), lr_by_hand),
    "imp_finetune": ("trained", range(8, 16), lambda p: lr_by_hand(T - 1)),
}


@pytest.fixture(scope="module")
def chain(tmp_path_factory, mnist_pt):
    """Round 0 and round 1 of every preset, as the workflow runs them."""
    root = tmp_path_factory.mktemp("imp")
    stages.run_init(contracts.init_contract(S, "lenet300", "mnist", 0, "pytorch_default"), root / "init.pt",
                    root / "init.parquet")
    for method in MAGNITUDE_CHAINS:
        d = root / method
        r0, r1 = imp_round_files(d / "round0"), imp_round_files(d / "round1")
        stages.run_imp_round(contracts.imp_round_contract(S, method, 0, "mnist", 0), mnist_pt, r0,
                             init_path=root / "init.pt")
        stages.run_imp_round(contracts.imp_round_contract(S, method, 0, "mnist", 1), mnist_pt, r1,
                             prev_weights=r0["weights"], prev_mask=r0["mask"], rewind_path=r0["rewind"])
    return root


def _lenet300(state: dict) -> torch.nn.Module:
    model = models.build("lenet300", 10, 1, 28)
    model.load_state_dict(state)
    return model


def _dense_by_hand(mnist, init_state, until: int | None = None):
    model = _lenet300(init_state)
    ts = S.train.for_dataset("mnist")
    ckpt = {until: None} if until is not None else None
    run_steps(model, {}, mnist, "mnist", ts, 0, torch.device("cpu"), range(0, T), lr_by_hand, checkpoints=ckpt)
    return (ckpt[until] if until is not None else
            {k: v.detach().clone() for k, v in model.state_dict().items()})


def _equal(a: dict, b: dict) -> bool:
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_plans_resolve_the_presets():
    plans = {m: iterative.resolve_plan(config.imp_spec(S, m), SPE, 4)
             for m in (*MAGNITUDE_CHAINS, "woodfisher_imp")}
    assert {m: (p.rewind_step, p.rewind_lr, p.retrain_steps) for m, p in plans.items()} == {
        "imp_finetune": (None, False, 8), "lth": (0, True, 8), "lth_rewind": (2, True, 6),
        "lrr": (None, True, 8), "gimp": (6, True, 8), "woodfisher_imp": (None, False, 8)}
    # (woodfisher_imp: imp_finetune's schedule, its pruning step second-order: tests/test_e2e_second_order.py)
    assert plans["woodfisher_imp"].round_positions() == EXPECTED["imp_finetune"][1]
    assert {m: p.round_positions() for m, p in plans.items() if m in EXPECTED} == {m: e[1] for m, e in
                                                                                  EXPECTED.items()}


def test_round0_is_the_dense_training_and_keeps_the_rewind_point(chain, mnist):
    init = load_pt(chain / "init.pt")["state_dict"]
    dense = _dense_by_hand(mnist, init)
    for method, step in (("lth", 0), ("lth_rewind", 2), ("gimp", 6), ("lrr", 0)):
        r0 = chain / method / "round0"
        assert _equal(load_pt(r0 / "weights.pt")["state_dict"], dense), method
        rewind = load_pt(r0 / "rewind.pt")
        assert rewind["meta"]["step"] == step
        assert _equal(rewind["state_dict"], init if step == 0 else _dense_by_hand(mnist, init, until=step)), method
    log = read_parquet_rows(chain / "lth" / "round0" / "train_log.parquet")
    assert [(r["step"], r["lr"]) for r in log] == [(2, 0.05), (4, 0.05), (6, 0.05 * 0.1), (8, 0.05 * 0.1)]


@pytest.mark.parametrize("method", MAGNITUDE_CHAINS)
def test_one_round_by_hand(chain, mnist, method):
    """Which weights round 1 prunes, what the survivors are reset to, and the learning
    rate of every retraining step, each computed here independently of iterative.py."""
    d = chain / method
    trained = load_pt(d / "round0" / "weights.pt")["state_dict"]
    names = ["fc1.weight", "fc2.weight", "fc3.weight"]
    # 1. pruning: the kept_count(N, 2) largest |theta| of the trained weights, globally
    flat = torch.cat([trained[n].abs().flatten() for n in names])
    k = kept_count(flat.numel(), 2)
    keep = torch.zeros(flat.numel(), dtype=torch.bool)
    top = torch.topk(flat, k + 1).values
    assert top[k - 1] > top[k]  # no tie at the threshold, so the set is unique
    keep[torch.topk(flat, k).indices] = True
    blob = load_pt(d / "round1" / "mask.pt")
    assert (blob["meta"]["n_kept"], blob["meta"]["target_kept"], blob["meta"]["ratio"]) == (k, k, 2.0)
    offset = 0
    for n in names:
        numel = trained[n].numel()
        assert torch.equal(blob["masks"][n], keep[offset:offset + numel].view_as(trained[n])), n
        offset += numel
    # 2. reset and 3. retraining schedule: replay the round by hand and compare bit for bit
    start_from, positions, lr_of = EXPECTED[method]
    init = load_pt(chain / "init.pt")["state_dict"]
    start = {"init": init, "trained": trained,
             "step2": _dense_by_hand(mnist, init, until=2),
             "step6": _dense_by_hand(mnist, init, until=6)}[start_from]
    model = _lenet300(start)
    run_steps(model, blob["masks"], mnist, "mnist", S.train.for_dataset("mnist"), 0, torch.device("cpu"),
              positions, lr_of)
    got = load_pt(d / "round1" / "weights.pt")
    assert _equal(got["state_dict"], {k: v.detach() for k, v in model.state_dict().items()}), method
    log = read_parquet_rows(d / "round1" / "train_log.parquet")
    assert log[0]["lr"] == lr_of(positions.start)  # the learning rate right after rewinding
    assert [r["step"] for r in log][-1] == positions.stop
    for n in names:  # pruned weights are exactly zero after retraining
        assert bool((got["state_dict"][n][~blob["masks"][n]] == 0).all())


def test_round_densities_are_exact_and_land_on_every_ratio():
    d = config.imp_densities([1, 25], 0.8)
    assert len(d) == 15 and d[:14] == [Fraction(4, 5) ** j for j in range(1, 15)] and d[-1] == Fraction(1, 25)
    d = config.imp_densities([64, 1, 4, 16], 0.8)
    assert [1 / x for x in d if (1 / x).denominator == 1 and 1 / x in (4, 16, 64)] == [4, 16, 64]
    assert all(a > b for a, b in zip(d, d[1:])) and all(b / a >= Fraction(4, 5) for a, b in zip([1] + d, d))
    assert config.imp_round_of([1, 4, 16, 64], 0.8, 4) == d.index(Fraction(1, 4)) + 1
    # a larger ratio only appends rounds: the chain to r = 4 is a prefix of the chain to 64,
    # so adding it to the grid reruns nothing already computed
    assert config.imp_densities([1, 4, 64], 0.8)[:len(config.imp_densities([1, 4], 0.8))] == \
        config.imp_densities([1, 4], 0.8)
    n = 266_200
    counts = [kept_count(n, 1 / x) for x in config.imp_densities([1, 25], 0.8)]
    assert counts[0] == 212_960 and counts[-1] == kept_count(n, 25) == 10_648


def test_layerwise_rounds_prune_every_tensor_to_the_density():
    g = torch.Generator().manual_seed(0)
    w = {"a": torch.randn(10, 30, generator=g), "b": torch.randn(7, 3, generator=g)}
    masks = {n: torch.ones_like(v, dtype=torch.bool) for n, v in w.items()}
    pruned_round = ranked_by = None
    for j, d in enumerate(config.imp_densities([1, 4], 0.8), start=1):
        new, rows, mag = iterative.prune_round(w, masks, d, "layer", 0, j)
        assert {r["name"]: r["kept"] for r in rows} == {n: kept_count(v.numel(), 1 / d) for n, v in w.items()}
        assert all(bool((new[n] <= masks[n]).all()) for n in w)  # pruned weights stay pruned
        for n in w:  # the survivors are the largest magnitudes of the tensor
            assert w[n].abs()[new[n]].min() >= w[n].abs()[~new[n]].max()
        pruned_round, ranked_by = iterative.update_ranking(pruned_round, ranked_by, new, masks, mag, j)
        masks = new
    rank = removal_ranking(pruned_round, ranked_by)
    for n in w:  # the chain's ranking reproduces the last mask: its top entries per tensor
        k = int(masks[n].sum())
        assert torch.equal(rank[n].flatten().argsort(descending=True)[:k].sort().values,
                           masks[n].flatten().nonzero().flatten())


def test_resolve_plan_rejects_impossible_schedules():
    spec = config.imp_spec(S, "lth")
    with pytest.raises(ValueError, match="retrain_steps = 9 with rewind_lr"):
        iterative.resolve_plan(dataclasses.replace(spec, retrain_steps=9), SPE, 4)
    with pytest.raises(ValueError, match="rewind_weights_to = 20 is outside"):
        iterative.resolve_plan(dataclasses.replace(spec, rewind_weights_to=20), SPE, 4)


def test_a_failed_round_fails_the_rest_of_the_chain_with_exact_masks(chain, mnist_pt, tmp_path):
    """A diverged round leaves NaN weights: the next round records the failure, trains
    nothing, and still writes a mask of exactly the round's density."""
    from prunelib.foundations.artifacts import save_pt
    import shutil

    prev = tmp_path / "round0"
    shutil.copytree(chain / "lth" / "round0", prev)
    blob = load_pt(prev / "weights.pt")
    blob["state_dict"]["fc1.weight"][0, :5] = float("nan")
    blob["meta"].update(status="failed", reason="training loss became nan in epoch 2 (lr 0.05)")
    save_pt(blob, prev / "weights.pt")
    stages.run_imp_round(contracts.imp_round_contract(S, "lth", 0, "mnist", 1), mnist_pt,
                         imp_round_files(tmp_path / "round1"), prev_weights=prev / "weights.pt",
                         prev_mask=prev / "mask.pt", rewind_path=prev / "rewind.pt")
    out = load_pt(tmp_path / "round1" / "weights.pt")["meta"]
    assert out["status"] == "failed" and out["reason"].startswith("round 0 failed: training loss became nan")
    assert read_parquet_rows(tmp_path / "round1" / "train_log.parquet") == []
    m = load_pt(tmp_path / "round1" / "mask.pt")["meta"]
    assert m["n_kept"] == m["target_kept"] == kept_count(266_200, 2)
