"""Sanity checks: variants of a method's mask that keep some of it and destroy the rest.

If a variant trains as well as the method, the method's mask carried no information
beyond what the variant kept (Frankle, Dziugaite, Roy & Carbin, "Pruning Neural
Networks at Initialization: Why are We Missing the Mark?", ICLR 2021; Su et al.,
NeurIPS 2020).  Each takes the method's mask (and ranking, and the weights training
starts from) and returns a transformed one, drawing from its own seeded stream
``variant:<name>:<tensor>`` so that the record ``{variant, seed}`` reproduces it:

* ``shuffle_layer``: each tensor's mask permuted uniformly at random; every tensor keeps
  its density (its kept count), nothing else.
* ``reinit``: the mask kept; the starting weights drawn afresh from the init scheme with
  the stream ``variant:reinit`` instead of ``init``.
* ``shuffle_weights``: the mask kept; the surviving starting weights permuted within
  each tensor (the multiset of surviving values per tensor is unchanged).
* ``invert``: the lowest-ranked weights kept instead of the highest, at the same
  density and with the method's scope: the top-k selection of the negated scores,
  ties drawn with the seed like the method's own selection (IMP's ``layer_output_half``:
  as many per tensor as the method's mask keeps).  Multi-round methods (IMP,
  SynFlow) rank by ``masking.removal_ranking``: weights pruned earlier rank lower.

Where an IMP method keeps trained weights instead of rewinding (``lrr``,
``imp_finetune``), the mask-level variants start from the dense trained weights of
round 0, not from the previous round's, which are zero wherever an earlier round
pruned (the workflow's ``train_inputs`` picks the file).
"""

from __future__ import annotations

from typing import Callable

import torch

from prunelib.catalogue import registry
from prunelib.methods.masking import select_masks, select_per_tensor
from prunelib.foundations.seeding import generator
from prunelib.config.settings import LAYER_OUTPUT_HALF


def _check(variant: str) -> None:
    registry.get("variant", variant)


def needs_ranking(variant: dict | str | None) -> bool:
    """Whether a variant (its name, or the stage's ``{variant, seed}`` record) reads the
    method's ranking (its registry entry's ``reads_ranking``: ``invert``), so that
    multi-round methods build the ranking only then."""
    name = variant.get("variant") if isinstance(variant, dict) else variant
    return bool(name) and registry.get("variant", name).reads_ranking


def shuffle_layer(masks: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    out = {}
    for name, m in masks.items():
        perm = torch.randperm(m.numel(), generator=generator(seed, f"variant:shuffle_layer:{name}"))
        out[name] = m.flatten()[perm].view_as(m).clone()
    return out


def invert(scores: dict[str, torch.Tensor], ratio: float, scope: str, seed: int, method: str = "?",
           counts: dict[str, int] | None = None):
    """Masks and audit rows keeping the lowest-scoring weights (``scope`` as the method;
    IMP's ``layer_output_half`` and a density allocation (``erk``, ...), whose per-tensor
    counts are fixed apart from the scores, need ``counts``: the method's kept count per
    tensor)."""
    negated = {n: -s.to(torch.float64) for n, s in scores.items()}
    if scope == LAYER_OUTPUT_HALF or scope not in ("global", "layer", "all"):
        if counts is None:
            raise ValueError(f"variant invert of {method} (scope {scope}) needs the method's kept count per tensor")
        return select_per_tensor(negated, counts, seed, method=f"{method} (inverted)")
    return select_masks(negated, ratio, scope, seed, method=f"{method} (inverted)")


def shuffle_weights(state: dict[str, torch.Tensor], masks: dict[str, torch.Tensor], seed: int) -> None:
    """Permute, in place, each masked tensor's surviving values among its surviving positions."""
    for name, m in masks.items():
        w = state[name]
        kept = m.to(torch.bool).flatten().nonzero().flatten()
        perm = torch.randperm(kept.numel(), generator=generator(seed, f"variant:shuffle_weights:{name}"))
        flat = w.view(-1)
        flat[kept] = flat[kept][perm].clone()


def transform_mask(variant: str, masks: dict, seed: int, scores: dict | None = None, ratio: float = 1.0,
                   scope: str = "global", method: str = "?") -> tuple[dict, list | None, dict]:
    """(masks, audit rows or None when unchanged, record) for a mask-level variant; the
    weight-level variants return the masks unchanged."""
    _check(variant)
    record = {"variant": variant, "seed": int(seed)}
    if variant == "shuffle_layer":
        return shuffle_layer(masks, seed), None, {**record, "stream": "variant:shuffle_layer:<tensor>"}
    if variant == "invert":
        if scores is None:
            raise ValueError(f"variant invert of {method} needs the method's scores")
        new, rows = invert(scores, ratio, scope, seed, method, {n: int(m.sum()) for n, m in masks.items()})
        return new, rows, {**record, "scope": scope, "stream": "tie-break (negated scores)"}
    return masks, None, record


def transform_weights(variant: str, state: dict, masks: dict, seed: int,
                      fresh_state: Callable[[], dict]) -> dict:
    """Apply a weight-level variant to ``state`` (in place) and return its record.
    ``fresh_state()`` builds newly initialised weights (for ``reinit``)."""
    _check(variant)
    record = {"variant": variant, "seed": int(seed)}
    if variant == "reinit":
        fresh = fresh_state()
        for k in state:
            state[k].copy_(fresh[k])
        return {**record, "stream": "variant:reinit"}
    if variant == "shuffle_weights":
        shuffle_weights(state, masks, seed)
        return {**record, "stream": "variant:shuffle_weights:<tensor>"}
    return record
