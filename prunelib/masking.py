"""From scores to boolean masks, meeting the requested compression exactly.

Convention: a higher score means more important; the ``k`` highest-scoring weights are
kept, with

    k = round_half_up(n / r)

over all prunable weights together (``scope="global"``) or over each tensor separately
(``scope="layer"``).  The threshold is the k-th largest score (a selection, not a full
sort).  Weights strictly above it are kept; among the weights *equal* to it, exactly the
number still needed is drawn at random with a generator seeded by the run's seed.  A tie
group is thus never kept or dropped whole, which is how methods whose scores tie or
vanish (e.g. GraSP and OBD in the 2022 reproduction study) came to under-prune by
30-50%.  How many weights tied at the threshold, and how many of them were kept, is
recorded per tensor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import torch

from prunelib.errors import PrunelibError
from prunelib.seeding import generator

SCOPES = ("global", "layer", "all")


class ScoreError(PrunelibError, ValueError):
    pass


def kept_count(n: int, ratio: float) -> int:
    """round(n / r), halves rounded up, computed exactly in rationals."""
    if ratio < 1:
        raise ValueError(f"compression ratio must be >= 1, got {ratio}")
    q = Fraction(n) / Fraction(ratio)
    return min(n, math.floor(q + Fraction(1, 2)))


@dataclass
class Selection:
    keep: torch.Tensor        # bool, flat
    threshold: float
    n_tied: int               # elements equal to the threshold
    n_tied_kept: int


def _select_top(flat: torch.Tensor, k: int, gen: torch.Generator) -> Selection:
    n = flat.numel()
    if k >= n:
        return Selection(torch.ones(n, dtype=torch.bool), float("-inf"), 0, 0)
    if k <= 0:
        return Selection(torch.zeros(n, dtype=torch.bool), float("inf"), 0, 0)
    threshold = torch.kthvalue(flat, n - k + 1).values
    keep = flat > threshold
    tied = (flat == threshold).nonzero().flatten()
    need = k - int(keep.sum())
    if need < tied.numel():
        tied = tied[torch.randperm(tied.numel(), generator=gen)[:need]]
    keep[tied] = True
    n_tied = int((flat == threshold).sum())
    return Selection(keep, float(threshold), n_tied, need)


def check_finite(scores: dict[str, torch.Tensor], method: str) -> None:
    for name, s in scores.items():
        bad = int((~torch.isfinite(s)).sum())
        if bad:
            raise ScoreError(f"method {method}: tensor {name} has {bad} NaN or infinite scores "
                             f"out of {s.numel()}; refusing to rank them")


def select_masks(scores: dict[str, torch.Tensor], ratio: float, scope: str, seed: int,
                 method: str = "?") -> tuple[dict[str, torch.Tensor], list[dict]]:
    """Masks (bool, same shapes as scores) and one audit row per tensor.

    ``scope="all"`` keeps everything (the dense control); ``ratio`` must then be 1.
    """
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; allowed: {', '.join(SCOPES)}")
    check_finite(scores, method)
    names = list(scores)
    masks: dict[str, torch.Tensor] = {}
    tie: dict[str, tuple[int, int, float]] = {}
    if scope == "all":
        if float(ratio) != 1.0:
            raise ValueError(f"the dense control keeps every weight; ratio must be 1, got {ratio}")
        for name in names:
            masks[name] = torch.ones_like(scores[name], dtype=torch.bool)
            tie[name] = (0, 0, float("-inf"))
    elif scope == "global":
        flat = torch.cat([scores[n].detach().flatten().to(torch.float64) for n in names])
        sel = _select_top(flat, kept_count(flat.numel(), ratio), generator(seed, "tie-break"))
        offset = 0
        tied_mask = flat == sel.threshold
        for name in names:
            numel = scores[name].numel()
            part = slice(offset, offset + numel)
            masks[name] = sel.keep[part].view_as(scores[name]).clone()
            n_tied = int(tied_mask[part].sum()) if sel.n_tied else 0
            n_tied_kept = int((tied_mask[part] & sel.keep[part]).sum()) if sel.n_tied else 0
            tie[name] = (n_tied, n_tied_kept, sel.threshold)
            offset += numel
    else:
        for name in names:
            flat = scores[name].detach().flatten().to(torch.float64)
            sel = _select_top(flat, kept_count(flat.numel(), ratio), generator(seed, f"tie-break:{name}"))
            masks[name] = sel.keep.view_as(scores[name]).clone()
            tie[name] = (sel.n_tied, sel.n_tied_kept, sel.threshold)
    rows = []
    for name in names:
        m = masks[name]
        kept = int(m.sum())
        rows.append({
            "name": name,
            "shape": "x".join(map(str, m.shape)),
            "numel": m.numel(),
            "kept": kept,
            "density": kept / m.numel(),
            "collapsed": kept == 0,
            "threshold": tie[name][2],
            "tied_at_threshold": tie[name][0],
            "tied_kept": tie[name][1],
        })
    return masks, rows


def mask_summary(rows: list[dict]) -> dict:
    n = sum(r["numel"] for r in rows)
    kept = sum(r["kept"] for r in rows)
    return {
        "n_prunable": n,
        "n_kept": kept,
        "collapsed_layers": [r["name"] for r in rows if r["collapsed"]],
        "empirical_ratio": (n / kept) if kept else float("inf"),
    }


def removal_ranking(pruned_round: dict[str, torch.Tensor], ranked_by: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The ranking of a multi-round pruning (IMP, SynFlow): dense ranks (float64, higher =
    more important) of the lexicographic order on (round a weight was pruned in, survivors
    last; the score it had when last ranked).  Weights pruned earlier rank lower whatever
    their score; equal keys share a rank, so a selection on them draws ties with the seed.
    The top round(N d_j) ranks are exactly round j's mask."""
    names = list(pruned_round)
    rounds = torch.cat([pruned_round[n].flatten().to(torch.int64) for n in names])
    by = torch.cat([ranked_by[n].flatten().to(torch.float64) for n in names])
    order = torch.argsort(by, stable=True)
    order = order[torch.argsort(rounds[order], stable=True)]
    r_sorted, b_sorted = rounds[order], by[order]
    new_key = torch.ones_like(r_sorted, dtype=torch.bool)
    new_key[1:] = (r_sorted[1:] != r_sorted[:-1]) | (b_sorted[1:] != b_sorted[:-1])
    dense = torch.empty_like(rounds, dtype=torch.float64)
    dense[order] = torch.cumsum(new_key.to(torch.int64), 0).to(torch.float64)
    out, offset = {}, 0
    for n in names:
        k = pruned_round[n].numel()
        out[n] = dense[offset:offset + k].view_as(pruned_round[n])
        offset += k
    return out
