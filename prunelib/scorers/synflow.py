"""SynFlow: iterative synaptic flow pruning (Tanaka, Kunin, Yamins & Ganguli, NeurIPS 2020).

Data-free.  Every parameter is replaced by its absolute value, normalisation layers are
put in eval mode, and an all-ones input is passed through the network:

    R = 1^T ( prod_l |theta^[l]| ) 1        (the sum of the network's outputs)
    score = (dR/dtheta) * theta

(with theta = |theta| here, so every score is >= 0).  Pruning is iterative: over n rounds
(default 100) the density follows the exponential schedule density_k = r^(-k/n), and
each round re-scores the network with the current mask applied before selecting the
exact top round(N * density_k) weights; the last round lands exactly on r.  Weights pruned
in an earlier round stay pruned (they are ranked below every survivor).

R is a product over all layers, which overflows float32 on deep networks (the
reproduction study's ResNet-56 SynFlow masks pruned everything); we compute in float64.
Because of the per-round selection, the scores depend on r: the ``score`` stage stores the
single-shot (round-1) scores and the ``mask`` stage runs the rounds.
"""

from __future__ import annotations

import copy

import torch

from prunelib.masking import _select_top, kept_count, removal_ranking, select_masks
from prunelib.seeding import generator
from prunelib.scorers.base import Scorer


def _input_shape(model) -> tuple:
    shape = getattr(model, "input_shape", None)
    if shape is None:
        raise ValueError("SynFlow needs model.input_shape (channels, height, width)")
    return tuple(shape)


class _LinearizedNet:
    """The network with |theta| in float64 and norm layers in eval mode, built once; each
    round only writes |theta| * mask into it (no copy of the network per round)."""

    def __init__(self, model: torch.nn.Module, names: list[str]):
        self.net = copy.deepcopy(model).to(torch.float64).eval()
        with torch.no_grad():
            for p in self.net.parameters():
                p.abs_()
            for buf in self.net.buffers():  # running statistics: keep them non-negative too
                if buf.is_floating_point():
                    buf.abs_()
        self.params = dict(self.net.named_parameters())
        self.names = names
        self.abs_weights = {n: self.params[n].detach().clone() for n in names}
        device = next(self.net.parameters()).device
        self.x = torch.ones((1, *_input_shape(model)), dtype=torch.float64, device=device)

    def scores(self, masks: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            for n in self.names:
                w = self.abs_weights[n]
                self.params[n].copy_(w if masks is None else w * masks[n].to(w.dtype))
        r = self.net(self.x).sum()
        grads = torch.autograd.grad(r, [self.params[n] for n in self.names])
        return {n: (g * self.params[n]).detach() for n, g in zip(self.names, grads)}


def synflow_scores(model: torch.nn.Module, names: list[str],
                   masks: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Single-shot SynFlow scores of ``names`` (optionally with ``masks`` applied)."""
    return _LinearizedNet(model, names).scores(masks)


class SynflowScorer(Scorer):
    needs_ratio = True

    def __init__(self, rounds: int = 100):
        self.rounds = rounds

    def describe(self):
        return {"rounds": self.rounds, "schedule": "exponential", "dtype": "float64"}

    def score(self, model, params, batches, seed):
        return synflow_scores(model, list(params))

    def prune(self, model, params, ratio, scope, seed, method="synflow"):
        """Masks, audit rows of the last round, and the whole run's ranking
        (``masking.removal_ranking``: weights pruned in earlier rounds rank lowest, then by
        the score they had when last ranked), which the ``invert`` sanity check uses."""
        names = list(params)
        net = _LinearizedNet(model, names)
        masks = {n: torch.ones_like(params[n], dtype=torch.bool) for n in names}
        pruned_round = {n: torch.zeros_like(m, dtype=torch.int32) for n, m in masks.items()}
        ranked_by = {n: torch.zeros_like(params[n], dtype=torch.float64) for n in names}
        n_total = sum(params[n].numel() for n in names)
        rows = None
        for k in range(1, self.rounds + 1):
            scores = net.scores(masks)
            for n in names:  # the survivors' latest score
                ranked_by[n] = torch.where(masks[n], scores[n].to(torch.float64), ranked_by[n])
            density_ratio = float(ratio) ** (k / self.rounds)
            if k < self.rounds and scope == "global":
                new = _prune_survivors(scores, masks, kept_count(n_total, density_ratio),
                                       generator(seed, f"synflow-round:{k}"))
            else:
                # last round (and any layer-wise use): the audited selection, with tie records;
                # previously pruned weights rank below any survivor
                scores = {n: torch.where(masks[n], v, torch.full_like(v, -1.0)) for n, v in scores.items()}
                new, rows = select_masks(scores, density_ratio, scope, seed, method=method)
            for n in names:
                pruned_round[n] = torch.where(masks[n] & ~new[n], torch.full_like(pruned_round[n], k),
                                              pruned_round[n])
            masks = new
        for n in names:  # survivors rank above everything pruned
            pruned_round[n] = torch.where(masks[n], torch.full_like(pruned_round[n], self.rounds + 1),
                                          pruned_round[n])
        return masks, rows, removal_ranking(pruned_round, ranked_by)


def _prune_survivors(scores: dict, masks: dict, keep: int, gen: torch.Generator) -> dict:
    """One intermediate round: keep the ``keep`` highest-scoring survivors (exact count,
    seeded ties).  Selecting among survivors only, not all weights, is what keeps 100
    rounds affordable on large networks."""
    flat = torch.cat([scores[n][masks[n]].to(torch.float64) for n in scores])
    keep_flat = _select_top(flat, keep, gen).keep
    out, offset = {}, 0
    for n, m in masks.items():
        count = int(m.sum())
        new = torch.zeros_like(m)
        new[m] = keep_flat[offset:offset + count]
        out[n] = new
        offset += count
    return out
