"""Sanity-check variants: each one's invariants, on hand-made tensors and through the
mask and train stages."""

import pytest
import torch

from prunelib import config, stages

from prunelib.methods import variants
from prunelib.foundations.artifacts import load_pt
from prunelib.methods.masking import kept_count, select_masks

from cells import run_cell, settings


def _scores(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"a.weight": torch.rand(20, 30, generator=g, dtype=torch.float64),
            "b.weight": torch.rand(10, 20, generator=g, dtype=torch.float64)}


def test_shuffle_layer_keeps_each_tensors_density_and_nothing_else():
    masks, _ = select_masks(_scores(), 4, "global", 0)
    shuffled = variants.shuffle_layer(masks, seed=1)
    for n in masks:
        assert int(shuffled[n].sum()) == int(masks[n].sum())  # the layer's density
        assert shuffled[n].shape == masks[n].shape and not torch.equal(shuffled[n], masks[n])
    again = variants.shuffle_layer(masks, seed=1)
    other = variants.shuffle_layer(masks, seed=2)
    assert all(torch.equal(again[n], shuffled[n]) for n in masks)  # the record reproduces it
    assert any(not torch.equal(other[n], shuffled[n]) for n in masks)


def test_shuffle_weights_keeps_the_multiset_of_surviving_weights():
    g = torch.Generator().manual_seed(0)
    state = {"a.weight": torch.randn(20, 30, generator=g), "a.bias": torch.randn(20, generator=g)}
    before = {k: v.clone() for k, v in state.items()}
    masks, _ = select_masks({"a.weight": state["a.weight"].abs()}, 3, "global", 0)
    m = masks["a.weight"]
    variants.shuffle_weights(state, masks, seed=0)
    w = state["a.weight"]
    assert torch.equal(w[m].sort().values, before["a.weight"][m].sort().values)  # same multiset
    assert not torch.equal(w[m], before["a.weight"][m])  # but moved
    assert torch.equal(w[~m], before["a.weight"][~m])  # pruned positions untouched
    assert torch.equal(state["a.bias"], before["a.bias"])  # unmasked tensors untouched


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_invert_keeps_exactly_the_complement_ranking(scope):
    scores = _scores()
    for ratio in (2, 4, 10):
        masks, _ = select_masks(scores, ratio, scope, 0)
        inv, _, record = variants.transform_mask("invert", masks, 0, scores, ratio, scope)
        assert record == {"variant": "invert", "seed": 0, "scope": scope, "stream": "tie-break (negated scores)"}
        groups = [list(scores)] if scope == "global" else [[n] for n in scores]
        for names in groups:  # within each ranking group: the k lowest-ranked weights
            flat = torch.cat([scores[n].flatten() for n in names])
            kept = torch.cat([inv[n].flatten() for n in names])
            k = kept_count(flat.numel(), ratio)
            assert int(kept.sum()) == k
            assert torch.equal(kept.nonzero().flatten(), flat.argsort()[:k].sort().values)
        if ratio == 2:  # at half density (even counts) invert is the mask's complement
            assert all(torch.equal(inv[n], ~masks[n]) for n in masks)


def test_invert_meets_the_count_among_ties():
    scores = {"w": torch.tensor([1.0, 1.0, 1.0, 1.0, 2.0, 3.0])}
    inv, rows, _ = variants.transform_mask("invert", {"w": torch.ones(6, dtype=torch.bool)}, 0, scores, 3, "global")
    assert int(inv["w"].sum()) == 2 and not bool(inv["w"][4:].any()) and rows[0]["tied_at_threshold"] == 4


def test_unknown_variant_is_refused():
    with pytest.raises(ValueError, match="unknown variant 'flip'; allowed: none, shuffle_layer"):
        variants.transform_mask("flip", {}, 0)


S = settings(train={"epochs": 1, "train_subset": 256, "batch_size": 64},
             grid={"archs": ["lenet300"], "datasets": ["mnist"], "methods": ["global_magnitude"], "ratios": [1, 4],
                   "seeds": [3], "variants": list(config.VARIANTS)})


@pytest.fixture(scope="module")
def cells(tmp_path_factory, mnist_pt):
    """One folder per variant (``none`` is the method itself), each its cell's init -> train."""
    root = tmp_path_factory.mktemp("variants")
    for v in config.VARIANTS:
        run_cell(root, mnist_pt, S, "lenet300", "global_magnitude", 4, seed=3, variant=v, until="train",
                 folder=root / v)
    return root


def test_stages_record_each_variant_and_its_seed(cells):
    init = load_pt(cells / "none" / "init.pt")["state_dict"]
    # every variant's cell starts from the same initial weights (same seed and scheme)
    assert all(torch.equal(load_pt(cells / v / "init.pt")["state_dict"]["fc1.weight"], init["fc1.weight"])
               for v in config.VARIANTS)
    base = load_pt(cells / "none" / "mask.pt")
    assert "variant" not in base["meta"]
    for v in ("shuffle_layer", "invert"):
        meta = load_pt(cells / v / "mask.pt")["meta"]
        assert meta["variant"]["variant"] == v and meta["variant"]["seed"] == 3
        assert meta["n_kept"] == base["meta"]["n_kept"] == kept_count(266_200, 4)
    for v in ("reinit", "shuffle_weights"):
        assert torch.equal(load_pt(cells / v / "mask.pt")["masks"]["fc1.weight"], base["masks"]["fc1.weight"])
        assert load_pt(cells / v / "final.pt")["meta"]["variant"] == {
            "variant": v, "seed": 3, "stream": {"reinit": "variant:reinit",
                                                "shuffle_weights": "variant:shuffle_weights:<tensor>"}[v]}
    # reinit trains from other initial weights: same network, fresh draw
    fresh = stages.fresh_init_state(load_pt(cells / "none" / "init.pt")["meta"], 3, "variant:reinit")
    assert set(fresh) == set(init) and not torch.equal(fresh["fc1.weight"], init["fc1.weight"])
    assert fresh["fc1.weight"].std().item() == pytest.approx(init["fc1.weight"].std().item(), rel=0.05)
    finals = {v: load_pt(cells / v / "final.pt")["state_dict"]["fc1.weight"] for v in config.VARIANTS}
    for v in config.VARIANTS:
        m = load_pt(cells / v / "mask.pt")["masks"]["fc1.weight"]
        assert bool((finals[v][~m] == 0).all()), v  # every variant trains its own mask
        if v != "none":
            assert not torch.equal(finals[v], finals["none"]), v
