"""Generalised iterative magnitude pruning (IMP) and its named presets.

One family, five parameters (the registry's iterative entries name the presets, the
``iterative:`` settings hold the rest):

* ``train_steps`` T: optimizer steps of the first, dense training from theta_0.
* ``round_factor`` K: each round keeps a fraction K of the remaining weights
  (``grid.imp_densities``: density K^j after round j, landing exactly on every
  requested ratio, the landing round's factor adjusted).
* ``rewind_weights_to``: the step k whose weights theta_k the survivors are reset to
  after each pruning (0 = initialisation; ``None`` = keep the trained weights).
* ``rewind_lr``: whether each round's retraining restarts the learning-rate schedule.
* ``retrain_steps`` R: optimizer steps of each round's retraining.

Round j >= 1, given the previous round's trained weights theta^(j-1) and mask m^(j-1):

    score_i = |theta^(j-1)_i| where m^(j-1)_i, else -1     (pruned weights rank last)
    m^(j)   = the round(N * d_j) highest scores (global) or round(n_l * d_j) per tensor
              (layer), ties drawn with the seed               (prunelib/masking.py)
    start   = m^(j) * theta_k    (rewinding)   or   m^(j) * theta^(j-1)   (no rewinding)
    retrain R steps at schedule positions T-R .. T-1 (rewind_lr: lr(p) of the dense run)
            or T .. T+R-1 at the final learning rate lr(T-1) (no rewind_lr)

The data a step sees depends only on its schedule position (``training.run_steps``),
so a ticket rewound to k sees exactly the batches the dense run saw from k on.  A fresh
optimizer starts every round (OpenLTH does the same; momentum is not rewound).

The presets (what each paper did; our defaults in brackets):

* ``imp_finetune`` (Han et al., NeurIPS 2015): keep the trained weights, retrain at
  the final learning rate.  [R = T]
* ``lth`` (Frankle & Carbin, ICLR 2019): rewind to theta_0, retrain with the whole
  schedule.  The paper prunes LeNet layer-wise with the output layer at half the rate;
  following the issue we rank globally by default (``iterative.criterion: layer`` for
  per-tensor pruning at the same rate everywhere).
* ``lth_rewind`` (Frankle, Dziugaite, Roy & Carbin, ICML 2020): rewind to an early
  step k (``rewind_fraction`` of T, default 5%) and train k..T (R = T - k).
* ``lrr`` (Renda, Frankle & Carbin, ICLR 2020): keep the trained weights and restart
  the learning-rate schedule (their "t = T" setting).
* ``gimp``: rewind the weights to a late step (``gimp_fraction`` of T, default 75%)
  and restart the full schedule (R = T).

Every round also records, per weight, the round in which it was pruned and the
magnitude it was ranked by, so the whole chain is one ranking
(``masking.removal_ranking``): the highest-ranked round(N d_j) weights are exactly round
j's mask.  The ``invert``
sanity check keeps the lowest-ranked ones instead.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable

import torch

from prunelib.settings import TrainSettings
from prunelib.masking import select_masks
from prunelib.training import lr_at_step

CRITERIA = ("global", "layer")


@dataclass(frozen=True)
class Plan:
    """Generalised-IMP parameters resolved against T (all in optimizer steps)."""

    train_steps: int
    round_factor: float
    criterion: str
    rewind_step: int | None
    rewind_lr: bool
    retrain_steps: int

    def round_positions(self) -> range:
        """Schedule positions of every round's retraining."""
        if self.rewind_lr:
            return range(self.train_steps - self.retrain_steps, self.train_steps)
        return range(self.train_steps, self.train_steps + self.retrain_steps)


def resolve_plan(spec: dict, steps_per_epoch: int, epochs: int) -> Plan:
    """``stage_settings.imp_spec`` resolved: T (null = ``epochs`` epochs), the rewind step (a
    fraction of T rounded half up), R (``"train_steps"`` = T, ``"after_rewind"`` = T - k)."""
    t = int(spec["train_steps"] or epochs * steps_per_epoch)
    rewind = spec["rewind_weights_to"]
    if isinstance(rewind, dict):
        rewind = int(Fraction(str(rewind["fraction"])) * t + Fraction(1, 2))
    if rewind is not None and not 0 <= rewind <= t:
        raise ValueError(f"iterative: rewind_weights_to = {rewind} is outside the dense training's 0..{t} steps")
    retrain = spec["retrain_steps"]
    if retrain == "train_steps":
        retrain = t
    elif retrain == "after_rewind":
        retrain = t - (rewind or 0)
    retrain = int(retrain)
    if spec["rewind_lr"] and retrain > t:
        raise ValueError(f"iterative: retrain_steps = {retrain} with rewind_lr needs at most train_steps = {t} "
                         "(the round replays the last retrain_steps of the schedule)")
    if retrain < 1:
        raise ValueError(f"iterative: retrain_steps = {retrain}; allowed: >= 1 (rewinding to the last step "
                         "leaves nothing to retrain)")
    if spec["criterion"] not in CRITERIA:
        raise ValueError(f"iterative: criterion = {spec['criterion']!r}; allowed: {', '.join(CRITERIA)}")
    return Plan(t, float(spec["round_factor"]), spec["criterion"], rewind, bool(spec["rewind_lr"]), retrain)


def dense_lr(s: TrainSettings, plan: Plan, steps_per_epoch: int) -> Callable[[int], float]:
    """The dense run's learning rate at schedule position p: the train schedule, epoch by
    epoch, over T steps (a cosine schedule spans T / S epochs)."""
    sched = dataclasses.replace(s, epochs=plan.train_steps / steps_per_epoch)
    return lambda p: lr_at_step(p, steps_per_epoch, sched)


def round_lr(s: TrainSettings, plan: Plan, steps_per_epoch: int) -> Callable[[int], float]:
    """A retraining round's learning rate: the dense schedule replayed (``rewind_lr``), or
    its final value lr(T - 1) throughout (fine-tuning)."""
    base = dense_lr(s, plan, steps_per_epoch)
    if plan.rewind_lr:
        return base
    final = base(plan.train_steps - 1)
    return lambda p: final


def prune_round(weights: dict[str, torch.Tensor], prev_masks: dict[str, torch.Tensor], density: Fraction,
                criterion: str, seed: int, round_: int, method: str = "imp"):
    """Round ``round_``'s magnitude pruning among the survivors of ``prev_masks``.

    Returns (masks, audit rows, the magnitudes ranked).  Pruned weights score -1, below
    any survivor (|theta| >= 0), so they stay pruned; the kept count is exact.
    """
    magnitude = {n: weights[n].detach().abs().to(torch.float64) for n in prev_masks}
    scores = {n: torch.where(prev_masks[n], magnitude[n], torch.full_like(magnitude[n], -1.0))
              for n in prev_masks}
    masks, rows = select_masks(scores, 1 / density, criterion, seed, method=f"{method} round {round_}")
    for r in rows:
        r["round"] = round_
    return masks, rows, magnitude


def update_ranking(pruned_round: dict | None, ranked_by: dict | None, masks: dict, prev_masks: dict,
                   magnitude: dict, round_: int) -> tuple[dict, dict]:
    """Carry the chain's ranking one round on.

    ``pruned_round``: the round a weight was pruned in (survivors: ``round_ + 1``);
    ``ranked_by``: the magnitude it had when last ranked.  Lexicographic order on
    (pruned_round, ranked_by) is the chain's ranking (``masking.removal_ranking``).
    """
    new_round, new_by = {}, {}
    for n, m in masks.items():
        old_r = pruned_round[n] if pruned_round else torch.full_like(m, 1, dtype=torch.int32)
        old_b = ranked_by[n] if ranked_by else torch.zeros_like(magnitude[n], dtype=torch.float32)
        candidate = prev_masks[n]
        r = torch.where(candidate & ~m, torch.full_like(old_r, round_), old_r)
        r = torch.where(m, torch.full_like(old_r, round_ + 1), r)
        new_round[n] = r
        new_by[n] = torch.where(candidate, magnitude[n].to(torch.float32), old_b)
    return new_round, new_by
