"""Random pruning: i.i.d. U(0, 1) scores drawn with the seed, ranked globally.

Because every weight is equally likely to be kept, each layer keeps ~1/r of its
weights in expectation; the kept count over the network is exact.
"""

from __future__ import annotations

import torch

from prunelib.methods.scorers.base import Scorer
from prunelib.foundations.seeding import generator


class RandomScorer(Scorer):
    def score(self, model, params, batches, seed):
        g = generator(seed, "random-scores")
        return {name: torch.rand(p.shape, generator=g, dtype=torch.float64).to(torch.float32)
                for name, p in params.items()}
