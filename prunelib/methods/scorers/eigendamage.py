"""EigenDamage's score stage (Wang et al., ICML 2019): the K-FAC factors of every layer it
rotates, stored beside the scores for the mask stage (which rotates, selects rows and
columns at the cell's ratio and builds the network: prunelib/methods/eigendamage.py).

The per-weight scores it returns are for audits only (the selection never reads them): the
K-FAC diagonal saliency  w_oc..^2 * S_oo * A_cc  (A over channels, EigenDamage's channel
patches; the bias coordinate left out), the loss change of removing one weight under the
diagonal of S (x) A.  Tensors of layers EigenDamage leaves alone (the classifier) score 0.
"""

from __future__ import annotations

import torch

from prunelib.methods import eigendamage, kfac
from prunelib.methods.scorers.base import Scorer


class EigenDamageScorer(Scorer):
    needs_data = True

    def __init__(self, fisher: str = "true"):
        if fisher not in kfac.FISHERS:
            raise ValueError(f"eigendamage: fisher = {fisher!r} is not allowed; allowed: {', '.join(kfac.FISHERS)}")
        self.fisher = fisher
        self.factors: dict = {}

    def describe(self):
        return {"fisher": self.fisher, "patches": "channel", "eig_floor": eigendamage.EIG_FLOOR,
                "prune_ratio_limit": eigendamage.PRUNE_RATIO_LIMIT}

    def artifact_extra(self) -> dict:
        """What the score artifact stores beside the scores: {layer: {A, S}} (float64, CPU)."""
        return {"kfac": {k: {"A": f.A.double().cpu(), "S": f.S.double().cpu(), "bias": f.bias,
                             "patches": f.patches} for k, f in self.factors.items()}}

    def score(self, model, params, batches, seed):
        layers = eigendamage.eigen_layers(model, list(params))
        self.factors = kfac.kfac_factors(model, layers, batches, seed, self.fisher, "channel")
        mods = dict(model.named_modules())
        out = {n: torch.zeros_like(p, dtype=torch.float64) for n, p in params.items()}
        for k, f in self.factors.items():
            w = mods[k].weight.detach().double()
            c = w.shape[1]
            a = torch.diagonal(f.A).double()[:c]
            s = torch.diagonal(f.S).double()
            shape = (-1, c) + (1,) * (w.dim() - 2)
            out[f"{k}.weight"] = w ** 2 * s[:, None].reshape(-1, *([1] * (w.dim() - 1))) * a.reshape(shape)
        return out
