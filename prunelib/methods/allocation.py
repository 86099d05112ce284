"""Density allocation: how many weights of each tensor a mask keeps, apart from which.

Any score combines with any allocation (``prune.allocation``): the allocation fixes the
kept count k_l of every prunable tensor l, the scores pick the k_l weights within it
(exact top-k, seeded ties: prunelib/methods/masking.py).  Every allocation here keeps
exactly K = round(N / r) weights in all, N the prunable count; counts are made whole by
the largest-remainder rule (ties to the earlier tensor), so the ratio is met exactly.

* ``global`` and ``layer`` are the methods' own scopes (``global_*`` / ``layer_*``):
  ``global`` lets the scores compete across tensors, ``layer`` keeps round(n_l / r) of
  each tensor.  They are listed here for the config, and are not count functions.
* ``uniform``: every tensor at one density, except the first prunable tensor, which
  stays dense, as RigL's uniform baseline (Evci et al., ICML 2020, Sec. 3, after Gale et
  al. 2019).  When K is smaller than the first tensor, no tensor stays dense.
* ``erk``: Erdős–Rényi-Kernel (Evci et al. 2020): density_l = eps * (sum of the
  dimensions of l) / (product of them), kernel dimensions included; ``er``: eps *
  (n_in + n_out) / (n_in * n_out) with n_out, n_in a tensor's first two dimensions
  (kernel dimensions ignored; a 1-D tensor uses its only dimension twice).  eps is
  chosen so that the total is K; a tensor whose density would exceed 1 is made dense
  and eps found again for the rest, one tensor at a time, the largest first, as RigL's
  ``get_sparsities_erdos_renyi`` does (google-research/rigl, ``sparse_utils.py``;
  there with no layer exempt by default, as here).

A researcher's own allocation is a function ``fn(shapes, total) -> {name: count}``
registered with ``prunelib.register_allocation``; its counts are checked (every tensor,
0 <= k_l <= n_l, sum exactly ``total``) before any mask is made.
"""

from __future__ import annotations

import math
from fractions import Fraction

from prunelib.catalogue import registry
from prunelib.foundations.errors import PrunelibError

#: Allocations that are a scope of the selection, not a count per tensor.
SCOPES = ("global", "layer")


class AllocationError(PrunelibError, ValueError):
    """An allocation whose counts break the contract; one line."""


def _numel(shape) -> int:
    return math.prod(int(d) for d in shape) if len(shape) else 1


def whole_counts(ideal: dict[str, Fraction], sizes: dict[str, int], total: int) -> dict[str, int]:
    """Integer counts from real ``ideal`` counts summing to ``total``: floors, then one more
    to the largest remainders (earlier tensor first on equal remainders), never above a
    tensor's size."""
    counts = {n: min(sizes[n], math.floor(v)) for n, v in ideal.items()}
    short = total - sum(counts.values())
    order = sorted(ideal, key=lambda n: (-(ideal[n] - math.floor(ideal[n])), list(ideal).index(n)))
    for n in order:
        if short <= 0:
            break
        if counts[n] < sizes[n]:
            counts[n] += 1
            short -= 1
    if short:  # (only when floors were capped: give the rest to any tensor with room, in order)
        for n in ideal:
            room = min(short, sizes[n] - counts[n])
            counts[n] += room
            short -= room
    return counts


def uniform(shapes: dict[str, tuple], total: int) -> dict[str, int]:
    sizes = {n: _numel(s) for n, s in shapes.items()}
    names = list(sizes)
    first = names[0]
    dense = [first] if len(names) > 1 and sizes[first] <= total else []
    rest = [n for n in names if n not in dense]
    budget = total - sum(sizes[n] for n in dense)
    pool = sum(sizes[n] for n in rest)
    ideal = {n: Fraction(budget * sizes[n], pool) for n in rest}
    return {**{n: sizes[n] for n in dense}, **whole_counts(ideal, sizes, budget)}


def _raw(shape, kernel: bool) -> Fraction:
    dims = [int(d) for d in shape] or [1]
    if kernel or len(dims) == 1:
        if len(dims) == 1:
            dims = dims * 2
        return Fraction(sum(dims), math.prod(dims))
    n_out, n_in = dims[0], dims[1]
    return Fraction(n_in + n_out, n_in * n_out)


def erdos_renyi(shapes: dict[str, tuple], total: int, kernel: bool) -> dict[str, int]:
    sizes = {n: _numel(s) for n, s in shapes.items()}
    raw = {n: _raw(s, kernel) for n, s in shapes.items()}
    dense: list[str] = []
    while True:
        rest = [n for n in sizes if n not in dense]
        budget = total - sum(sizes[n] for n in dense)
        if not rest or budget <= 0:
            break
        eps = Fraction(budget) / sum(raw[n] * sizes[n] for n in rest)
        top = max(rest, key=lambda n: (raw[n], -list(sizes).index(n)))
        if eps * raw[top] > 1:
            dense.append(top)  # RigL: the largest raw density first, then eps again
            continue
        ideal = {n: eps * raw[n] * sizes[n] for n in rest}
        return {**{n: sizes[n] for n in dense}, **whole_counts(ideal, sizes, budget)}
    return {n: sizes[n] if n in dense else 0 for n in sizes}


def erk(shapes: dict[str, tuple], total: int) -> dict[str, int]:
    return erdos_renyi(shapes, total, kernel=True)


def er(shapes: dict[str, tuple], total: int) -> dict[str, int]:
    return erdos_renyi(shapes, total, kernel=False)


def counts_for(name: str, shapes: dict[str, tuple], total: int) -> dict[str, int]:
    """The kept count of every tensor under allocation ``name`` (a registered one), checked."""
    entry = registry.get("allocation", name)
    counts = registry.resolve(entry.fn)(dict(shapes), int(total))
    who = f"allocation {name}" + ("" if entry.origin.builtin else f" (plugin {entry.origin.name})")
    if not isinstance(counts, dict) or set(counts) != set(shapes):
        got = sorted(map(str, counts)) if isinstance(counts, dict) else type(counts).__name__
        raise AllocationError(f"{who}: must return a count for exactly {', '.join(shapes)}; got {got}")
    for n, k in counts.items():
        if not isinstance(k, int) or isinstance(k, bool) or not 0 <= k <= _numel(shapes[n]):
            raise AllocationError(f"{who}: the count of {n} is {k!r}; expected an integer 0..{_numel(shapes[n])}")
    if sum(counts.values()) != total:
        raise AllocationError(f"{who}: its counts sum to {sum(counts.values()):,}; expected exactly {total:,} "
                              "(round(n / r) over all prunable weights)")
    return counts
