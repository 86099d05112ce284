"""The scorer interface: one object, one job.

``score(model, params, batches, seed) -> {name: tensor}`` returns one importance score
per prunable weight, same shape as the parameter, where *higher means keep*.  Turning
scores into masks is ``prunelib.methods.masking``'s job (exact top-k, ties broken by a
seeded draw, every deviation recorded).

The ``prune`` protocol, for methods whose scores depend on the ratio
-----------------------------------------------------------------------
A scorer that sets ``needs_ratio = True`` is registered as a re-scoring method
(``Pruning`` ``rescored``, prunelib/catalogue/pruning.py): its ``score`` still runs once
in the score stage (its scores at the dense network, recorded for audits), and the mask
stage calls, once per ratio::

    masks, rows, ranking = scorer.prune(model, params, ratio, scope, seed, method=name, ranking=wanted)

with ``model`` the initial network on the job's device, ``params`` its prunable
parameters by name, ``ratio`` the compression ratio r (keep round(n / r) weights over
``scope``: ``global`` or ``layer``), ``seed`` the cell's seed (draws between ties must
come from it), ``method`` the name recorded in the rows.  It must return

* ``masks``: ``{name: bool tensor}``, one per entry of ``params``, same shape, keeping
  exactly ``masking.kept_count`` weights (per tensor for ``layer``);
* ``rows``: the audit rows of ``masking.select_masks`` for the final selection (one per
  tensor: numel, kept, density, threshold, ties);
* ``ranking``: when ``ranking`` is true, ``{name: float tensor}`` ordering every weight
  for the ``invert`` sanity check (higher = kept longer; ``masking.removal_ranking``),
  else None (building it may cost as much as the pruning).

``masking.multi_round_select`` implements the rounds for a scorer that can re-score the
surviving network (SynFlow's exponential schedule); a new re-scoring method normally
calls it with its own score function.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn


class Scorer:
    #: Whether ``score`` reads the scoring batches.
    needs_data: bool = False
    #: Whether the scores depend on the compression ratio (then ``prune`` makes the mask;
    #: see the module docstring).
    needs_ratio: bool = False

    def score(self, model: nn.Module, params: dict[str, nn.Parameter],
              batches: Iterable[tuple[torch.Tensor, torch.Tensor]], seed: int) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def prune(self, model: nn.Module, params: dict[str, nn.Parameter], ratio: float, scope: str, seed: int,
              method: str = "?", ranking: bool = False) -> tuple[dict, list, dict | None]:
        """(masks, audit rows, ranking or None) at ``ratio``: re-scoring methods only (see
        the module docstring for what each must hold)."""
        raise NotImplementedError(f"{type(self).__name__} sets needs_ratio but has no prune()")

    def describe(self) -> dict:
        """Settings of this scorer, recorded in the score artifact."""
        return {}
