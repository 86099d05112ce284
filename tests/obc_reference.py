"""The row-wise OBC loop as prunelib ran it before compaction and the closed-form update
(commit 427ddfd, prunelib/methods/second_order.py): every step reads and writes each
row's full H⁻¹ [cols, cols], dead columns masked; the updated rows come from a second
pass that replays the first counts[r] removals.  Kept here, and only here, as the
reference that tests/test_second_order.py holds the fast code to (the same order and ΔL
bit for bit, the same masks, the same weights to rounding) and that
benchmarks/obc_rows_cost.py times it against."""

from __future__ import annotations

import math

import torch

from prunelib.foundations.seeding import generator
from prunelib.methods import masking
from prunelib.methods.second_order import damped_hessian


def obc_rows(w: torch.Tensor, h: torch.Tensor, counts: torch.Tensor | None = None, chunk: int | None = None):
    """Without ``counts``: (order, ΔL) per row and step; with ``counts``: the rows after
    their first counts[r] removals, by replaying them."""
    rows, cols = w.shape
    if chunk is None:
        chunk = max(1, min(64, (1 << 27) // (cols * cols)))
    hinv0 = torch.linalg.inv(h)
    if counts is None:
        order = torch.empty(rows, cols, dtype=torch.long)
        losses = torch.empty(rows, cols, dtype=torch.float64)
    else:
        out = torch.empty(rows, cols, dtype=torch.float64)
    for r0 in range(0, rows, chunk):
        W = w[r0:r0 + chunk].to(torch.float64).clone()
        k = W.shape[0]
        Hi = hinv0.expand(k, cols, cols).clone()
        dead = torch.zeros(k, cols, dtype=torch.bool)
        steps = cols if counts is None else int(counts[r0:r0 + chunk].max()) if k else 0
        active = torch.ones(k, dtype=torch.bool)
        for s in range(steps):
            if counts is not None:
                active = counts[r0:r0 + chunk] > s
            d = Hi.diagonal(dim1=1, dim2=2)
            sal = (W * W) / d.clamp_min(1e-300)
            sal = sal.masked_fill(dead, math.inf)
            q = torch.argmin(sal, dim=1)
            ar = torch.arange(k)
            dq = d[ar, q]
            wq = W[ar, q]
            col = Hi[ar, :, q]
            coef = (wq / dq) * active
            W -= coef.unsqueeze(1) * col
            W[ar[active], q[active]] = 0.0
            down = (col / dq.unsqueeze(1)) * active.unsqueeze(1)
            Hi -= col.unsqueeze(2) * down.unsqueeze(1)
            if counts is None:
                order[r0:r0 + k, s] = q
                losses[r0:r0 + k, s] = wq * wq / (2.0 * dq)
            dead[ar[active], q[active]] = True
        if counts is not None:
            out[r0:r0 + k] = W
    return (order, losses) if counts is None else out


def lobs_layer(w: torch.Tensor, h: torch.Tensor, keep: int, seed: int, stream: str, damping: float):
    """(mask, updated weights, selection, per-weight score) as ``second_order.lobs_layer``
    computed them with the two passes above."""
    rows = w.shape[0]
    w2 = w.reshape(rows, -1)
    cols = w2.shape[1]
    h = damped_hessian(h, damping)  # the damping is not what the reference compares: shared
    order, losses = obc_rows(w2, h)
    score = torch.cummax(losses, dim=1).values
    sel = masking.select_top(-score.reshape(-1), rows * cols - keep, generator(seed, stream))
    counts = sel.keep.view(rows, cols).sum(1)
    new = obc_rows(w2, h, counts)
    mask = torch.ones(rows, cols, dtype=torch.bool)
    for r in range(rows):
        mask[r, order[r, :int(counts[r])]] = False
    per_weight = torch.empty(rows, cols, dtype=torch.float64).scatter_(1, order, score)
    return mask.view_as(w), new.view_as(w).to(w.dtype), sel, per_weight.view_as(w)
