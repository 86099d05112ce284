"""The scorer interface: one object, one job.

``score(model, params, batches, seed) -> {name: tensor}`` returns one importance score
per prunable weight, same shape as the parameter, where *higher means keep*.  Turning
scores into masks is ``prunelib.methods.masking``'s job.  Methods whose scores depend on the
target ratio (iterative ones, e.g. SynFlow) set ``needs_ratio`` and are called with it.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn


class Scorer:
    #: Whether ``score`` reads the scoring batches.
    needs_data: bool = False
    #: Whether the scores depend on the compression ratio (scored at mask time).
    needs_ratio: bool = False

    def score(self, model: nn.Module, params: dict[str, nn.Parameter],
              batches: Iterable[tuple[torch.Tensor, torch.Tensor]], seed: int) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def describe(self) -> dict:
        """Settings of this scorer, recorded in the score artifact."""
        return {}
