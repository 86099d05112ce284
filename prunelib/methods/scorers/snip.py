"""SNIP: connection sensitivity (Lee, Ajanthan & Torr, ICLR 2019, Eq. 6).

With auxiliary multiplicative mask c on the weights, the sensitivity of weight j is

    g_j = dL(c * theta; D) / dc_j  at c = 1  =  theta_j * dL/dtheta_j
    s_j = |g_j| / sum_k |g_k|

summed over all prunable weights.  The 2022 reproduction study (its Eq. 3.5) writes
the score as |dL/dtheta| alone, dropping the factor theta; we follow the SNIP paper,
whose definition is the derivative with respect to the mask, i.e. |theta * grad|.
``tests/test_scorers.py`` checks both the autograd-on-c identity and the difference.

The loss is the mean cross-entropy over the scoring data (gradients averaged over
the scoring batches); the network is in train mode, as at the start of training.
"""

from __future__ import annotations

from prunelib.methods.scorers.base import Scorer
from prunelib.methods.scorers.gradients import loss_gradients


class SnipScorer(Scorer):
    needs_data = True

    def score(self, model, params, batches, seed):
        grads = loss_gradients(model, params, batches)
        sens = {name: (p.detach() * grads[name]).abs() for name, p in params.items()}
        total = sum(s.sum() for s in sens.values())
        return {name: s / total for name, s in sens.items()}
