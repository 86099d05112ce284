"""K-FAC factors against autograd, and the Kron-OBD / Kron-OBS formulas of EigenDamage
(Wang et al., ICML 2019) against the quadratic model they come from."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from prunelib.methods import kfac
from prunelib.methods.scorers import kron


class TwoLayer(nn.Module):
    def __init__(self, conv: bool = False, padding: int = 0, side: int = 3):
        super().__init__()
        torch.manual_seed(0)
        self.conv = conv
        if conv:
            self.l1 = nn.Conv2d(2, 3, 3, padding=padding)
            out = side + 2 * padding - 2
            self.l2 = nn.Linear(3 * out * out, 4)
        else:
            self.l1 = nn.Linear(5, 6)
            self.l2 = nn.Linear(6, 4)

    def forward(self, x):
        h = torch.tanh(self.l1(x))
        return self.l2(h.flatten(1))


def _example_gradient(net, layer, x, y):
    """Autograd's gradient of one example's loss for ``layer``'s [W | b] matrix."""
    net.zero_grad()
    F.cross_entropy(net(x), y).backward()
    m = getattr(net, layer)
    return torch.cat([m.weight.grad.reshape(m.weight.shape[0], -1), m.bias.grad[:, None]], 1)


@pytest.mark.parametrize("conv", [False, True])
def test_one_example_kronecker_product_is_autograds_gradient_outer_product(conv):
    """For one example and one output position, S (x) A is exactly vec(G) vec(G)^T with G
    autograd's [dL/dW | dL/db] (row-major vec): the factors are E[g g^T] and E[a a^T]."""
    net = TwoLayer(conv).double()
    x = torch.randn(1, 2, 3, 3, dtype=torch.float64) if conv else torch.randn(1, 5, dtype=torch.float64)
    y = torch.tensor([2])
    fac = kfac.kfac_factors(net, ["l1", "l2"], [(x, y)], seed=0, fisher="empirical")
    for layer in ("l1", "l2"):
        g = _example_gradient(net, layer, x, y).flatten()
        torch.testing.assert_close(torch.kron(fac[layer].S, fac[layer].A), torch.outer(g, g))


def test_batch_factors_are_means_of_per_example_factors_with_sampled_labels_seeded():
    net = TwoLayer().double()
    x = torch.randn(7, 5, dtype=torch.float64)
    y = torch.randint(0, 4, (7,))
    full = kfac.kfac_factors(net, ["l1", "l2"], [(x, y)], seed=0, fisher="empirical")
    for layer in ("l1", "l2"):
        A = sum(kfac.kfac_factors(net, [layer], [(x[i:i + 1], y[i:i + 1])], 0, "empirical")[layer].A
                for i in range(7)) / 7
        S = sum(kfac.kfac_factors(net, [layer], [(x[i:i + 1], y[i:i + 1])], 0, "empirical")[layer].S
                for i in range(7)) / 7
        torch.testing.assert_close(full[layer].A, A)
        torch.testing.assert_close(full[layer].S, S)
    # the true Fisher samples labels from the network with the seed: same seed, same factors
    t1 = kfac.kfac_factors(net, ["l1"], [(x, y)], seed=3)["l1"].S
    t2 = kfac.kfac_factors(net, ["l1"], [(x, y)], seed=3)["l1"].S
    assert torch.equal(t1, t2) and not torch.allclose(t1, full["l1"].S)


def test_conv_factors_follow_the_authors_spatial_scaling():
    """A = 1/(B T^2) sum_{n,t} a a^T over zero-padded patches (+ bias 1), S = T/B sum g g^T
    over autograd's per-example output gradients (ComputeCovA / ComputeCovG)."""
    net = TwoLayer(conv=True, padding=1, side=4).double()
    x = torch.randn(3, 2, 4, 4, dtype=torch.float64)
    y = torch.tensor([0, 1, 3])
    fac = kfac.kfac_factors(net, ["l1"], [(x, y)], seed=0, fisher="empirical")["l1"]
    xp = F.pad(x, (1, 1, 1, 1))
    rows = []
    for n in range(3):
        for i in range(4):
            for j in range(4):
                rows.append(torch.cat([xp[n, :, i:i + 3, j:j + 3].flatten(), torch.ones(1, dtype=x.dtype)]))
    a = torch.stack(rows)
    T, B = 16, 3
    torch.testing.assert_close(fac.A, a.t() @ a / (B * T * T))
    out = {}
    h = net.l1.register_forward_hook(lambda m, i, o: out.__setitem__("s", o))
    S = torch.zeros(3, 3, dtype=x.dtype)
    for n in range(3):  # per-example gradients, one example's loss each
        logits = net(x[n:n + 1])
        g = torch.autograd.grad(F.cross_entropy(logits, y[n:n + 1]), out["s"])[0]
        rows_g = g[0].permute(1, 2, 0).reshape(-1, 3)
        S = S + rows_g.t() @ rows_g
    h.remove()
    torch.testing.assert_close(fac.S, S * T / B)
    # EigenDamage's channel patches: every kernel position is a sample of the channels
    ch = kfac.kfac_factors(net, ["l1"], [(x, y)], seed=0, fisher="empirical", patches="channel")["l1"]
    crow = []
    for n in range(3):
        for i in range(4):
            for j in range(4):
                for p in range(9):
                    crow.append(torch.cat([xp[n, :, i + p // 3, j + p % 3], torch.full((1,), 1 / 9, dtype=x.dtype)]))
    c = torch.stack(crow)
    torch.testing.assert_close(ch.A, c.t() @ c / (B * 9 * T * T))
    torch.testing.assert_close(ch.S, fac.S)


def _quad(dw, f):
    """vec(dW)^T (S (x) A) vec(dW) = tr(dW^T S dW A)."""
    return float(torch.trace(dw.t() @ f.S @ dw @ f.A))


def test_kron_obd_and_obs_are_the_quadratic_models_loss_changes():
    torch.manual_seed(1)
    net = TwoLayer().double()
    x, y = torch.randn(32, 5, dtype=torch.float64), torch.randint(0, 4, (32,))
    f = kfac.kfac_factors(net, ["l1"], [(x, y)], seed=0)["l1"]
    w = kfac.matrix_weight(net.l1).double()
    obd = kron.kron_importance(w, f, "kron_obd")
    obs = kron.kron_importance(w, f, "kron_obs")
    for j in range(w.shape[0]):
        remove = torch.zeros_like(w)
        remove[j] = -w[j]
        assert obd[j] == pytest.approx(_quad(remove, f), rel=1e-9)
        dw = kron.kron_obs_update(w, kron.s_inverse(f.S), [j])
        assert torch.allclose(dw[j], -w[j])                   # the filter is removed
        assert obs[j] == pytest.approx(_quad(dw, f), rel=1e-6)  # at the cost the paper gives
        assert _quad(dw, f) <= _quad(remove, f) * (1 + 1e-9)   # the update never costs more
        # it is the best update: any other change of the kept rows costs more
        other = dw.clone()
        other[(j + 1) % w.shape[0]] += 1e-3
        assert _quad(other, f) > _quad(dw, f)


def test_the_authors_code_form_differs_from_the_papers_quadratic_form():
    torch.manual_seed(2)
    net = TwoLayer().double()
    x, y = torch.randn(16, 5, dtype=torch.float64), torch.randint(0, 4, (16,))
    f = kfac.kfac_factors(net, ["l1"], [(x, y)], seed=0)["l1"]
    w = kfac.matrix_weight(net.l1).double()
    paper, code = kron.row_terms(w, f.A, "paper"), kron.row_terms(w, f.A, "code")
    torch.testing.assert_close(paper, torch.einsum("jk,kl,jl->j", w, f.A, w))
    torch.testing.assert_close(code, torch.einsum("jk,kl->j", w ** 2, f.A))
    assert not torch.allclose(paper, code)
    diag = kfac.Factors(torch.diag(torch.diagonal(f.A)), f.S, True, "linear")
    torch.testing.assert_close(kron.row_terms(w, diag.A, "paper"), kron.row_terms(w, diag.A, "code"))


def test_updated_state_moves_kept_rows_and_zeroes_a_single_pruned_row():
    torch.manual_seed(3)
    net = TwoLayer().double()
    x, y = torch.randn(32, 5, dtype=torch.float64), torch.randint(0, 4, (32,))
    f = kfac.kfac_factors(net, ["l1"], [(x, y)], seed=0)["l1"]
    state = kron.updated_state(net, {"l1": kron.s_inverse(f.S)}, {"l1": [2]})
    assert torch.allclose(state["l1.weight"][2], torch.zeros(5, dtype=torch.float64))
    assert float(state["l1.bias"][2]) == pytest.approx(0.0, abs=1e-12)
    assert not torch.allclose(state["l1.weight"][0], net.l1.weight[0].detach())
    assert torch.equal(state["l2.weight"], net.l2.weight.detach())
