"""From scores to boolean masks, meeting the requested compression exactly.

Convention: a higher score means more important; the ``k`` highest-scoring weights are
kept, with

    k = round_half_up(n / r)

over all prunable weights together (``scope="global"``) or over each tensor separately
(``scope="layer"``), or with an explicit count per tensor (``select_per_tensor``, for
IMP's ``layer_output_half`` criterion).  The threshold is the k-th largest score (a
selection, not a full sort).  Weights strictly above it are kept; among the weights
*equal* to it, exactly the number still needed is drawn at random with a generator
seeded by the run's seed.  A tie group is thus never kept or dropped whole, which is how
methods whose scores tie or vanish (e.g. GraSP and OBD in the 2022 reproduction study)
came to under-prune by 30-50%.  How many weights tied at the threshold, and how many of
them were kept, is recorded per tensor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import torch

from prunelib.foundations.errors import PrunelibError
from prunelib.foundations.seeding import generator

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
    tied: torch.Tensor | None = None       # flat indices of the elements equal to the threshold
    tied_kept: torch.Tensor | None = None  # the subset of ``tied`` that was kept


def _order_keys(flat: torch.Tensor) -> torch.Tensor:
    """Signed integers in the same order as the floats ``flat`` (IEEE 754: flip the
    magnitude bits of negatives).  -0.0 sorts just below +0.0; callers compare the
    threshold as a float again, so the two zeros still tie."""
    bits = flat.view(torch.int32 if flat.element_size() == 4 else torch.int64)
    sign_fill = bits >> (8 * flat.element_size() - 1)  # all ones for negatives, zeros otherwise
    return bits ^ (sign_fill & torch.iinfo(bits.dtype).max)


def _kth_bucket(flat: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(k-th largest value, indices of the entries in its radix bucket, number of entries
    in higher buckets).  Every entry equal to the k-th largest is in the bucket, except
    that -0.0 and +0.0 may fall in different buckets when there are negative entries."""
    n = flat.numel()
    if flat.dtype not in (torch.float32, torch.float64) or n < (1 << 16):
        return torch.kthvalue(flat, n - k + 1).values, torch.arange(n, device=flat.device), 0
    flat = flat.contiguous()
    shift = 8 * flat.element_size() - 16
    if bool(flat.min() >= 0):  # scores are mostly >= 0: their raw bits are already ordered
        bucket = flat.view(torch.int32 if flat.element_size() == 4 else torch.int64) >> shift
        bucket.clamp_(min=0)  # -0.0 (sign bit set) joins +0.0 in bucket 0
    else:
        bucket = (_order_keys(flat) >> shift) + (1 << 15)  # 0 .. 65535, ascending with the value
    counts = torch.bincount(bucket, minlength=1 << 16)
    from_top = counts.flip(0).cumsum(0)
    top = int(torch.searchsorted(from_top, torch.tensor([k], device=from_top.device)))  # first >= k
    b = from_top.numel() - 1 - top
    above = int(from_top[top - 1]) if top else 0   # elements in higher buckets
    index = (bucket == b).nonzero().flatten()
    candidates = torch.index_select(flat, 0, index)
    return torch.kthvalue(candidates, candidates.numel() - (k - above) + 1).values, index, above


def kth_largest(flat: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th largest value of ``flat`` (1 <= k <= n), exactly, as a 0-d tensor.

    A one-pass radix select: a histogram of the top 16 bits of order-preserving integer
    keys finds the bucket holding the k-th largest, and only that bucket is handed to
    ``torch.kthvalue``.  ``kthvalue`` alone copies and partitions all n elements, which
    made it the bulk of a selection on VGG-16 (14.7 M weights) and of every SynFlow round.
    """
    return _kth_bucket(flat, k)[0]


def select_top(flat: torch.Tensor, k: int, gen: torch.Generator) -> Selection:
    """The ``k`` highest entries of ``flat`` (exactly ``k``): every entry above the k-th
    largest value, and as many of those equal to it as are still needed, drawn with
    ``gen``.  The comparison runs in ``flat``'s own dtype (widening never changes an order)."""
    n = flat.numel()
    if k >= n:
        return Selection(torch.ones(n, dtype=torch.bool, device=flat.device), float("-inf"), 0, 0)
    if k <= 0:
        return Selection(torch.zeros(n, dtype=torch.bool, device=flat.device), float("inf"), 0, 0)
    threshold, index, above = _kth_bucket(flat, k)
    keep = flat > threshold
    if threshold == 0:  # the two zeros may sit in two buckets: find the ties in one pass over all
        tied = (flat == threshold).nonzero().flatten()
        need = k - int(torch.count_nonzero(keep))
    else:  # the ties and the entries above the threshold in its bucket: from the bucket alone
        values = torch.index_select(flat, 0, index)
        tied = index[values == threshold]
        need = k - above - int(torch.count_nonzero(values > threshold))
    kept = tied
    if need < tied.numel():
        kept = tied[torch.randperm(tied.numel(), generator=gen)[:need].to(tied.device)]
    keep[kept] = True
    return Selection(keep, float(threshold), int(tied.numel()), need, tied, kept)


def _tensor_of(flat_index: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Which tensor (position in the concatenation) each flat index falls in."""
    return torch.searchsorted(offsets, flat_index, right=True) - 1


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
        flat = torch.cat([scores[n].detach().flatten() for n in names])
        if not flat.is_floating_point():
            flat = flat.to(torch.float64)
        sel = select_top(flat, kept_count(flat.numel(), ratio), generator(seed, "tie-break"))
        sizes = [scores[n].numel() for n in names]
        offsets = torch.tensor([0] + sizes[:-1], device=flat.device).cumsum(0)
        n_tied = [0] * len(names)
        n_tied_kept = [0] * len(names)
        if sel.n_tied:  # a few tied indices, counted per tensor without another pass over all
            n_tied = torch.bincount(_tensor_of(sel.tied, offsets), minlength=len(names)).tolist()
            n_tied_kept = torch.bincount(_tensor_of(sel.tied_kept, offsets), minlength=len(names)).tolist()
        for i, (name, part) in enumerate(zip(names, sel.keep.split(sizes))):
            masks[name] = part.view_as(scores[name]).clone()  # own storage: saved alone, it is its size
            tie[name] = (n_tied[i], n_tied_kept[i], sel.threshold)
    else:
        return select_per_tensor(scores, {n: kept_count(scores[n].numel(), ratio) for n in names}, seed,
                                 method, checked=True)
    return masks, _audit_rows(names, masks, tie)


def select_per_tensor(scores: dict[str, torch.Tensor], counts: dict[str, int], seed: int, method: str = "?",
                      checked: bool = False) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """Masks keeping exactly ``counts[name]`` of each tensor's highest scores, and the
    audit rows; ties drawn from the stream ``tie-break:<tensor>`` of ``seed`` (what
    ``scope="layer"`` does with counts round(n_l / r))."""
    if not checked:
        check_finite(scores, method)
    masks: dict[str, torch.Tensor] = {}
    tie: dict[str, tuple[int, int, float]] = {}
    for name in scores:
        flat = scores[name].detach().flatten()
        if not flat.is_floating_point():
            flat = flat.to(torch.float64)
        k = counts[name]
        if not 0 <= k <= flat.numel():
            raise ValueError(f"method {method}: tensor {name} cannot keep {k} of its {flat.numel()} weights")
        sel = select_top(flat, k, generator(seed, f"tie-break:{name}"))
        masks[name] = sel.keep.view_as(scores[name]).clone()
        tie[name] = (sel.n_tied, sel.n_tied_kept, sel.threshold)
    return masks, _audit_rows(list(scores), masks, tie)


def _audit_rows(names: list[str], masks: dict[str, torch.Tensor], tie: dict) -> list[dict]:
    """One row per tensor: shape, numel, kept, density, collapsed and the tie record
    (n tied at the threshold, n of them kept, threshold)."""
    rows = []
    for name in names:
        m = masks[name]
        kept = int(torch.count_nonzero(m))
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
    return rows


def tied_at_cut(rows: list[dict]) -> int:
    """Weights equal to the threshold in tensors where the draw kept only some of them:
    the weights whose fate the seeded tie-break decided, not the scores."""
    return sum(r.get("tied_at_threshold", 0) for r in rows
               if r.get("tied_kept", 0) < r.get("tied_at_threshold", 0))


def mask_summary(rows: list[dict]) -> dict:
    n = sum(r["numel"] for r in rows)
    kept = sum(r["kept"] for r in rows)
    tied = tied_at_cut(rows)
    return {
        "n_prunable": n,
        "n_kept": kept,
        "collapsed_layers": [r["name"] for r in rows if r["collapsed"]],
        "empirical_ratio": (n / kept) if kept else float("inf"),
        "tied_at_cut": tied,
        "tied_at_cut_fraction": tied / n if n else 0.0,
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


def multi_round_select(score_round, remove, shapes: dict[str, torch.Size], ratio: float, rounds: int, scope: str,
                       seed: int, method: str = "?", stream: str = "round", ranking: bool = False):
    """Prune in ``rounds`` rounds to compression ``ratio``, rescoring between rounds.

    Round k (1..n) keeps the round(N r^(-k/n)) highest-scoring survivors (the exponential
    schedule of SynFlow, Tanaka et al. 2020, Alg. 1; per tensor with ``scope="layer"``),
    so the last round lands exactly on r and a pruned weight is never revived.

    ``score_round()`` returns the current flat scores of all N weights (in the order of
    ``shapes``; only the survivors' entries are read, and only within the round, so a
    scorer may rescale each round's scores by its own positive constant);
    ``remove(index)`` prunes the given flat indices from the network it scores.  Ties are
    drawn from the streams ``{stream}:{k}`` (global) / ``{stream}:{k}:{tensor}`` (layer)
    of ``seed``; the last round's tie records are the audit rows.

    Returns (masks, audit rows, ranking): with ``ranking``, ``removal_ranking`` of (round a
    weight was pruned in, its score in that round); otherwise None.  Only survivors are
    gathered and selected each round (index lists, no per-weight rewrite), which is what
    keeps 100 rounds affordable on VGG-16.
    """
    if scope not in ("global", "layer"):
        raise ValueError(f"scope = {scope!r} is not allowed for a multi-round selection; allowed: global, layer")
    if rounds < 1:
        raise ValueError(f"rounds = {rounds} is not allowed; allowed: an integer >= 1")
    names = list(shapes)
    sizes = [math.prod(shapes[n]) for n in names]
    n_total = sum(sizes)
    alive = None                  # flat indices of the survivors, ascending
    pruned_round = ranked_by = None
    for k in range(1, rounds + 1):
        flat = score_round()
        if alive is None:
            device = flat.device
            alive = torch.arange(n_total, device=device)
            offsets = torch.tensor([0] + sizes, device=device).cumsum(0)
            if ranking:
                pruned_round = torch.full((n_total,), rounds + 1, dtype=torch.int32, device=device)
                ranked_by = torch.zeros(n_total, dtype=torch.float64, device=device)
        s = torch.index_select(flat, 0, alive)  # (several times faster than flat[alive] on CPU)
        if not math.isfinite(float(s.sum())):  # one cheap pass; NaN and inf propagate into the sum
            bad = int(s.numel() - torch.count_nonzero(torch.isfinite(s)))
        else:
            bad = 0
        if bad:
            raise ScoreError(f"method {method}: round {k} has {bad} NaN or infinite scores among "
                             f"{s.numel()} surviving weights; refusing to rank them")
        density_ratio = float(ratio) ** (k / rounds)
        if scope == "global":
            sels = [(0, select_top(s, kept_count(n_total, density_ratio), generator(seed, f"{stream}:{k}")))]
        else:  # survivors of tensor i are a contiguous run of the ascending ``alive``
            bounds = torch.searchsorted(alive, offsets).tolist()
            sels = [(bounds[i], select_top(s[bounds[i]:bounds[i + 1]], kept_count(sizes[i], density_ratio),
                                           generator(seed, f"{stream}:{k}:{n}")))
                    for i, n in enumerate(names)]
        keep = torch.cat([sel.keep for _, sel in sels]) if len(sels) > 1 else sels[0][1].keep
        kept_at, gone_at = keep.nonzero().squeeze(1), (~keep).nonzero().squeeze(1)
        gone = torch.index_select(alive, 0, gone_at)
        if ranking:
            pruned_round[gone] = k
            ranked_by[gone] = torch.index_select(s, 0, gone_at).to(torch.float64)
            if k == rounds:
                ranked_by[torch.index_select(alive, 0, kept_at)] = torch.index_select(s, 0, kept_at).to(torch.float64)
        del flat, s, keep, gone_at  # (peak memory: free what is done with before compacting)
        if gone.numel():
            remove(gone)
        del gone
        survivors = torch.index_select(alive, 0, kept_at)
        del kept_at
        ranked = alive if k == rounds else None  # the last round's tie records need it
        alive = survivors
        del survivors
    kept_flat = torch.zeros(n_total, dtype=torch.bool, device=alive.device)
    kept_flat[alive] = True
    masks = {n: part.view(shapes[n]).clone() for n, part in zip(names, kept_flat.split(sizes))}
    # tie records of the last round, per tensor; a selection's indices point into the
    # survivors it ranked (``ranked``), offset by where its tensor's run starts
    n_tied, n_tied_kept, thresholds = [0] * len(names), [0] * len(names), [float("-inf")] * len(names)
    if scope == "layer":
        for i, (_, sel) in enumerate(sels):
            n_tied[i], n_tied_kept[i], thresholds[i] = sel.n_tied, sel.n_tied_kept, sel.threshold
    else:
        sel = sels[0][1]
        thresholds = [sel.threshold] * len(names)
        if sel.n_tied:
            n_tied = torch.bincount(_tensor_of(ranked[sel.tied], offsets[:-1]), minlength=len(names)).tolist()
            n_tied_kept = torch.bincount(_tensor_of(ranked[sel.tied_kept], offsets[:-1]),
                                         minlength=len(names)).tolist()
    rows = []
    for i, n in enumerate(names):
        m = masks[n]
        kept = int(torch.count_nonzero(m))
        rows.append({"name": n, "shape": "x".join(map(str, m.shape)), "numel": m.numel(), "kept": kept,
                     "density": kept / m.numel(), "collapsed": kept == 0, "threshold": thresholds[i],
                     "tied_at_threshold": n_tied[i], "tied_kept": n_tied_kept[i]})
    rank = None
    if ranking:
        rank = removal_ranking(dict(zip(names, (p.view(shapes[n]) for n, p in zip(names, pruned_round.split(sizes))))),
                               dict(zip(names, (p.view(shapes[n]) for n, p in zip(names, ranked_by.split(sizes))))))
    return masks, rows, rank


def target_kept(rows: list[dict], ratio, scope: str) -> int:
    """The kept count a mask at ``ratio`` must have: round(n / r) over all prunable weights
    (global, and IMP's layer_output_half, whose layer rates meet that total exactly) or
    summed per tensor (layer)."""
    if scope == "layer":
        return sum(kept_count(r["numel"], ratio) for r in rows)
    return kept_count(sum(r["numel"] for r in rows), ratio)
