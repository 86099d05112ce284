"""The expanded grid: every cell (dataset, arch, seed, method, ratio, variant) and every
iterative-pruning chain a config asks for, and the chains' round densities.  No torch."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from prunelib.catalogue import registry
from prunelib.foundations.paths import variant_suffix
from prunelib.config.settings import Settings, format_ratio

#: Pseudo-method for the dense control (r = 1, no pruning); every table has it.
DENSE = "dense"


def imp_densities(ratios, round_factor: float) -> list[Fraction]:
    """Kept fraction of the prunable weights after each round 1..n of an IMP chain.

    Each round keeps ``round_factor`` K of the remaining weights (d_j = K d_{j-1},
    exactly, as a rational), except that the chain lands exactly on every requested
    ratio: the round that would pass density 1/r keeps 1/r instead (its factor adjusted,
    between K and 1), and the chain goes on from 1/r.  So one chain to the largest r
    serves every smaller r of the grid without retraining; with K = 0.8 and no ratio on
    the way, d_j = 0.8^j.  A landing round can prune little (0.4096 -> 0.4 for r = 2.5);
    it is kept rather than merged so that every round keeps at least K.
    """
    k = Fraction(str(round_factor))
    out, d = [], Fraction(1)
    for r in sorted({float(r) for r in ratios if float(r) > 1.0}):
        target = 1 / Fraction(r)
        while d * k > target:
            d *= k
            out.append(d)
        d = target
        out.append(d)
    return out


def imp_round_of(ratios, round_factor: float, ratio: float) -> int:
    """The round (1-based) of the chain whose mask has density exactly 1/``ratio``."""
    return imp_densities(ratios, round_factor).index(1 / Fraction(float(ratio))) + 1


@dataclass(frozen=True)
class Cell:
    dataset: str
    arch: str
    seed: int
    method: str
    ratio: str  # formatted, as in paths
    variant: str = "none"

    def wildcards(self) -> dict:
        """The values of the cell path's wildcards (``variant`` as its folder suffix)."""
        return {**vars(self), "variant": variant_suffix(self.variant)}


def cells(s: Settings) -> list[Cell]:
    """Every (dataset, arch, seed, method, ratio, variant) of the grid; r = 1 maps to the
    dense control, which has no variants."""
    out = []
    pruned_ratios = [format_ratio(r) for r in s.grid.ratios if float(r) != 1.0]
    for arch, dataset in s.grid.arch_dataset_pairs():  # grid.pairs, else archs x datasets
        for seed in s.grid.seeds:
            out.append(Cell(dataset, arch, int(seed), DENSE, "1"))
            for method in s.grid.methods:
                for r in pruned_ratios:
                    for variant in s.grid.variants:
                        out.append(Cell(dataset, arch, int(seed), method, r, variant))
    return out


def imp_chains(s: Settings) -> list[tuple[str, str, int, str, int]]:
    """(dataset, arch, seed, method, rounds) of every IMP chain the grid needs."""
    n = len(imp_densities(s.grid.ratios, s.iterative.round_factor))
    if n == 0:  # no pruned ratio: no chain (a dense training nobody uses)
        return []
    return [(d, a, int(seed), m, n) for a, d in s.grid.arch_dataset_pairs() for seed in s.grid.seeds
            for m in s.grid.methods if registry.method(m).pruning.chain]
