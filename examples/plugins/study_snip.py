"""The reproduction study's SNIP score, as its Eq. 3.5 writes it: |dL/dtheta|, without theta.

James (2022), "A reproduction study of foresight pruning", Eq. 3.5, scores a weight by
the magnitude of the loss gradient alone,

    s_j = |dL/dtheta_j| / sum_k |dL/dtheta_k|,

where the SNIP paper (Lee et al., ICLR 2019, Eq. 6) differentiates with respect to a
multiplicative mask c and so scores |theta_j * dL/dtheta_j| (prunelib's ``snip``).  The
two differ by the factor |theta_j|, which is why they rank weights differently.

This file is a prunelib plugin: name it in the config and the method joins the grid,
every stage, the tables and the audit like a built-in,

    plugins: [examples/plugins/study_snip.py]
    grid: {methods: [snip, snip_abs_grad]}

The loss is the mean cross-entropy over the scoring batches (gradients averaged over
the batches), with the network in train mode, as for ``snip``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from prunelib import Scorer, register_method


@register_method("snip_abs_grad", scope="global",
                 paper="James 2022, Eq. 3.5 (SNIP as the study writes it: |dL/dtheta|)")
class AbsGradScorer(Scorer):
    needs_data = True  # the stage hands it the scoring batches

    def score(self, model, params, batches, seed):
        model.train()
        names, tensors = list(params), list(params.values())
        total = [torch.zeros_like(p) for p in tensors]
        batches = list(batches)
        for x, y in batches:
            for acc, g in zip(total, torch.autograd.grad(F.cross_entropy(model(x), y), tensors)):
                acc += g
        magnitude = [(acc / len(batches)).abs() for acc in total]
        norm = sum(m.sum() for m in magnitude)
        return {n: m / norm for n, m in zip(names, magnitude)}
