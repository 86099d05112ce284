import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from prunelib.methods import scorers


def _tiny():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                              torch.nn.Linear(3 * 4 * 4, 4))
    x = torch.randn(8, 1, 6, 6)
    y = torch.randint(0, 4, (8,))
    params = {n: p for n, p in net.named_parameters() if n.endswith("weight")}
    return net, params, [(x, y)]


def test_registry_has_the_study_methods_and_scopes():
    assert {m: e.scope for m, e in scorers.METHODS.items() if e.kind != "iterative" and not e.structured} == {
        "dense": "all", "random": "global", "global_magnitude": "global", "layer_magnitude": "layer",
        "global_gradient": "global", "layer_gradient": "layer", "global_activation": "global",
        "layer_activation": "layer", "global_lap": "global", "layer_lap": "layer", "lamp": "global",
        "snip": "global", "grasp": "global", "synflow": "global", "obd": "global",
        # the second-order family (issue 22): OBS and WoodFisher rank globally, L-OBS per
        # layer (per row, OBC), EigenDamage removes rows/columns in one global order
        "obs": "global", "woodfisher": "global", "lobs": "layer", "eigendamage": "global"}


def test_rescoring_methods_are_those_whose_scorer_needs_the_ratio():
    # (structured methods select whole filters from single-shot scores: no re-scoring; the
    # OBS family prunes per ratio with its update, so it re-scores like SynFlow's rounds)
    with_scorer = {m: e for m, e in scorers.METHODS.items() if e.scorer is not None and not e.structured}
    assert {m for m, e in with_scorer.items() if e.make_scorer().needs_ratio} \
        == {m for m, e in with_scorer.items() if e.rescores} == {"synflow", "obs", "woodfisher", "lobs"}


def test_magnitude_is_absolute_weight():
    net, params, batches = _tiny()
    s = scorers.get("global_magnitude").make_scorer().score(net, params, batches, 0)
    for n, p in params.items():
        assert torch.equal(s[n], p.detach().abs())


def test_random_scores_depend_only_on_the_seed():
    net, params, batches = _tiny()
    r = scorers.get("random").make_scorer()
    a, b, c = r.score(net, params, [], 1), r.score(net, params, [], 1), r.score(net, params, [], 2)
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert not all(torch.equal(a[n], c[n]) for n in a)


def test_snip_is_the_derivative_with_respect_to_a_multiplicative_mask():
    """SNIP's Eq. 6: |dL(c * theta)/dc| at c = 1, normalised to sum 1 over all weights."""
    net, params, batches = _tiny()
    (x, y), = batches
    snip = scorers.get("snip").make_scorer().score(net, params, batches, 0)

    c = {n: torch.ones_like(p, requires_grad=True) for n, p in params.items()}
    all_params = dict(net.named_parameters())
    masked = {n: (c[n] * p.detach() if n in c else p.detach()) for n, p in all_params.items()}
    loss = F.cross_entropy(functional_call(net, masked, (x,)), y)
    grads = torch.autograd.grad(loss, list(c.values()))
    ref = {n: g.abs() for n, g in zip(c, grads)}
    total = sum(r.sum() for r in ref.values())
    for n in params:
        torch.testing.assert_close(snip[n], ref[n] / total, rtol=1e-5, atol=1e-9)
    assert abs(sum(float(s.sum()) for s in snip.values()) - 1.0) < 1e-5


def test_snip_differs_from_the_studys_gradient_only_variant():
    """The 2022 study writes SNIP as |g| / sum |g|; the paper's score carries the factor theta."""
    net, params, batches = _tiny()
    snip = scorers.get("snip").make_scorer().score(net, params, batches, 0)
    (x, y), = batches
    loss = F.cross_entropy(net(x), y)
    g = torch.autograd.grad(loss, list(params.values()))
    total = sum(gi.abs().sum() for gi in g)
    grad_only = {n: gi.abs() / total for n, gi in zip(params, g)}
    assert not all(torch.allclose(snip[n], grad_only[n]) for n in params)
    # ...and the two rank weights differently, so they would prune different weights
    flat_snip = torch.cat([snip[n].flatten() for n in params])
    flat_g = torch.cat([grad_only[n].flatten() for n in params])
    assert not torch.equal(flat_snip.argsort(), flat_g.argsort())


def test_snip_averages_gradients_over_scoring_batches():
    net, params, batches = _tiny()
    (x, y), = batches
    two = [(x[:4], y[:4]), (x[4:], y[4:])]
    s = scorers.get("snip").make_scorer().score(net, params, two, 0)
    g = [torch.autograd.grad(F.cross_entropy(net(xb), yb), list(params.values())) for xb, yb in two]
    sens = {n: (p.detach() * (g[0][i] + g[1][i]) / 2).abs() for i, (n, p) in enumerate(params.items())}
    total = sum(v.sum() for v in sens.values())
    for n in params:
        torch.testing.assert_close(s[n], sens[n] / total)


def test_unknown_method_names_allowed_values():
    with pytest.raises(ValueError, match="allowed: dense, random"):
        scorers.get("grasp2")
