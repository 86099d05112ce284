"""Exact selection: the radix k-th largest, tie records, the generic multi-round loop."""

import pytest
import torch

from prunelib.config import contracts
from prunelib.methods import variants
from prunelib.methods.masking import ScoreError, kept_count, kth_largest, multi_round_select, select_masks, select_top


def adversarial(n: int, dtype, seed: int, signed: bool) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, generator=g, dtype=dtype) * 10.0 ** (seed % 40 - 20)
    if not signed:
        x = x.abs()
    x[torch.randint(0, n, (n // 10,), generator=g)] = 0.0
    x[torch.randint(0, n, (n // 20,), generator=g)] = -0.0
    x[torch.randint(0, n, (n // 20,), generator=g)] = float(x[5])   # a large tie group
    return x


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("signed", [False, True])
def test_kth_largest_is_kthvalue_exactly(dtype, signed):
    for seed in range(4):
        x = adversarial(70_000 + 997 * seed, dtype, seed, signed)
        n = x.numel()
        for k in (1, 2, n // 3, n // 2, n - 1, n):
            assert kth_largest(x, k) == torch.kthvalue(x, n - k + 1).values


@pytest.mark.parametrize("signed", [False, True])
def test_select_top_keeps_exactly_k_and_records_every_tie(signed):
    x = adversarial(80_000, torch.float32, 7, signed)
    for k in (1, 5_000, 40_000, 79_999):
        sel = select_top(x, k, torch.Generator().manual_seed(0))
        t = torch.kthvalue(x, x.numel() - k + 1).values
        assert int(sel.keep.sum()) == k
        assert sel.n_tied == int((x == t).sum()) == sel.tied.numel()
        assert bool((x[sel.keep] >= t).all()) and bool((x[~sel.keep] <= t).all())
        assert sel.n_tied_kept == k - int((x > t).sum())


def test_global_tie_records_per_tensor_match_a_direct_count():
    g = torch.Generator().manual_seed(1)
    scores = {n: torch.randint(0, 50, shape, generator=g).float() for n, shape in
              (("a", (300, 400)), ("b", (50_000,)), ("c", (7, 11)))}
    masks, rows = select_masks(scores, 3, "global", seed=0)
    flat = torch.cat([s.flatten() for s in scores.values()])
    k = kept_count(flat.numel(), 3)
    t = torch.kthvalue(flat, flat.numel() - k + 1).values
    assert sum(r["kept"] for r in rows) == k
    for r in rows:
        s, m = scores[r["name"]], masks[r["name"]]
        assert r["threshold"] == float(t)
        assert r["tied_at_threshold"] == int((s == t).sum())
        assert r["tied_kept"] == int(((s == t) & m).sum())
        assert r["kept"] == int(m.sum())


class Toy:
    """A multi-round scorer over fixed scores: pruned entries are zeroed, survivors keep theirs."""

    def __init__(self, values):
        self.base = values.clone()
        self.live = torch.ones_like(values, dtype=torch.bool)
        self.removed_twice = False

    def score(self):
        return torch.where(self.live, self.base, torch.zeros_like(self.base))

    def remove(self, index):
        self.removed_twice |= bool((~self.live[index]).any())
        self.live[index] = False


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_multi_round_selection_is_exact_monotone_and_ranks_only_when_asked(scope):
    shapes = {"a": torch.Size([40, 50]), "b": torch.Size([3000]), "c": torch.Size([7])}
    values = torch.rand(5007, generator=torch.Generator().manual_seed(2))
    toy = Toy(values)
    masks, rows, rank = multi_round_select(toy.score, toy.remove, shapes, 8, 5, scope, seed=0)
    assert rank is None and not toy.removed_twice
    if scope == "global":
        assert sum(r["kept"] for r in rows) == kept_count(5007, 8)
    else:
        assert [r["kept"] for r in rows] == [kept_count(s.numel(), 8) for s in shapes.values()]
    flat = torch.cat([m.flatten() for m in masks.values()])
    assert torch.equal(flat, toy.live)
    # with fixed scores, 5 rounds keep what one selection at r keeps (same per-round order)
    if scope == "global":
        k = kept_count(5007, 8)
        assert torch.equal(flat.nonzero().flatten(), values.argsort(descending=True)[:k].sort().values)
    toy2 = Toy(values)
    masks2, _, rank2 = multi_round_select(toy2.score, toy2.remove, shapes, 8, 5, scope, seed=0, ranking=True)
    assert all(torch.equal(masks[n], masks2[n]) for n in shapes)
    r = torch.cat([rank2[n].flatten() for n in shapes])
    assert bool((r[flat].min() > r[~flat].max()))            # survivors rank above every pruned weight


def test_multi_round_selection_refuses_non_finite_scores_and_bad_settings():
    shapes = {"a": torch.Size([10])}
    bad = torch.ones(10)
    bad[3] = float("nan")
    with pytest.raises(ScoreError, match="round 1 has 1 NaN or infinite scores among 10"):
        multi_round_select(lambda: bad, lambda i: None, shapes, 2, 3, "global", 0, method="toy")
    with pytest.raises(ValueError, match="scope = 'all' is not allowed"):
        multi_round_select(lambda: bad, lambda i: None, shapes, 2, 3, "all", 0)
    with pytest.raises(ValueError, match="rounds = 0 is not allowed"):
        multi_round_select(lambda: bad, lambda i: None, shapes, 2, 0, "global", 0)


def test_only_invert_needs_the_ranking():
    # the stage's record of a variant is its contract's dict form (as the mask's meta holds it)
    assert variants.needs_ranking(contracts.variant_contract("invert", 0).to_dict())
    assert variants.needs_ranking("invert")
    assert contracts.variant_contract("none", 0) is None
    assert not any(variants.needs_ranking(v) for v in (None, "none", "shuffle_layer", "reinit",
                                                       contracts.variant_contract("shuffle_weights", 1).to_dict()))
