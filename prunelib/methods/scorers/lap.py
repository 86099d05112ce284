"""Lookahead pruning, LAP (Park, Lee, Mo & Shin, ICLR 2020, Eq. 4).

For the weight w joining input unit j to output unit k of layer i (W_i has shape
[out, in, ...]),

    L_i(w) = |w| * ||W_{i-1}[j, :]|| * ||W_{i+1}[:, k]||

where W_{i-1}[j, :] are the weights *producing* unit j (row j of the previous layer) and
W_{i+1}[:, k] those *consuming* unit k (column k of the next layer), Frobenius norms.
The first and last layers use only the neighbour they have.

Convolutions: a unit is a channel, so the norms are taken over whole kernels:
||W_{i-1}[j, :, :, :]|| and ||W_{i+1}[:, k, :, :]||.  Where a convolution is flattened
into a Linear layer with in = C * s features (channel-major, as torch.flatten), the
Linear's input unit j belongs to channel j // s, and channel k's outgoing norm is taken
over the s columns of that channel.  Layers are chained in parameter order; where two
neighbours' shapes do not connect (e.g. a residual shortcut), that factor is omitted.
Prunable parameters that are not weight matrices (biases, norm layers) score |theta|.
The authors' code (alinlab/lookahead_pruning, method/laprune.py) ranks by the square,
w^2 * sum W_{i-1}[j,:]^2 * sum W_{i+1}[:,k]^2 = L_i(w)^2, with the same neighbours and the
same flatten grouping: the same order.

Global LAP (``global_lap``) ranks these raw L_i across all layers, as the 2022 study
defines it (Sec. 3.2: the distortion "is first computed for every weight in the network,
and then the weights with the smallest distortions are pruned simultaneously").  Each
layer's lookahead factor ||W_{i-1}[j,:]|| * ||W_{i+1}[:,k]|| has its own scale, so a
layer can collapse (keep nothing) while every other layer keeps most of its weights.
Under PyTorch's default init (U(+-1/sqrt(fan_in))) a row norm is about 1/sqrt(3) in
every layer, but a column norm is sqrt(n / (3 * fan_in_{i+1})) for a column of n entries:
LeNet-5's fc1 (800 -> 500) looks ahead to fc2's 10-entry columns (0.08) where conv2 looks
ahead to fc1's 8,000-entry channel groups (1.83).  With the ``thesis`` init for seed
42, the median factor is 0.048 for fc1 against 1.07 for conv2, 0.92 for conv1 and 0.58
for fc2; fc1's best score ranks 28,612th of 430,500 weights, so fc1 keeps weights only
while more than 28,611 are kept (r < 15.05) and collapses from r = 16 (seeds 43 and 44:
r < 14.92 and r < 14.98).  This is faithful to the formula, not a scorer bug
(tests/test_methods.py pins it).  The authors' own global
variant (``lap_global_normalize``, method/global_prune.py) divides each layer's squared
scores by their Frobenius norm before the global sort; that variant is not ``global_lap``
(it keeps 11,131 fc1 weights at r = 16 here, and collapses fc1 too at r = 64).
"""

from __future__ import annotations

import torch

from prunelib.methods.scorers.base import Scorer


def _prev_norms(prev: torch.Tensor, cur: torch.Tensor) -> torch.Tensor | None:
    """Norm of the weights producing each input unit of ``cur`` (length cur.shape[1])."""
    out_prev, in_cur = prev.shape[0], cur.shape[1]
    rows = prev.detach().flatten(1).norm(dim=1)       # one per output unit of prev
    if in_cur == out_prev:
        return rows
    if in_cur % out_prev == 0:
        return rows.repeat_interleave(in_cur // out_prev)
    return None


def _next_norms(cur: torch.Tensor, nxt: torch.Tensor) -> torch.Tensor | None:
    """Norm of the weights consuming each output unit of ``cur`` (length cur.shape[0])."""
    out_cur, in_next = cur.shape[0], nxt.shape[1]
    if in_next == out_cur:
        return nxt.detach().transpose(0, 1).flatten(1).norm(dim=1)
    if in_next % out_cur == 0:
        s = in_next // out_cur
        return nxt.detach().reshape(nxt.shape[0], out_cur, s, -1).transpose(0, 1).flatten(1).norm(dim=1)
    return None


def lap_scores(weights: list[torch.Tensor]) -> list[torch.Tensor]:
    out = []
    for i, w in enumerate(weights):
        s = w.detach().abs().to(torch.float64)
        view = [1] * w.dim()
        if i > 0 and (prev := _prev_norms(weights[i - 1], w)) is not None:
            view_in = list(view)
            view_in[1] = -1
            s = s * prev.to(torch.float64).view(view_in)
        if i + 1 < len(weights) and (nxt := _next_norms(w, weights[i + 1])) is not None:
            view_out = list(view)
            view_out[0] = -1
            s = s * nxt.to(torch.float64).view(view_out)
        out.append(s)
    return out


class LapScorer(Scorer):
    def score(self, model, params, batches, seed):
        names = [n for n, p in params.items() if p.dim() >= 2]
        scores = dict(zip(names, lap_scores([params[n] for n in names])))
        return {n: scores[n] if n in scores else p.detach().abs().to(torch.float64)
                for n, p in params.items()}
