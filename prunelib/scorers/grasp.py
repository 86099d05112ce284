"""GraSP: gradient signal preservation (Wang, Zhang & Grosse, ICLR 2020, Eq. 8).

With g = dL/dtheta and H the Hessian of the loss on the scoring data,

    S(-theta) = -theta * (H g)

and GraSP *removes the weights with the largest S(-theta)* (removing them reduces the
gradient norm the least, or increases it).  In our "higher = keep" convention the score
is therefore

    keep score = -S(-theta) = theta * (H g)

so the weights removed are exactly those with the largest -theta * Hg.  (Public
re-implementations have flipped this sign, see the 2022 reproduction study;
``tests/test_scorers.py`` checks the direction on a tiny network.)

Hg is a Hessian-vector product by double backward: Hg = d/dtheta (g . stopgrad(g)).
g is accumulated over the scoring batches first, then each batch's Hg is taken against
that full-data g, so Hg is the Hessian of the mean loss over all scoring data times its
gradient.  GraSP's code drew 10 examples per class (``score.per_method.grasp`` defaults to
a class-balanced batch of 10 per class for 10 classes).  The scores are signed: GraSP
ranks the raw values, not their magnitudes.

BatchNorm mode: train.  The authors' ``pruner/GraSP.py`` deep-copies the freshly
initialised network and scores it without switching modes (its ``.eval()`` is commented
out: ``net = copy.deepcopy(net)  # .eval()``), so BatchNorm normalises with the scoring
batch's own statistics, and the Hessian includes the dependence of those statistics on
the weights.  Scoring in eval mode (Synaptic-Flow's default) is a different criterion on
BatchNorm networks, not a faster way to compute this one; ``tests/test_grasp_mode.py``
pins the mode.

With one scoring batch (the default) the full-data gradient g is that batch's gradient,
so g and Hg come from one forward pass: g is the first backward (kept with its graph),
Hg = d(g . stopgrad(g))/dtheta the second, instead of a separate pass for g.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from prunelib.scorers.base import Scorer
from prunelib.scorers.gradients import loss_gradients


def _dot(a, b) -> torch.Tensor:
    # a scalar to differentiate, not autograd.grad(grad_outputs=...): on first use the
    # latter imports sympy, seconds per fresh scoring process
    return sum((x * y).sum() for x, y in zip(a, b))


def hessian_gradient_product(model, params, batches) -> dict[str, torch.Tensor]:
    """H g of the mean cross-entropy over ``batches`` (equal-size batches averaged)."""
    batches = list(batches)
    weights = list(params.values())
    model.train()
    if len(batches) == 1:
        x, y = batches[0]
        gb = torch.autograd.grad(F.cross_entropy(model(x), y), weights, create_graph=True)
        hg = torch.autograd.grad(_dot(gb, [gi.detach() for gi in gb]), weights)
        return {n: h for n, h in zip(params, hg)}
    g = loss_gradients(model, params, batches)  # full-data gradient, no graph
    hg = {n: torch.zeros_like(p) for n, p in params.items()}
    for x, y in batches:
        gb = torch.autograd.grad(F.cross_entropy(model(x), y), weights, create_graph=True)
        for n, h in zip(params, torch.autograd.grad(_dot(gb, [g[n] for n in params]), weights)):
            hg[n] += h
    return {n: h / len(batches) for n, h in hg.items()}


class GraspScorer(Scorer):
    needs_data = True

    def score(self, model, params, batches, seed):
        hg = hessian_gradient_product(model, params, batches)
        return {n: p.detach() * hg[n] for n, p in params.items()}
