"""Scores against references that share no code with the scorers: the full Hessian and
gradient of the mean loss from torch.autograd.functional on the flattened weights, over
all scoring data at once (so averaging over several batches is checked too; GraSP's per
half of each batch, summed, as the authors' code), and a LAP example computed by hand."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from prunelib.methods.masking import kept_count, select_masks
from prunelib.methods.scorers.gradient import GradientScorer
from prunelib.methods.scorers.grasp import GraspScorer
from prunelib.methods.scorers.lap import LapScorer
from prunelib.methods.scorers.obd import ObdScorer, hessian_diagonal_hutchinson
from prunelib.foundations.seeding import generator

from test_methods import TinyConv, mlp, setup


def _split(batches, parts):
    (x, y), = batches
    return list(zip(x.chunk(parts), y.chunk(parts)))


def autograd_reference(net, params, batches, hessian=True, temperature=1.0):
    """(theta, g, H) of the mean cross-entropy (of the logits / ``temperature``) over
    every example of ``batches``, flat (H None unless asked)."""
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    names = list(params)
    shapes = [params[n].shape for n in names]
    others = {k: v.detach() for k, v in net.named_parameters() if k not in params}

    def loss(flat):
        vals, i = {}, 0
        for n, s in zip(names, shapes):
            k = s.numel()
            vals[n] = flat[i:i + k].view(s)
            i += k
        return F.cross_entropy(functional_call(net, {**others, **vals}, (x,)) / temperature, y)

    theta = torch.cat([params[n].detach().flatten() for n in names])
    g = torch.autograd.functional.jacobian(loss, theta)
    h = torch.autograd.functional.hessian(loss, theta, vectorize=True) if hessian else None
    return theta, g, h


def unflatten(flat, params):
    out, i = {}, 0
    for n, p in params.items():
        out[n] = flat[i:i + p.numel()].view_as(p)
        i += p.numel()
    return out


def grasp_reference(net, params, batches, temperature):
    """theta and Hg of GraSP as the authors' code computes it: each batch split into its
    first N // 2 examples and the rest, g = sum of the halves' gradients, Hg = sum of the
    halves' Hessians times g, the logits divided by T (tests/test_grasp_protocol.py
    checks the same against closed forms)."""
    refs = []
    for x, y in batches:
        n = len(y)
        for part in (slice(0, n // 2), slice(n // 2, n)):
            refs.append(autograd_reference(net, params, [(x[part], y[part])], temperature=temperature))
    theta = refs[0][0]
    g = sum(r[1] for r in refs)
    return theta, sum(r[2] for r in refs) @ g


# The references are taken at the network's own weights, so the scorer runs with
# reinit_linear false (the Linear re-initialisation is tests/test_grasp_protocol.py's).
@pytest.mark.parametrize("temperature", [1.0, 200.0])
@pytest.mark.parametrize("n_batches", [1, 3])
def test_grasp_is_theta_times_the_autograd_hessian_times_the_gradient(n_batches, temperature):
    net, params, batches = setup(TinyConv())
    batches = _split(batches, n_batches)
    theta, hg = grasp_reference(net, params, batches, temperature)
    want = unflatten(theta * hg, params)
    got = GraspScorer(temperature=temperature, reinit_linear=False).score(net, params, batches, 0)
    scale = float((theta * hg).abs().max())
    for n in params:
        torch.testing.assert_close(got[n], want[n], rtol=1e-9, atol=1e-12 * scale)


def test_grasp_removes_the_weights_with_the_largest_minus_theta_hg():
    """GraSP's sign (Wang et al., Eq. 8): it removes the largest S(-theta) = -theta * Hg."""
    net, params, batches = setup(TinyConv())
    theta, hg = grasp_reference(net, params, batches, 200.0)
    s_minus = -theta * hg
    masks, _ = select_masks(GraspScorer(reinit_linear=False).score(net, params, batches, 0), 4, "global", seed=0)
    removed = torch.cat([(~masks[n]).flatten() for n in params])
    n_removed = int(removed.sum())
    assert n_removed == theta.numel() - kept_count(theta.numel(), 4)
    largest = torch.topk(s_minus, n_removed).indices
    assert set(largest.tolist()) == set(torch.nonzero(removed).flatten().tolist())


@pytest.mark.parametrize("n_batches", [1, 3])
def test_gradient_scorer_is_the_magnitude_of_theta_times_the_autograd_gradient(n_batches):
    net, params, batches = setup(TinyConv())
    batches = _split(batches, n_batches)
    theta, g, _ = autograd_reference(net, params, batches, hessian=False)
    want = unflatten((theta * g).abs(), params)
    got = GradientScorer().score(net, params, batches, 0)
    for n in params:
        torch.testing.assert_close(got[n], want[n], rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("make", [TinyConv, lambda: mlp([5, 4, 3, 4])], ids=["conv", "mlp"])
def test_obd_exact_averages_several_batches_like_the_autograd_hessian_of_all_data(make):
    net, params, batches = setup(make())
    batches = _split(batches, 3)
    theta, _, h = autograd_reference(net, params, batches)
    want = unflatten(0.5 * torch.diagonal(h) * theta ** 2, params)
    got = ObdScorer(estimator="exact").score(net, params, batches, 0)
    for n in params:
        torch.testing.assert_close(got[n], want[n], rtol=1e-9, atol=1e-12)


def test_hutchinson_with_few_probes_equals_the_mean_of_v_times_hv_exactly():
    """(1/P) sum_p v_p * H v_p, with the v_p the estimator's own seeded Rademacher draws
    (one per probe, each parameter in order) and H from autograd: equal to rounding, not
    merely close in expectation."""
    probes, seed = 3, 5
    net, params, batches = setup(TinyConv())
    batches = _split(batches, 2)
    theta, _, h = autograd_reference(net, params, batches)
    gen = generator(seed, "obd-hutchinson")
    want = torch.zeros_like(theta)
    for _ in range(probes):
        v = torch.cat([(torch.randint(0, 2, p.shape, generator=gen) * 2 - 1).to(p).flatten()
                       for p in params.values()])
        want += v * (h @ v)
    want = unflatten(want / probes, params)
    got = hessian_diagonal_hutchinson(net, params, batches, probes=probes, seed=seed)
    for n in params:
        torch.testing.assert_close(got[n], want[n], rtol=1e-10, atol=1e-13)
    scores = ObdScorer(estimator="hutchinson", probes=probes).score(net, params, batches, seed)
    for n, p in params.items():
        torch.testing.assert_close(scores[n], 0.5 * want[n] * p.detach() ** 2, rtol=1e-10, atol=1e-13)
    # another seed draws other probes
    other = hessian_diagonal_hutchinson(net, params, batches, probes=probes, seed=seed + 1)
    assert any(not torch.allclose(other[n], got[n]) for n in params)


class ConvToLinear(nn.Module):
    """1x1 convolution, 1 -> 2 channels on a 2x2 image, flattened (channel-major) into a
    Linear 8 -> 2: input features 0..3 belong to channel 0, 4..7 to channel 1."""

    def __init__(self):
        super().__init__()
        self.input_shape = (1, 2, 2)
        self.conv = nn.Conv2d(1, 2, 1, bias=False)
        self.fc = nn.Linear(8, 2, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([3.0, -4.0]).view(2, 1, 1, 1))
            self.fc.weight.copy_(torch.tensor([[1.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 3.0],
                                               [0.0, 0.0, -2.0, 0.0, -4.0, 0.0, 0.0, 0.0]]))

    def forward(self, x):
        return self.fc(torch.flatten(self.conv(x), 1))


def test_lap_on_a_hand_computed_conv_to_linear_example():
    net = ConvToLinear()
    params = dict(net.named_parameters())
    s = LapScorer().score(net, params, [], 0)
    # conv channel k: |w| * ||fc columns of channel k||:
    #   channel 0: 3 * sqrt(1 + 4 + 4) = 9;  channel 1: 4 * sqrt(9 + 16) = 20
    torch.testing.assert_close(s["conv.weight"], torch.tensor([9.0, 20.0], dtype=torch.float64).view(2, 1, 1, 1))
    # fc weight (k, j): |w| * ||kernel of channel j // 4|| = |w| * 3 (j < 4) or |w| * 4 (j >= 4)
    torch.testing.assert_close(s["fc.weight"], torch.tensor([[3.0, 6.0, 0.0, 0.0, 0.0, 0.0, 0.0, 12.0],
                                                             [0.0, 0.0, 6.0, 0.0, 16.0, 0.0, 0.0, 0.0]],
                                                            dtype=torch.float64))
