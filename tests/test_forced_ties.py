"""Ties forced through each method, via the score and mask stages on LeNet-300-100 and
real MNIST: constant weights for the magnitude-like methods (magnitude, LAMP, LAP) and
dead units (zero rows, zero bias: zero weights, zero gradients, zero activations) for
the data-driven ones and SynFlow.  Each checks the exact kept count and the tie records
of the stage's mask.parquet against the scores on disk.

A selection that keeps or drops a tie group whole (the 2022 study's under-pruning of
GraSP and OBD) fails the kept count; one that draws the wrong number or records the
wrong tie fails the per-tensor records.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from prunelib import stages
from prunelib.config import contracts
from prunelib.foundations.artifacts import load_pt, read_parquet_rows, save_pt
from prunelib.methods.masking import kept_count
from prunelib.methods.score_checks import ScorerContractError

from cells import settings

N = 266_200  # prunable weights of lenet300
LIVE = 10    # fc1 units left alive by the dead-unit init
# GraSP scores its network at the weights it was given (reinit_linear false): redrawing
# lenet300's Linear weights, as the authors' code does by default, would revive the dead units.
SETTINGS = settings(score={"batch_size": 64, "per_method": {
    "synflow": {"rounds": 10}, "grasp": {"reinit_linear": False}}})
C = 0.125    # a power of two: sums of C^2 are exact, so LAMP's cross-tensor ties are exact


@pytest.fixture(scope="module")
def base_init(tmp_path_factory):
    d = tmp_path_factory.mktemp("ties")
    stages.run_init(contracts.init_contract(SETTINGS, "lenet300", "mnist", 0, "pytorch_default"),
                    d / "init.pt", d / "init.parquet")
    return d


def _derived_init(base, name, change) -> Path:
    blob = load_pt(base / "init.pt")
    change(blob["state_dict"])
    save_pt(blob, base / f"{name}.pt")
    return base / f"{name}.pt"


@pytest.fixture(scope="module")
def constant_init(base_init):
    def change(state):
        for n in ("fc1.weight", "fc2.weight", "fc3.weight"):
            state[n].fill_(C)

    return _derived_init(base_init, "constant", change)


@pytest.fixture(scope="module")
def dead_init(base_init):
    def change(state):
        # fc1 units LIVE.. feed nothing: zero weights and zero bias, so ReLU'(0) = 0 and
        # their outgoing fc2 columns see a zero activation
        state["fc1.weight"][LIVE:] = 0
        state["fc1.bias"][LIVE:] = 0

    return _derived_init(base_init, "dead", change)


def score_and_mask(init_path, method, ratio, mnist_pt, d, seed=0):
    stages.run_score(contracts.score_contract(SETTINGS, method, seed), init_path, mnist_pt, d / "scores.pt")
    stages.run_mask(contracts.mask_contract(SETTINGS, method, ratio, seed), init_path, d / "scores.pt",
                    d / "mask.pt", d / "mask.parquet")
    scores = {n: s.to(torch.float64) for n, s in load_pt(d / "scores.pt")["scores"].items()}
    return read_parquet_rows(d / "mask.parquet"), load_pt(d / "mask.pt"), scores


def check_exact_with_recorded_ties(rows, mask_blob, scores, ratio, scope):
    """Kept count exact; every row's tie record equals what the scores and mask say."""
    masks = mask_blob["masks"]
    if scope == "layer":
        assert [r["kept"] for r in rows] == [kept_count(r["numel"], ratio) for r in rows]
    else:
        assert sum(r["kept"] for r in rows) == kept_count(N, ratio)
        assert len({r["threshold"] for r in rows}) == 1
    assert mask_blob["meta"]["n_kept"] == mask_blob["meta"]["target_kept"] == sum(r["kept"] for r in rows)
    for r in rows:
        s, m, t = scores[r["name"]], masks[r["name"]], r["threshold"]
        assert r["kept"] == int(m.sum())
        assert bool(m[s > t].all()) and not bool(m[s < t].any()), r["name"]
        assert r["tied_at_threshold"] == int((s == t).sum()), r["name"]
        assert r["tied_kept"] == int((m & (s == t)).sum()), r["name"]
    tied, tied_kept = sum(r["tied_at_threshold"] for r in rows), sum(r["tied_kept"] for r in rows)
    assert 0 < tied_kept < tied  # the tie was forced and split, not kept or dropped whole
    return tied, tied_kept


def constant_scores_masked(init_path, method, ratio, mnist_pt, d, seed=0):
    """Magnitude on constant weights scores every weight alike: the score stage refuses
    that (its mask would be a random draw under the method's name, prunelib/methods/
    score_checks.py).  The selection's handling of one tie across the network is still
    tested: the same scores, written as the stage would, through the mask stage."""
    with pytest.raises(ScorerContractError, match=f"method {method}: every one of its {N:,} scores is 0.125"):
        stages.run_score(contracts.score_contract(SETTINGS, method, seed), init_path, mnist_pt, d / "scores.pt")
    assert not (d / "scores.pt").exists()
    blob = load_pt(init_path)
    scores = {n: blob["state_dict"][n].abs() for n in blob["meta"]["prunable"]}
    save_pt({"scores": scores, "meta": {"method": method, "seconds": 0.0}}, d / "scores.pt")
    stages.run_mask(contracts.mask_contract(SETTINGS, method, ratio, seed), init_path, d / "scores.pt",
                    d / "mask.pt", d / "mask.parquet")
    return (read_parquet_rows(d / "mask.parquet"), load_pt(d / "mask.pt"),
            {n: v.to(torch.float64) for n, v in scores.items()})


def test_global_magnitude_on_constant_weights_draws_the_kept_count_from_one_tie(constant_init, mnist_pt,
                                                                                 tmp_path):
    rows, blob, scores = constant_scores_masked(constant_init, "global_magnitude", 4, mnist_pt, tmp_path)
    tied, tied_kept = check_exact_with_recorded_ties(rows, blob, scores, 4, "global")
    assert (tied, tied_kept) == (N, kept_count(N, 4))
    assert all(r["threshold"] == C for r in rows)
    # the draw is spread over every tensor, not taken from the first one
    assert all(0 < r["kept"] < r["numel"] for r in rows)


def test_layer_magnitude_on_constant_weights_ties_every_tensor(constant_init, mnist_pt, tmp_path):
    rows, blob, scores = constant_scores_masked(constant_init, "layer_magnitude", 16, mnist_pt, tmp_path)
    check_exact_with_recorded_ties(rows, blob, scores, 16, "layer")
    assert [(r["tied_at_threshold"], r["tied_kept"]) for r in rows] == \
        [(r["numel"], kept_count(r["numel"], 16)) for r in rows]


def test_lamp_on_constant_weights_ties_across_tensors(constant_init, mnist_pt, tmp_path):
    # constant tensors score 1/j for the j-th largest in each (exactly, C^2 a power of 2):
    # at r = 8, k = 33,275 = 3 * 1,000 + 2 * 15,137 + 1 lands on a value fc1 and fc2 share
    rows, blob, scores = score_and_mask(constant_init, "lamp", 8, mnist_pt, tmp_path)
    tied, tied_kept = check_exact_with_recorded_ties(rows, blob, scores, 8, "global")
    assert (tied, tied_kept) == (2, 1)
    assert rows[0]["threshold"] == 1 / 16_138


@pytest.mark.parametrize("method, scope", [("global_lap", "global"), ("layer_lap", "layer")])
def test_lap_on_constant_weights(constant_init, mnist_pt, tmp_path, method, scope):
    rows, blob, scores = score_and_mask(constant_init, method, 4, mnist_pt, tmp_path)
    check_exact_with_recorded_ties(rows, blob, scores, 4, scope)
    if scope == "global":
        # fc3 (C^2 sqrt(300)) > fc2 (C^3 sqrt(784) sqrt(10)) > fc1 (C^2 sqrt(100)): the cut is inside fc1
        assert [(r["tied_at_threshold"], r["tied_kept"]) for r in rows] == \
            [(235_200, kept_count(N, 4) - 31_000), (0, 0), (0, 0)]


def test_synflow_single_shot_on_constant_weights_splits_one_layers_tie(base_init, mnist_pt, tmp_path):
    """One round, so the stored scores are the ranked ones.  Constant weights and biases
    (powers of two: every flow is an exact dyadic number in float64) make each layer's
    scores equal; in float32 the long sums round differently per row, so this runs in
    float64 (the rescaled float32 path's ranking is tests/test_synflow_rescaled.py's)."""
    def change(state):
        for n, v in state.items():
            v.fill_(C)

    init = _derived_init(base_init, "constant_all", change)
    s = settings(score={"per_method": {"synflow": {"rounds": 1, "precision": "float64"}}})
    stages.run_score(contracts.score_contract(s, "synflow", 0), init, mnist_pt, tmp_path / "scores.pt")
    stages.run_mask(contracts.mask_contract(s, "synflow", 4, 0), init, tmp_path / "scores.pt", tmp_path / "mask.pt",
                    tmp_path / "mask.parquet")
    scores = {n: v.to(torch.float64) for n, v in load_pt(tmp_path / "scores.pt")["scores"].items()}
    assert all(int(torch.unique(v).numel()) == 1 for v in scores.values())
    rows = read_parquet_rows(tmp_path / "mask.parquet")
    check_exact_with_recorded_ties(rows, load_pt(tmp_path / "mask.pt"), scores, 4, "global")
    assert sorted(r["tied_at_threshold"] for r in rows) == [0, 0, next(r["numel"] for r in rows
                                                                       if 0 < r["kept"] < r["numel"])]


@pytest.mark.parametrize("method, scope", [
    ("global_gradient", "global"), ("layer_gradient", "layer"), ("snip", "global"), ("grasp", "global"),
    ("obd", "global"), ("global_activation", "global"), ("layer_activation", "layer"),
])
def test_dead_units_tie_at_zero_and_the_count_is_still_exact(dead_init, mnist_pt, tmp_path, method, scope):
    rows, blob, scores = score_and_mask(dead_init, method, 4, mnist_pt, tmp_path)
    check_exact_with_recorded_ties(rows, blob, scores, 4, scope)
    assert rows[0]["threshold"] == 0.0
    dead = int((scores["fc1.weight"][LIVE:] == 0).sum())
    assert dead == (300 - LIVE) * 784  # every weight of a dead unit scores exactly 0
    if "activation" not in method:  # (activation: fc2's score is set by the unit it feeds)
        assert int((scores["fc2.weight"][:, LIVE:] == 0).sum()) == 100 * (300 - LIVE)


def test_synflow_dead_units_tie_at_zero_in_every_round_and_each_round_is_exact(dead_init, mnist_pt, tmp_path):
    """Disconnected units carry no flow, so their weights score exactly 0 in every round;
    with fewer live weights than the final count, every round's cut falls inside that tie.
    The last round's record then tells how many survived round R-1: exactly round(N d_{R-1})."""
    rounds, r = SETTINGS.score.knobs_for("synflow")["rounds"], 16
    rows, blob, scores = score_and_mask(dead_init, "synflow", r, mnist_pt, tmp_path)
    live = int(sum(int((s > 0).sum()) for s in scores.values()))
    assert live == LIVE * 784 + 100 * LIVE + 1000 < kept_count(N, r)
    # the last round's scores are not on disk, but here they are those of the single-shot
    # scores for the live weights (pruning zero-flow weights changes no flow), and 0 or
    # "pruned" for the rest
    masks = blob["masks"]
    assert all(bool(masks[n][scores[n] > 0].all()) for n in masks)
    assert sum(r_["kept"] for r_ in rows) == kept_count(N, r)
    assert all(r_["threshold"] == 0.0 for r_ in rows)
    survivors_before_last = kept_count(N, float(r) ** ((rounds - 1) / rounds))
    assert sum(r_["tied_at_threshold"] for r_ in rows) == survivors_before_last - live
    assert sum(r_["tied_kept"] for r_ in rows) == kept_count(N, r) - live
    # the draw among the zero-flow survivors follows the seed
    stages.run_mask(contracts.mask_contract(SETTINGS, "synflow", r, 1), dead_init, tmp_path / "scores.pt",
                    tmp_path / "mask1.pt", tmp_path / "mask1.parquet")
    other = load_pt(tmp_path / "mask1.pt")["masks"]
    assert sum(int(other[n].sum()) for n in other) == kept_count(N, r)
    assert any(not torch.equal(other[n], masks[n]) for n in masks)
