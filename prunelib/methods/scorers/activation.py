"""Activation baseline: s = |theta * a| (the reproduction study's Eq. 2.3).

a_k is the batch-averaged output of the activation function that follows the layer, for
the output unit k that the weight feeds (for a convolution: output channel k, averaged
over the batch and all spatial positions).  Our convention, since networks apply their
activation functions inside ``forward``:

* hidden layers: a_k = mean over batch (and positions) of ReLU(y_k), y the layer's output;
  this is exactly the post-activation output for Conv/Linear -> ReLU networks;
* the output layer (the one whose output is the network's output): a_k = mean softmax
  probability of class k, the activation of cross-entropy;
* per layer, a is normalised by its maximum (a_k / max_k a_k, so each layer's most active
  unit has a = 1) before multiplying; an all-zero layer keeps a = 0.

Scores are computed on the scoring data in train mode; a weight of shape [out, in, ...]
gets |W[k, ...]| * a_k, a bias |b_k| * a_k.
"""

from __future__ import annotations

import torch

from prunelib.methods.scorers.base import Scorer


class ActivationScorer(Scorer):
    needs_data = True

    def score(self, model, params, batches, seed):
        modules = {}
        for name in params:
            mod_name = name.rsplit(".", 1)[0] if "." in name else ""
            modules.setdefault(mod_name, model.get_submodule(mod_name))
        sums: dict[str, torch.Tensor] = {}
        outputs: dict[str, torch.Tensor] = {}
        handles = [m.register_forward_hook(lambda mod, inp, out, key=k: outputs.__setitem__(key, out))
                   for k, m in modules.items()]
        count = 0
        model.train()
        try:
            with torch.no_grad():
                for x, _ in batches:
                    outputs.clear()
                    final = model(x)
                    for key, y in outputs.items():
                        if y is final:
                            act = torch.softmax(y, dim=1)
                        else:
                            act = torch.relu(y)
                        per_unit = act.transpose(0, 1).flatten(1).sum(dim=1).to(torch.float64)
                        per_unit = per_unit / (act[0].numel() // act.shape[1])  # mean over positions
                        sums[key] = sums.get(key, 0) + per_unit
                    count += x.shape[0]
        finally:
            for h in handles:
                h.remove()
        if count == 0:
            raise ValueError("no scoring batches")
        scores = {}
        for name, p in params.items():
            key = name.rsplit(".", 1)[0] if "." in name else ""
            a = sums[key] / count
            top = a.max()
            a = a / top if top > 0 else torch.zeros_like(a)
            shape = [-1] + [1] * (p.dim() - 1)
            scores[name] = p.detach().abs().to(torch.float64) * a.view(shape)
        return scores
