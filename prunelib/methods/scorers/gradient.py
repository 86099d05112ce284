"""Gradient baseline: s = |theta * g| (the reproduction study's Eq. 2.2).

g is the gradient of the mean cross-entropy on the scoring data (averaged over the
scoring batches).  Unlike SNIP the scores are not normalised (ranking is the same).
"""

from __future__ import annotations

from prunelib.methods.scorers.base import Scorer
from prunelib.methods.scorers.gradients import loss_gradients


class GradientScorer(Scorer):
    needs_data = True

    def score(self, model, params, batches, seed):
        grads = loss_gradients(model, params, batches)
        return {name: (p.detach() * grads[name]).abs() for name, p in params.items()}
