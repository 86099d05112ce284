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
              (layer), or per tensor the counts of the layer rates below
              (layer_output_half), ties drawn with the seed   (prunelib/methods/masking.py)
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
  schedule.  The paper prunes layer-wise with the output layer at half the rate
  (``iterative.criterion: layer_output_half``, below).  The criterion is a setting of
  every iterative method, not of ``lth``, and its default stays ``global`` (the issue
  that introduced IMP asked for global ranking, and changing it would rerun every
  existing chain); the ``lth_mnist`` preset, named after the paper, sets
  ``layer_output_half``.
* ``lth_rewind`` (Frankle, Dziugaite, Roy & Carbin, ICML 2020): rewind to an early
  step k (``rewind_fraction`` of T, default 5%) and train k..T (R = T - k).
* ``lrr`` (Renda, Frankle & Carbin, ICLR 2020): keep the trained weights and restart
  the learning-rate schedule (their "t = T" setting).
* ``gimp``: rewind the weights to a late step (``gimp_fraction`` of T, default 75%)
  and restart the full schedule (R = T).

Every round also records, per weight, the round in which it was pruned and the
magnitude it was ranked by, so the whole chain is one ranking
(``masking.removal_ranking``): the highest-ranked round(N d_j) weights are exactly round
j's mask (per tensor: its kept count).  The ``invert`` sanity check keeps the
lowest-ranked ones instead, as many per tensor as the mask with ``layer`` and
``layer_output_half``.

Layer rates (``criterion: layer_output_half``).  Frankle & Carbin (ICLR 2019) prune each
layer by magnitude at its own fixed rate per round: LeNet-300-100's fully-connected
layers at 20% and its output layer at 10%; the Conv-2/4/6 networks' convolutions at
10-15% and their fully-connected layers at 20%, the output at 10%.  Our generalisation:
one rate p for every prunable tensor except the output layer (``output_layer``: the last
prunable ``nn.Linear`` in the network's parameter order, the classifier), which removes
p / 2 of its remaining weights.  p is not a setting: the grid's density schedule fixes
each round's total, round(N d_j) (``grid.imp_densities``), and p is what meets it.  With
a_l the weights tensor l still has, A their sum, A_h the sum over the non-output
tensors and A_o the output layer's,

    p = (A - round(N d_j)) / (A_h + A_o / 2)          (exact, in rationals)
    ideal_l = a_l (1 - p), or a_o (1 - p / 2) for the output layer

and the ideal counts sum to round(N d_j) exactly.  The kept counts are their floors plus
one for the tensors with the largest fractional parts (ties: the larger tensor, then the
network's order) until the total is round(N d_j): so the total is exact, each tensor
keeps within one weight of its ideal count, and every tensor that keeps one weight more
or less than round(ideal) is recorded (``rounding_adjustment`` in the round's rows,
``layer_rates`` in its mask meta, with p, p / 2 and each tensor's realised rate).  As the
output layer keeps more than the average, p is a little above the round's overall
removal fraction 1 - d_j / d_{j-1} (about 1 - K; the landing rounds less), and it grows
as the output layer's share of the survivors grows: LeNet-300-100 at K = 0.8 starts at
p = 0.2004, output 0.1002.  A round whose total could only be met by emptying a tensor
raises an error instead of collapsing it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable

import torch

from prunelib.config.settings import IMP_CRITERIA, LAYER_OUTPUT_HALF, TrainSettings
from prunelib.methods.masking import kept_count, select_masks, select_per_tensor
from prunelib.train.loop import lr_at_step

#: ``iterative.criterion`` values, defined once (torch-free) in ``settings.IMP_CRITERIA``,
#: which also fills the config schema's enum; ``LAYER_OUTPUT_HALF`` is the layer-rate one.
CRITERIA = IMP_CRITERIA


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


def resolve_plan(spec, steps_per_epoch: int, epochs: int, steps: int | None = None) -> Plan:
    """An ``ImpSpec`` (prunelib/config/contracts.py) resolved: T (null = ``train.steps``, else ``epochs`` epochs), the rewind step (a
    fraction of T rounded half up), R (``"train_steps"`` = T, ``"after_rewind"`` = T - k)."""
    t = int(spec.train_steps or steps or epochs * steps_per_epoch)  # (steps: train.steps)
    rewind = spec.rewind_weights_to
    if isinstance(rewind, dict):
        rewind = int(Fraction(str(rewind["fraction"])) * t + Fraction(1, 2))
    if rewind is not None and not 0 <= rewind <= t:
        raise ValueError(f"iterative: rewind_weights_to = {rewind} is outside the dense training's 0..{t} steps")
    retrain = spec.retrain_steps
    if retrain == "train_steps":
        retrain = t
    elif retrain == "after_rewind":
        retrain = t - (rewind or 0)
    retrain = int(retrain)
    if spec.rewind_lr and retrain > t:
        raise ValueError(f"iterative: retrain_steps = {retrain} with rewind_lr needs at most train_steps = {t} "
                         "(the round replays the last retrain_steps of the schedule)")
    if retrain < 1:
        raise ValueError(f"iterative: retrain_steps = {retrain}; allowed: >= 1 (rewinding to the last step "
                         "leaves nothing to retrain)")
    if spec.criterion not in CRITERIA:
        raise ValueError(f"iterative: criterion = {spec.criterion!r}; allowed: {', '.join(CRITERIA)}")
    return Plan(t, float(spec.round_factor), spec.criterion, rewind, bool(spec.rewind_lr), retrain)


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


def output_layer(model: torch.nn.Module, prunable) -> tuple[str, ...]:
    """The output layer's prunable tensors, for ``layer_output_half``: the weight of the
    last ``nn.Linear`` among the prunable tensors in the network's parameter order (the
    classifier of every built-in network), and its bias where biases are prunable too."""
    prunable = set(prunable)
    linear = {f"{name}.weight" if name else "weight": f"{name}.bias" if name else "bias"
              for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}
    weights = [n for n, _ in model.named_parameters() if n in prunable and n in linear]
    if not weights:
        raise ValueError(f"iterative: criterion = {LAYER_OUTPUT_HALF!r} needs a prunable Linear output layer and "
                         f"{type(model).__name__} has none; allowed: "
                         + ", ".join(c for c in CRITERIA if c != LAYER_OUTPUT_HALF))
    last = weights[-1]
    return (last,) + ((linear[last],) if linear[last] in prunable else ())


def _round_half_up(x: Fraction) -> int:
    return math.floor(x + Fraction(1, 2))


@dataclass(frozen=True)
class LayerRates:
    """One round's per-tensor counts under ``layer_output_half`` (module docstring)."""

    hidden_rate: Fraction          # p: the fraction of its remaining weights each non-output tensor removes
    output: tuple[str, ...]        # the output layer's tensors (they remove p / 2)
    target: int                    # round(N d_j), the round's total kept count
    remaining: dict[str, int]      # a_l: weights each tensor had before the round
    ideal: dict[str, Fraction]     # a_l (1 - its rate); they sum to ``target`` exactly
    kept: dict[str, int]           # floor(ideal_l) or that + 1; they sum to ``target`` exactly

    @property
    def output_rate(self) -> Fraction:
        return self.hidden_rate / 2

    def rate(self, name: str) -> Fraction:
        return self.output_rate if name in self.output else self.hidden_rate

    def row(self, name: str) -> dict:
        """What a round's audit row of tensor ``name`` records besides its counts."""
        a, k = self.remaining[name], self.kept[name]
        return {"output_layer": name in self.output, "remaining": a, "nominal_rate": float(self.rate(name)),
                "realised_rate": 1 - k / a if a else 0.0, "ideal_kept": float(self.ideal[name]),
                "rounding_adjustment": k - _round_half_up(self.ideal[name])}


def layer_output_half_counts(remaining: dict[str, int], output, target: int, round_: int = 0) -> LayerRates:
    """The kept count of every tensor in a ``layer_output_half`` round keeping exactly
    ``target`` weights in all, from the counts each tensor still has (``remaining``, in
    the network's order).  Pure arithmetic on counts, exact in rationals."""
    output = tuple(output)
    total = sum(remaining.values())
    if not 0 <= target <= total:
        raise ValueError(f"iterative: round {round_} must keep {target} weights but only {total} remain")
    hidden = sum(a for n, a in remaining.items() if n not in output)
    weight = hidden + Fraction(total - hidden, 2)
    p = Fraction(total - target) / weight if weight else Fraction(0)
    ideal = {n: a * (1 - (p / 2 if n in output else p)) for n, a in remaining.items()}
    kept = {n: math.floor(x) for n, x in ideal.items()}
    order = list(remaining)
    short = target - sum(kept.values())  # < the number of tensors with a fractional part
    by_remainder = sorted(order, key=lambda n: (-(ideal[n] - kept[n]), -remaining[n], order.index(n)))
    for n in by_remainder[:short]:
        kept[n] += 1
    emptied = [n for n in order if remaining[n] and not kept[n]]
    if p > 1 or emptied:
        name = emptied[0] if emptied else next(n for n in order if n not in output and remaining[n])
        raise ValueError(
            f"iterative: criterion = {LAYER_OUTPUT_HALF!r} cannot keep exactly {target} of the {total} remaining "
            f"weights in round {round_} without emptying {name} ({remaining[name]} weights left; non-output rate "
            f"{float(p):.4f}, output rate {float(p / 2):.4f}); allowed: a smaller largest ratio in grid.ratios, "
            "or criterion global or layer")
    assert sum(kept.values()) == target and all(0 <= kept[n] <= remaining[n] for n in order)
    return LayerRates(p, output, target, dict(remaining), ideal, kept)


def prune_round(weights: dict[str, torch.Tensor], prev_masks: dict[str, torch.Tensor], density: Fraction,
                criterion: str, seed: int, round_: int, method: str = "imp", output=()):
    """Round ``round_``'s magnitude pruning among the survivors of ``prev_masks``.

    Returns (masks, audit rows, the magnitudes ranked).  Pruned weights score -1, below
    any survivor (|theta| >= 0), so they stay pruned; the kept count is exact.  With
    ``layer_output_half``, ``output`` names the output layer's tensors (``output_layer``)
    and each row also records its tensor's rates (``LayerRates.row``).
    """
    magnitude = {n: weights[n].detach().abs().to(torch.float64) for n in prev_masks}
    scores = {n: torch.where(prev_masks[n], magnitude[n], torch.full_like(magnitude[n], -1.0))
              for n in prev_masks}
    label = f"{method} round {round_}"
    if criterion == LAYER_OUTPUT_HALF:
        if not output:
            raise ValueError(f"{label}: criterion {LAYER_OUTPUT_HALF!r} needs the output layer's tensors")
        n_total = sum(m.numel() for m in prev_masks.values())
        rates = layer_output_half_counts({n: int(prev_masks[n].sum()) for n in prev_masks}, output,
                                         kept_count(n_total, 1 / density), round_)
        masks, rows = select_per_tensor(scores, rates.kept, seed, method=label)
        for r in rows:
            r.update(rates.row(r["name"]))
    else:
        masks, rows = select_masks(scores, 1 / density, criterion, seed, method=label)
    for r in rows:
        r["round"] = round_
    return masks, rows, magnitude


def prune_round_updating(model: torch.nn.Module, prunable: list[str], prev_masks: dict[str, torch.Tensor],
                         density: Fraction, pruner: dict, batches, seed: int, round_: int, method: str = "imp"):
    """Round ``round_``'s pruning by a method that updates the weights it keeps (an IMP
    chain whose ``pruner`` is e.g. ``woodfisher``; prunelib/methods/scorers/obs.py): among
    the survivors of ``prev_masks`` it keeps exactly round(N d_j) (global), the weights
    pruned earlier staying pruned (OBS constrains them first, which moves nothing), and
    moves ``model``'s kept weights by its update in place.  Returns (masks, audit rows, the
    ranking (higher = kept longer; what ``update_ranking`` records), the update record)."""
    from prunelib.catalogue import registry

    entry = registry.method(pruner["method"])
    if not entry.pruning.updates_weights or entry.scope != "global":
        raise ValueError(f"{method}: pruner {pruner['method']} must be a global method that updates the weights "
                         "it keeps (obs, woodfisher)")
    scorer = entry.make_scorer(pruner["knobs"])
    named = dict(model.named_parameters())
    params = {n: named[n] for n in prunable}
    n_total = sum(p.numel() for p in params.values())
    masks, rows, ranking, record = scorer.prune_update(model, params, batches, 1 / density, "global", seed,
                                                       method=f"{method} round {round_}", ranking=True,
                                                       alive=prev_masks, keep=kept_count(n_total, 1 / density))
    for r in rows:
        r["round"] = round_
    return masks, rows, {n: v.to(torch.float64) for n, v in ranking.items()}, record


def layer_rates_record(rows: list[dict]) -> dict | None:
    """The ``layer_rates`` record of a round's audit rows (None unless the round used
    ``layer_output_half``): the rates, each tensor's realised rate, and every tensor whose
    count is one more or less than round(ideal) to make the total exact."""
    if not rows or "nominal_rate" not in rows[0]:
        return None
    hidden = [r for r in rows if not r["output_layer"]]
    out = [r for r in rows if r["output_layer"]]
    return {"criterion": LAYER_OUTPUT_HALF, "output_layer": [r["name"] for r in out],
            "hidden_rate": hidden[0]["nominal_rate"] if hidden else 2 * out[0]["nominal_rate"],
            "output_rate": out[0]["nominal_rate"],
            "n_kept": sum(r["kept"] for r in rows),
            "realised_rates": {r["name"]: r["realised_rate"] for r in rows},
            "rounding_adjustments": {r["name"]: r["rounding_adjustment"] for r in rows if r["rounding_adjustment"]},
            "max_count_deviation": max(abs(r["kept"] - r["ideal_kept"]) for r in rows)}


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
