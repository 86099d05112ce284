"""Loss gradients on the scoring data, shared by the data-driven scorers (SNIP, the
gradient baseline, GraSP).

    g = (1/B) sum_b d CE(f(x_b; theta), y_b) / d theta

the mean over the B scoring batches of the gradient of each batch's mean cross-entropy,
with the network in train mode, as at the start of training (BatchNorm normalises with
the batch's own statistics).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def loss_gradients(model, params, batches) -> dict[str, torch.Tensor]:
    """Mean over batches of d(mean cross-entropy)/d(theta) for ``params``."""
    model.train()
    grads = {name: torch.zeros_like(p) for name, p in params.items()}
    n_batches = 0
    for x, y in batches:
        loss = F.cross_entropy(model(x), y)
        gs = torch.autograd.grad(loss, list(params.values()))
        for name, g in zip(params, gs):
            grads[name] += g
        n_batches += 1
    if n_batches == 0:
        raise ValueError("no scoring batches")
    return {name: g / n_batches for name, g in grads.items()}
