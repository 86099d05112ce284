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
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from prunelib.scorers.base import Scorer
from prunelib.scorers.snip import loss_gradients


def hessian_gradient_product(model, params, batches) -> dict[str, torch.Tensor]:
    """H g of the mean cross-entropy over ``batches`` (equal-size batches averaged)."""
    g = loss_gradients(model, params, batches)  # full-data gradient, no graph
    hg = {n: torch.zeros_like(p) for n, p in params.items()}
    n_batches = 0
    model.train()
    for x, y in batches:
        loss = F.cross_entropy(model(x), y)
        gb = torch.autograd.grad(loss, list(params.values()), create_graph=True)
        z = sum((gi * g[n]).sum() for gi, n in zip(gb, params))
        for n, h in zip(params, torch.autograd.grad(z, list(params.values()))):
            hg[n] += h
        n_batches += 1
    return {n: h / n_batches for n, h in hg.items()}


class GraspScorer(Scorer):
    needs_data = True

    def score(self, model, params, batches, seed):
        hg = hessian_gradient_product(model, params, batches)
        return {n: p.detach() * hg[n] for n, p in params.items()}
