"""OBS, WoodFisher and L-OBS (prunelib/methods/second_order.py, methods/scorers/obs.py):
their saliency and update against closed forms computed another way, and the artifact of
the weights they update (checksummed, refused when a byte changes, trained from)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from prunelib.catalogue import pruning, registry
from prunelib.foundations.artifacts import ChecksumError, load_pt
from prunelib.methods import masking
from prunelib.methods import second_order as so
from prunelib.methods.scorers.obs import LobsScorer, ObsScorer, WoodFisherScorer


def tiny_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)).double()


def tiny_batches(n: int, bs: int = 2, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(bs, 6, generator=g, dtype=torch.float64), torch.randint(0, 3, (bs,), generator=g))
            for _ in range(n)]


def weight_params(model):
    return {n: p for n, p in model.named_parameters() if n.endswith("weight")}


def fisher_by_autograd(model, params, batches, damping):
    """λI + (1/N) Σ g gᵀ with each g from torch.autograd.functional.jacobian of the
    batch loss as a function of the flat weights (another route than the code's)."""
    names = list(params)
    sizes = [params[n].numel() for n in names]
    w0 = torch.cat([params[n].detach().reshape(-1) for n in names])
    others = {n: p.detach() for n, p in model.named_parameters() if n not in params}

    def loss_of(flat, x, y):
        parts = dict(zip(names, (t.view(params[n].shape) for t, n in zip(flat.split(sizes), names))))
        out = torch.func.functional_call(model, {**others, **parts}, (x,))
        return F.cross_entropy(out, y)

    gs = [torch.autograd.functional.jacobian(lambda f: loss_of(f, x, y), w0) for x, y in batches]
    G = torch.stack(gs)
    return damping * torch.eye(w0.numel(), dtype=torch.float64) + G.T @ G / len(gs), w0, loss_of


def test_new_kind_is_dispatched_once():
    for m in ("obs", "woodfisher", "lobs"):
        e = registry.method(m)
        assert e.pruning is pruning.UPDATING and e.pruning.updates_weights and e.pruning.trains_from == "pruned"
    assert not any(registry.method(m).pruning.updates_weights for m in ("snip", "synflow", "obd", "lth"))


def test_sherman_morrison_inverse_equals_linalg_inv():
    model = tiny_net()
    params = weight_params(model)
    batches = tiny_batches(7)
    Fmat, _, _ = fisher_by_autograd(model, params, batches, 1e-3)
    sizes = [p.numel() for p in params.values()]
    inv = so.fisher_inverse_blocks(so.flat_gradients(model, params, batches), len(batches),
                                   so.blocks_of(sizes, None), 1e-3)[0]
    torch.testing.assert_close(inv, torch.linalg.inv(Fmat), rtol=1e-7, atol=1e-9)


def test_obs_saliency_and_update_equal_the_closed_form():
    """One removal: ρ_q = w_q² / (2 [F⁻¹]_qq) and δw = -(w_q / [F⁻¹]_qq) F⁻¹ e_q with F from
    autograd and inverted by torch.linalg.inv; the weight removed is the argmin of ρ."""
    model = tiny_net()
    params = weight_params(model)
    batches = tiny_batches(9)
    damping = 1e-3
    Fmat, w0, _ = fisher_by_autograd(model, params, batches, damping)
    Finv = torch.linalg.inv(Fmat)
    rho = w0 ** 2 / (2 * Finv.diagonal())
    scores = ObsScorer(damping=damping).score(model, params, batches, 0)
    torch.testing.assert_close(torch.cat([s.reshape(-1).double() for s in scores.values()]), rho.float().double(),
                               rtol=1e-5, atol=0)
    q = int(torch.argmin(rho))
    expected = w0 - (w0[q] / Finv[q, q]) * Finv[:, q]
    n = w0.numel()
    masks, rows, _, record = ObsScorer(damping=damping).prune_update(model, params, batches, n / (n - 1), "global", 0)
    got = torch.cat([p.detach().reshape(-1) for p in params.values()])
    kept = torch.cat([m.reshape(-1) for m in masks.values()])
    assert int((~kept).sum()) == 1 and not bool(kept[q])
    assert got[q] == 0.0
    torch.testing.assert_close(got, expected, rtol=1e-8, atol=1e-10)
    assert sum(r["kept"] for r in rows) == n - 1
    assert set(record["update"]["norms"]) == set(params)


def test_obs_sequential_removals_follow_the_downdated_inverse():
    """Three removals one at a time: each is the closed-form OBS step on the inverse of
    the Fisher with the earlier removals as constraints (recomputed from scratch)."""
    model = tiny_net(3)
    params = weight_params(model)
    batches = tiny_batches(9, seed=4)
    Fmat, w, _ = fisher_by_autograd(model, params, batches, 1e-3)
    n = w.numel()
    removed = []
    w = w.clone()
    for _ in range(3):
        alive = [i for i in range(n) if i not in removed]
        # inverse of F restricted to the survivors (the constrained problem), embedded
        Hinv = torch.zeros(n, n, dtype=torch.float64)
        Hinv[torch.tensor(alive)[:, None], torch.tensor(alive)] = torch.linalg.inv(Fmat[alive][:, alive])
        rho = torch.full((n,), float("inf"), dtype=torch.float64)
        rho[alive] = w[alive] ** 2 / (2 * Hinv.diagonal()[alive])
        q = int(torch.argmin(rho))
        w = w - (w[q] / Hinv[q, q]) * Hinv[:, q]
        w[q] = 0.0
        removed.append(q)
    ObsScorer(damping=1e-3, group=1).prune_update(model, params, batches, n / (n - 3), "global", 0)
    got = torch.cat([p.detach().reshape(-1) for p in params.values()])
    torch.testing.assert_close(got, w, rtol=1e-7, atol=1e-10)


def test_update_never_raises_the_quadratic_model_above_plain_removal():
    """For every weight q: ½ δwᵀ F δw with the OBS update ≤ with δw = -w_q e_q alone."""
    model = tiny_net(5)
    params = weight_params(model)
    batches = tiny_batches(6, seed=2)
    Fmat, w, _ = fisher_by_autograd(model, params, batches, 1e-2)
    sizes = [p.numel() for p in params.values()]
    blocks = so.blocks_of(sizes, None)
    for q in range(w.numel()):
        hinv = so.fisher_inverse_blocks(so.flat_gradients(model, params, batches), len(batches), blocks, 1e-2)[0]
        w2 = w.clone()
        so.obs_remove(w2, hinv, torch.tensor([q]))
        with_update = 0.5 * (w2 - w) @ Fmat @ (w2 - w)
        plain = 0.5 * w[q] ** 2 * Fmat[q, q]
        assert with_update <= plain * (1 + 1e-9), q
        assert w2[q] == 0.0


@pytest.mark.parametrize("group", [1, 3])
def test_woodfisher_with_one_block_equals_obs(group):
    n_weights = 6 * 5 + 5 * 3
    outs = []
    for scorer in (ObsScorer(damping=1e-3, group=group),
                   WoodFisherScorer(damping=1e-3, block_size=10 ** 6, group=group, update="joint")):
        model = tiny_net(7)
        # one tensor: a block never straddles two tensors, so one block = one prunable tensor
        params = {"0.weight": dict(model.named_parameters())["0.weight"]}
        masks, rows, _, _ = scorer.prune_update(model, params, tiny_batches(8, seed=9), 3.0, "global", 0)
        outs.append((masks["0.weight"].clone(), params["0.weight"].detach().clone(), rows))
    assert torch.equal(outs[0][0], outs[1][0])
    assert torch.equal(outs[0][1], outs[1][1])
    assert outs[0][2] == outs[1][2]
    assert n_weights  # (the net's size, for the reader)


def test_woodfisher_blocks_are_independent_obs_problems():
    """Blocks of 5: the Fisher inverse per block equals linalg.inv of that block of F."""
    model = tiny_net(2)
    params = weight_params(model)
    batches = tiny_batches(5)
    Fmat, _, _ = fisher_by_autograd(model, params, batches, 1e-3)
    sizes = [p.numel() for p in params.values()]
    blocks = so.blocks_of(sizes, 7)
    assert all(b - a <= 7 for a, b in blocks) and blocks[-1][1] == sum(sizes)
    assert all(not (a < 30 < b) for a, b in blocks)  # none straddles the two tensors
    invs = so.fisher_inverse_blocks(so.flat_gradients(model, params, batches), len(batches), blocks, 1e-3)
    for (a, b), inv in zip(blocks, invs):
        torch.testing.assert_close(inv, torch.linalg.inv(Fmat[a:b, a:b]), rtol=1e-7, atol=1e-9)


def one_at_a_time(gs: list[torch.Tensor], a: int, b: int, damping: float) -> torch.Tensor:
    """The recursion as Hassibi & Stork and the WoodFisher code write it, one gradient per
    step: F⁻¹ -= (F⁻¹g)(F⁻¹g)ᵀ / (N + gᵀF⁻¹g), from I / λ."""
    inv = torch.eye(b - a, dtype=torch.float64) / damping
    for g in gs:
        c = inv @ g[a:b]
        inv = inv - torch.outer(c, c) / (len(gs) + g[a:b] @ c)
    return inv


@pytest.mark.parametrize("n_grads,chunk", [(37, 8), (37, so.FISHER_CHUNK), (70, so.FISHER_CHUNK), (5, 1)])
def test_chunked_woodbury_equals_the_one_at_a_time_recursion_and_the_closed_form(n_grads, chunk):
    """``fisher_inverse_blocks`` applies m gradients per Woodbury step; the result equals the
    rank-one recursion and inv(λI + GᵀG/N) per block to rounding, with N not a multiple of
    m (a short last chunk), N > s and N < s, and blocks of two sizes (5 and 2)."""
    g = torch.Generator().manual_seed(n_grads + chunk)
    sizes = [12, 10]
    damping = 1e-2
    gs = [torch.randn(sum(sizes), generator=g, dtype=torch.float64) * (1 + torch.rand(1, generator=g).item())
          for _ in range(n_grads)]
    blocks = so.blocks_of(sizes, 5)
    assert sorted({b - a for a, b in blocks}) == [2, 5]
    invs = so.fisher_inverse_blocks(iter(gs), n_grads, blocks, damping, chunk=chunk)  # (streamed)
    G = torch.stack(gs)
    for (a, b), inv in zip(blocks, invs):
        closed = torch.linalg.inv(damping * torch.eye(b - a, dtype=torch.float64) + G[:, a:b].T @ G[:, a:b] / n_grads)
        for ref in (one_at_a_time(gs, a, b, damping), closed):
            assert float((inv - ref).abs().max() / ref.abs().max()) < 1e-10
    with pytest.raises(so.SecondOrderError, match=f"expected {n_grads + 1} gradients for the Fisher, got {n_grads}"):
        so.fisher_inverse_blocks(iter(gs), n_grads + 1, blocks, damping, chunk=chunk)


def test_woodfisher_independent_update_is_the_codes_summed_update():
    """One-shot ``update: independent``: δw = Σ_q -(w_q / [F⁻¹]_qq) F⁻¹ e_q over the pruned
    set (the IST-DASLab code's scaled basis times F⁻¹), then the pruned weights zeroed."""
    model = tiny_net(4)
    params = {"0.weight": dict(model.named_parameters())["0.weight"]}
    batches = tiny_batches(6)
    Fmat, w, _ = fisher_by_autograd(model, params, batches, 1e-3)
    Finv = torch.linalg.inv(Fmat)
    rho = w ** 2 / (2 * Finv.diagonal())
    keep = masking.kept_count(w.numel(), 2.0)
    pruned = torch.argsort(rho)[: w.numel() - keep]
    basis = torch.zeros_like(w)
    basis[pruned] = -w[pruned] / Finv.diagonal()[pruned]
    expected = w + Finv @ basis
    expected[pruned] = 0.0
    WoodFisherScorer(damping=1e-3, block_size=1000, group=0).prune_update(model, params, batches, 2.0, "global", 0)
    torch.testing.assert_close(params["0.weight"].detach().reshape(-1), expected, rtol=1e-7, atol=1e-10)


def test_obs_refuses_networks_over_its_limit():
    model = tiny_net()
    with pytest.raises(so.SecondOrderError, match=r"max_weights = 10 .*use woodfisher"):
        ObsScorer(max_weights=10).prune_update(model, weight_params(model), tiny_batches(2), 2.0, "global", 0)


def test_obs_keeps_exactly_round_n_over_r_with_ties_recorded():
    model = tiny_net()
    params = weight_params(model)
    with torch.no_grad():  # many equal saliencies: zero weights tie at ρ = 0
        params["0.weight"][:4] = 0.0
    n = sum(p.numel() for p in params.values())
    masks, rows, _, _ = ObsScorer(damping=1e-3, group=0).prune_update(model, params, tiny_batches(4), n / 43,
                                                                       "global", 0)
    kept = sum(int(m.sum()) for m in masks.values())
    assert kept == masking.kept_count(n, n / 43) == 43
    assert sum(r["tied_at_threshold"] for r in rows) >= 0
    assert all(p[~masks[name]].eq(0).all() for name, p in params.items())


def test_lobs_gives_the_least_squares_reconstruction_for_the_kept_support():
    """Each row of the pruned layer minimises ‖X (w - w')‖² over w' supported on its kept
    weights: w'_K = argmin, solved by lstsq on the damped H = 2XXᵀ/N."""
    torch.manual_seed(0)
    layer = nn.Linear(8, 4).double()
    x = torch.randn(64, 8, dtype=torch.float64)
    model = nn.Sequential(layer)
    params = {"0.weight": layer.weight}
    w = layer.weight.detach().clone()
    damping = 1e-6
    masks, rows, _, record = LobsScorer(damping=damping).prune_update(model, params, [(x, torch.zeros(64).long())],
                                                                      2.0, "layer", 0)
    mask = masks["0.weight"]
    assert int(mask.sum()) == 16
    H = 2 * x.T @ x / 64
    H = H + damping * H.diagonal().mean() * torch.eye(8, dtype=torch.float64)
    new = layer.weight.detach()
    for r in range(4):
        K = mask[r].nonzero().squeeze(1)
        # minimise (w' - w)ᵀ H (w' - w) with w'_R = 0: H_KK w'_K = (H w)_K
        expected = torch.zeros(8, dtype=torch.float64)
        expected[K] = torch.linalg.solve(H[K][:, K], (H @ w[r])[K])
        torch.testing.assert_close(new[r], expected, rtol=1e-8, atol=1e-10)
    assert record["update"]["norms"]["0.weight"]["update_norm"] > 0


def test_lobs_on_a_convolution_uses_unfolded_inputs():
    torch.manual_seed(1)
    conv = nn.Conv2d(2, 3, 3, padding=1).double()
    model = nn.Sequential(conv)
    x = torch.randn(4, 2, 5, 5, dtype=torch.float64)
    hs = so.layer_inputs(model, {"0.weight": conv}, [(x, None)])
    cols = F.unfold(x, 3, padding=1).transpose(1, 2).reshape(-1, 18)
    torch.testing.assert_close(hs["0.weight"], 2 * cols.T @ cols / cols.shape[0])
    masks, _, _, _ = LobsScorer().prune_update(model, {"0.weight": conv.weight}, [(x, torch.zeros(4).long())], 3.0,
                                               "layer", 0)
    assert int(masks["0.weight"].sum()) == masking.kept_count(54, 3.0)


# --- the fast OBC loop against the plain one (tests/obc_reference.py) -------------------

def _layer(rows: int, cols: int, seed: int, ties: str = "none"):
    """A random layer (W, damped H = 2XXᵀ/N + 0.01 mean diag I).  ``ties``: "inputs"
    duplicates input columns and their weights and zeroes every fourth weight (ΔL ties
    at 0 and between twin columns); "diagonal" makes H diagonal with repeated entries and
    every |w| one of two values, so that most steps' minimum is tied exactly."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3 * cols, cols, generator=g, dtype=torch.float64)
    w = torch.randn(rows, cols, generator=g, dtype=torch.float64)
    if ties == "inputs":
        x[:, 1::3] = x[:, 0::3][:, :len(range(1, cols, 3))]
        w[:, 1::3] = w[:, 0::3][:, :len(range(1, cols, 3))]
        w[:, ::4] = 0.0
    h = 2 * x.T @ x / x.shape[0]
    if ties == "diagonal":
        h = torch.diag(1.0 + (torch.arange(cols) % 2).double())
        w = torch.where(torch.rand(rows, cols, generator=g) < 0.5, -1.0, 1.0).double() * (
            1.0 + (torch.rand(rows, cols, generator=g) < 0.3).double())
        w[:, 2::5] = 0.0
    h += 0.01 * h.diagonal().mean() * torch.eye(cols, dtype=torch.float64)
    return w, h


LAYERS = [(7, 13, 0, "none"), (20, 50, 1, "none"), (3, 120, 2, "none"), (9, 40, 3, "inputs"),
          (6, 64, 4, "diagonal"), (1, 1, 5, "none"), (5, 2, 6, "none")]


@pytest.mark.parametrize("shrink,step_bytes", [(0.9, None), (0.5, 1), (0.99, 1 << 12)],
                         ids=["default", "halves-one-row-blocks", "every-step-small-blocks"])
@pytest.mark.parametrize("rows,cols,seed,ties", LAYERS, ids=[f"{r}x{c}-{t}" for r, c, _, t in LAYERS])
def test_obc_rows_order_and_losses_equal_the_plain_loop_bit_for_bit(monkeypatch, rows, cols, seed, ties,
                                                                    shrink, step_bytes):
    """Compacting each row's H⁻¹ to its alive columns (in ascending original order) changes
    no number: the same removal order, argmin's first minimum included, and the same ΔL
    as the loop over the full matrices with dead columns masked."""
    from tests import obc_reference

    monkeypatch.setattr(so, "_SHRINK", shrink)
    if step_bytes is not None:
        monkeypatch.setattr(so, "_STEP_BYTES", step_bytes)
    w, h = _layer(rows, cols, seed, ties)
    ref_order, ref_losses = obc_reference.obc_rows(w, h)
    for chunk in (None, 3):
        order, losses = so.obc_rows(w, h, chunk=chunk)
        assert torch.equal(order, ref_order)
        assert torch.equal(losses, ref_losses)
    if ties != "none":  # the layer does tie: ΔL repeats within rows
        assert any(len(set(r.tolist())) < cols for r in ref_losses)


@pytest.mark.parametrize("rows,cols,seed,ties", LAYERS[:5], ids=[f"{r}x{c}-{t}" for r, c, _, t in LAYERS[:5]])
def test_closed_form_update_equals_the_sequential_removals(rows, cols, seed, ties):
    """w'_K = (H_KK)⁻¹ (H w)_K, w'_S = 0 (or the smaller system on S) is where the
    counts[r] sequential OBS removals leave each row, for every count from 0 to cols."""
    from tests import obc_reference

    w, h = _layer(rows, cols, seed, ties)
    order, _ = obc_reference.obc_rows(w, h)
    g = torch.Generator().manual_seed(seed)
    for counts in (torch.randint(0, cols + 1, (rows,), generator=g), torch.zeros(rows, dtype=torch.long),
                   torch.full((rows,), cols), torch.full((rows,), cols // 3), torch.full((rows,), cols - cols // 3)):
        sequential = obc_reference.obc_rows(w, h, counts)
        kept = torch.empty(rows, cols, dtype=torch.bool).scatter_(1, order, torch.arange(cols) >= counts.unsqueeze(1))
        new = so.kept_support_rows(w, h, kept)
        assert new[~kept].eq(0).all()
        assert torch.equal(new[counts == 0], w[counts == 0])  # nothing removed: nothing moves
        err = (new - sequential).norm(dim=1) / w.norm(dim=1)
        assert float(err.max()) < 1e-9, (counts.tolist(), err.tolist())


@pytest.mark.parametrize("rows,cols,seed,ties", LAYERS[:5], ids=[f"{r}x{c}-{t}" for r, c, _, t in LAYERS[:5]])
def test_lobs_layer_keeps_the_plain_loops_masks_and_scores(rows, cols, seed, ties):
    from tests import obc_reference

    w, h = _layer(rows, cols, seed, ties)
    keep = masking.kept_count(rows * cols, 3.0)
    m1, w1, s1, p1 = obc_reference.lobs_layer(w, h, keep, 7, "lobs:t", 0.01)
    m2, w2, s2, p2 = so.lobs_layer(w, h, keep, 7, "lobs:t", 0.01)
    assert torch.equal(m1, m2) and torch.equal(p1, p2) and int(m2.sum()) == keep
    assert torch.equal(s1.keep, s2.keep) and (s1.threshold, s1.n_tied, s1.n_tied_kept) == (
        s2.threshold, s2.n_tied, s2.n_tied_kept)
    torch.testing.assert_close(w2, w1.masked_fill(~m1, 0.0), rtol=1e-9, atol=1e-9 * float(w.abs().max()))
    assert w2[~m2].eq(0).all()


# --- the updated-weights artifact ------------------------------------------------------

@pytest.fixture
def lobs_cell(tmp_path, mnist_pt):
    from tests.cells import run_cell, settings

    s = settings(score={"per_method": {"woodfisher": {"num_batches": 4, "batch_size": 8}}},
                 train={"epochs": 1, "train_subset": 256, "batch_size": 64})
    return run_cell(tmp_path, mnist_pt, s, "lenet300", "woodfisher", 4, until="train")


def test_updated_weights_artifact_is_written_trained_from_and_verified(lobs_cell):
    updated = load_pt(lobs_cell / "updated.pt")
    mask = load_pt(lobs_cell.mask)
    final = load_pt(lobs_cell.final)
    init = load_pt(lobs_cell.init)
    assert updated["meta"]["pruned_by"]["method"] == "woodfisher"
    assert set(updated["meta"]["inputs"]) == {"init", "scores", "data"}
    assert final["meta"]["inputs"]["init"]["path"].endswith("updated.pt")
    assert final["meta"]["started_from"] == "updated"
    norms = mask["meta"]["update"]["norms"]
    for n, m in mask["masks"].items():
        assert updated["state_dict"][n][~m].eq(0).all()
        moved = (updated["state_dict"][n] - init["state_dict"][n])[m].norm()
        assert abs(float(moved) - norms[n]["update_norm"]) < 1e-4 * max(1.0, norms[n]["update_norm"])
    assert any(v["update_norm"] > 0 for v in norms.values())
    # a flipped byte is refused on read
    raw = bytearray((lobs_cell / "updated.pt").read_bytes())
    raw[len(raw) // 2] ^= 0x01
    (lobs_cell / "updated.pt").write_bytes(bytes(raw))
    with pytest.raises(ChecksumError):
        load_pt(lobs_cell / "updated.pt")


def test_redraw_throws_the_update_away(tmp_path, mnist_pt):
    """``init.after_pruning: redraw``: training starts from a fresh draw (the same one a
    method without an update gets at this seed), masked; the update is recorded as discarded."""
    from tests.cells import run_cell, settings

    s = settings(score={"per_method": {"woodfisher": {"num_batches": 2, "batch_size": 4}}},
                 train={"epochs": 1, "train_subset": 64, "batch_size": 64}, init={"after_pruning": "redraw"})
    cell = run_cell(tmp_path, mnist_pt, s, "lenet300", "woodfisher", 4, until="train")
    final = load_pt(cell.final)
    assert final["meta"]["update_discarded"] is True and final["meta"]["after_pruning"] == "redraw"


def test_audit_lists_the_updated_weights_and_the_update_per_layer(lobs_cell):
    from prunelib.audit import checks

    rep = checks.audit_mask(lobs_cell.mask)
    assert all("update_norm" in r for r in rep["tensors"])
    assert "update_norm" in checks.render_mask(rep)


@pytest.mark.parametrize("scorer", [lambda: ObsScorer(damping=1e-3, group=4),
                                    lambda: WoodFisherScorer(damping=1e-3, block_size=8),
                                    lambda: LobsScorer()], ids=["obs", "woodfisher", "lobs"])
def test_masks_and_updated_weights_are_bit_identical_when_run_again(scorer):
    runs = []
    for _ in range(2):
        model = tiny_net(11)
        params = weight_params(model)
        masks, rows, _, _ = scorer().prune_update(model, params, tiny_batches(6, bs=4), 3.0,
                                                  "layer" if isinstance(scorer(), LobsScorer) else "global", 0)
        runs.append(({n: m.clone() for n, m in masks.items()}, {n: p.detach().clone() for n, p in params.items()},
                     rows))
    (m1, w1, r1), (m2, w2, r2) = runs
    assert all(torch.equal(m1[n], m2[n]) and torch.equal(w1[n], w2[n]) for n in m1) and r1 == r2


def test_a_grid_naming_obs_on_a_network_over_its_limit_stops_before_any_job():
    from prunelib.config.validation import ConfigError
    from prunelib.methods import bounds
    from tests.cells import settings

    s = settings(grid={"methods": ["obs"], "archs": ["lenet300"], "datasets": ["mnist"], "ratios": [1, 4]})
    with pytest.raises(ConfigError, match=r"^config error: obs on lenet300/mnist: 266,200 prunable weights exceed "
                                          r"score.per_method.obs.max_weights = 10,000; .*use woodfisher"):
        bounds.check_ratios(s)
