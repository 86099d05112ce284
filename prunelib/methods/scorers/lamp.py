"""LAMP: layer-adaptive magnitude pruning (Lee, Park, Mo, Ahn & Shin, ICLR 2021, Eq. 2).

Within each tensor W, with its weights sorted so that |W[u]| <= |W[v]| for u < v,

    LAMP(u; W) = W[u]^2 / sum_{v >= u} W[v]^2

and the scores of all tensors are then ranked globally.  The largest weight of every
tensor scores exactly 1, so global LAMP never removes a whole layer before every other
layer is down to one weight.  Equal magnitudes are ordered by position (a stable sort),
so the score is deterministic.  Computed in float64.
"""

from __future__ import annotations

import torch

from prunelib.methods.scorers.base import Scorer


def lamp_scores(w: torch.Tensor) -> torch.Tensor:
    sq = w.detach().flatten().to(torch.float64) ** 2
    order = torch.argsort(sq, stable=True)
    sorted_sq = sq[order]
    tail = torch.flip(torch.cumsum(torch.flip(sorted_sq, [0]), 0), [0])  # sum_{v >= u}
    ratio = torch.where(tail > 0, sorted_sq / torch.where(tail > 0, tail, torch.ones_like(tail)),
                        torch.zeros_like(tail))
    out = torch.empty_like(sq)
    out[order] = ratio
    return out.view_as(w)


class LampScorer(Scorer):
    def score(self, model, params, batches, seed):
        return {name: lamp_scores(p) for name, p in params.items()}
