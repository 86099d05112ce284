import pytest
import torch

from prunelib.methods.masking import ScoreError, kept_count, mask_summary, select_masks


def test_kept_count_rounds_half_up_exactly():
    assert kept_count(10, 4) == 3        # 2.5 -> 3
    assert kept_count(7, 2) == 4         # 3.5 -> 4
    assert kept_count(9, 4) == 2         # 2.25 -> 2
    assert kept_count(3, 64) == 0
    assert kept_count(100, 1) == 100
    assert kept_count(430_500, 64) == 6727   # 6726.5625 -> 6727
    with pytest.raises(ValueError):
        kept_count(10, 0.5)


def _scores(seed=0, shapes=((20, 5, 5), (7,), (1,), (50, 3))):
    g = torch.Generator().manual_seed(seed)
    return {f"t{i}": torch.rand(s, generator=g) for i, s in enumerate(shapes)}


@pytest.mark.parametrize("ratio", [1, 1.5, 2, 3, 4, 8, 16, 32, 64, 1000])
def test_global_kept_count_is_exact(ratio):
    scores = _scores()
    masks, rows = select_masks(scores, ratio, "global", seed=0)
    n = sum(s.numel() for s in scores.values())
    assert sum(int(m.sum()) for m in masks.values()) == kept_count(n, ratio)
    assert {k: m.shape for k, m in masks.items()} == {k: s.shape for k, s in scores.items()}
    assert all(m.dtype == torch.bool for m in masks.values())


@pytest.mark.parametrize("ratio", [1, 2, 3, 4, 8, 64])
def test_layer_kept_count_is_exact_per_tensor_including_tiny_ones(ratio):
    scores = _scores()
    masks, rows = select_masks(scores, ratio, "layer", seed=0)
    for name, s in scores.items():
        assert int(masks[name].sum()) == kept_count(s.numel(), ratio), name
    # a 1-element tensor keeps its weight until r > 2, then collapses (round(1/r) = 0)
    assert bool(masks["t2"].all()) == (ratio <= 2)
    assert {r["name"]: r["collapsed"] for r in rows}["t2"] == (ratio > 2)


@pytest.mark.parametrize("scope", ["global", "layer"])
@pytest.mark.parametrize("ratio", [2, 3, 7, 64])
def test_all_ties_still_prune_exactly(scope, ratio):
    scores = {"a": torch.zeros(33, 3), "b": torch.zeros(10)}
    masks, rows = select_masks(scores, ratio, scope, seed=1)
    if scope == "global":
        assert sum(int(m.sum()) for m in masks.values()) == kept_count(109, ratio)
    else:
        assert [int(masks[n].sum()) for n in scores] == [kept_count(99, ratio), kept_count(10, ratio)]
    # every weight tied at the threshold (where there is one: 0 < k < n), and exactly
    # the needed number of them kept
    with_threshold = [r for r in rows if 0 < r["kept"] < r["numel"]] if scope == "layer" else rows
    assert sum(r["tied_at_threshold"] for r in rows) == sum(r["numel"] for r in with_threshold)
    assert sum(r["tied_kept"] for r in rows) == sum(int(m.sum()) for m in masks.values())


def test_partial_tie_group_keeps_only_what_is_needed():
    # 4 clear winners, then a group of 10 equal scores of which 3 are needed for k = 7
    s = torch.tensor([9.0, 8.0, 7.0, 6.0] + [5.0] * 10 + [1.0] * 6)
    masks, rows = select_masks({"w": s}, 20 / 7, "global", seed=3)
    m = masks["w"]
    assert int(m.sum()) == 7
    assert m[:4].all() and not m[14:].any()
    assert int(m[4:14].sum()) == 3
    assert rows[0]["tied_at_threshold"] == 10 and rows[0]["tied_kept"] == 3 and rows[0]["threshold"] == 5.0


def test_ties_are_broken_by_the_seed_deterministically():
    s = {"w": torch.ones(1000)}
    a, _ = select_masks(s, 4, "global", seed=5)
    b, _ = select_masks(s, 4, "global", seed=5)
    c, _ = select_masks(s, 4, "global", seed=6)
    assert torch.equal(a["w"], b["w"])
    assert not torch.equal(a["w"], c["w"])
    assert int(a["w"].sum()) == int(c["w"].sum()) == 250


def test_higher_score_is_kept():
    s = {"w": torch.arange(10.0)}
    masks, _ = select_masks(s, 5, "global", seed=0)
    assert masks["w"].tolist() == [False] * 8 + [True] * 2


def test_global_collapse_is_detected_and_recorded():
    scores = {"big": torch.rand(1000) + 1.0, "small": torch.rand(50)}
    masks, rows = select_masks(scores, 10, "global", seed=0)
    by = {r["name"]: r for r in rows}
    assert by["small"]["collapsed"] and by["small"]["kept"] == 0
    assert not by["big"]["collapsed"]
    assert mask_summary(rows)["collapsed_layers"] == ["small"]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_scores_are_an_error_naming_method_tensor_and_count(bad):
    s = {"ok": torch.rand(5), "fc1.weight": torch.tensor([1.0, bad, bad, 2.0])}
    with pytest.raises(ScoreError, match=r"method snip: tensor fc1.weight has 2 NaN or infinite scores out of 4"):
        select_masks(s, 2, "global", seed=0, method="snip")


def test_dense_scope_keeps_everything_and_rejects_other_ratios():
    s = _scores()
    masks, rows = select_masks(s, 1, "all", seed=0)
    assert all(bool(m.all()) for m in masks.values())
    assert mask_summary(rows)["empirical_ratio"] == 1.0
    with pytest.raises(ValueError, match="ratio must be 1"):
        select_masks(s, 2, "all", seed=0)


def test_rows_have_the_audit_columns():
    _, rows = select_masks(_scores(), 4, "global", seed=0)
    assert set(rows[0]) >= {"name", "shape", "numel", "kept", "density", "collapsed",
                            "tied_at_threshold", "tied_kept"}
    assert rows[0]["shape"] == "20x5x5" and rows[0]["numel"] == 500
    assert rows[0]["density"] == rows[0]["kept"] / 500
