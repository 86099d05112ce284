"""The scorer contract, checked for every method, built-in or plugin, before anything is
written (the score stage checks ``score()``, the mask stage a re-scoring method's
``prune()``; prunelib/methods/scorers/base.py states the contract).

A user's mistake must never become a plausible number.  Each check below stops the job
with one line naming the method (and its plugin file), the tensor, what was expected and
what came:

* ``score()`` returns exactly the prunable tensors: a missing name would leave that
  tensor dense and drop it from the prunable count, so the requested ratio would be
  reported as met while the real one is far from it;
* each score has its parameter's shape, a floating dtype, and is finite;
* not every score of the network is equal: then every weight ties and the mask is a
  random draw under the method's name (a method random by design says so in its
  registry entry, ``ties_by_design``);
* ``needs_data`` matches what ``score()`` does with the batches: a scorer that reads the
  (then empty) batches without asking for them, or asks and never reads them;
* ``prune()`` returns boolean masks of the parameters' shapes keeping exactly the target
  count.
"""

from __future__ import annotations

from typing import Iterable

import torch

from prunelib.foundations.errors import PrunelibError


class ScorerContractError(PrunelibError, ValueError):
    """A method that broke the scorer contract; phrased as one line."""


def _who(entry) -> str:
    where = "" if entry.origin.builtin else f" (plugin {entry.origin.name})"
    return f"method {entry.name}{where}"


def _shape(t) -> str:
    return "x".join(map(str, t.shape)) or "scalar"


class Batches:
    """The scoring batches handed to ``score()``, remembering whether it read them."""

    def __init__(self, batches: Iterable):
        self._batches = list(batches)
        self.read = False

    def __iter__(self):
        self.read = True
        return iter(self._batches)

    def __len__(self):
        self.read = True
        return len(self._batches)

    def __getitem__(self, i):
        self.read = True
        return self._batches[i]

    def __bool__(self):
        self.read = True
        return bool(self._batches)


def check_data_use(entry, needs_data: bool, batches: Batches) -> None:
    """``needs_data`` against what ``score()`` did with the batches."""
    if needs_data and not batches.read:
        raise ScorerContractError(f"{_who(entry)}: needs_data = True but score() never read its batches; "
                                  "read them, or set needs_data = False")
    if not needs_data and batches.read:
        raise ScorerContractError(f"{_who(entry)}: score() read its batches but needs_data = False, so it got none "
                                  "(its scores saw no data); set needs_data = True")


def check_scores(entry, scores, params: dict) -> None:
    """``scores`` (what ``score()`` returned) against the prunable ``params``."""
    if not isinstance(scores, dict):
        raise ScorerContractError(f"{_who(entry)}: score() returned a {type(scores).__name__}; expected a dict "
                                  f"{{name: tensor}} over the prunable tensors {', '.join(params)}")
    missing = [n for n in params if n not in scores]
    extra = [str(n) for n in scores if n not in params]
    if missing or extra:
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + \
                ([f"not prunable {', '.join(extra)}"] if extra else [])
        raise ScorerContractError(f"{_who(entry)}: score() must return one score per prunable tensor, exactly "
                                  f"{', '.join(params)}; {'; '.join(parts)}")
    for name, p in params.items():
        s = scores[name]
        if not isinstance(s, torch.Tensor):
            raise ScorerContractError(f"{_who(entry)}: the score of {name} is a {type(s).__name__}; expected a "
                                      f"tensor of shape {_shape(p)}")
        if s.shape != p.shape:
            raise ScorerContractError(f"{_who(entry)}: the score of {name} has shape {_shape(s)} ({s.numel()} "
                                      f"values); expected {_shape(p)} ({p.numel()}), its parameter's shape")
        if not s.dtype.is_floating_point:
            raise ScorerContractError(f"{_who(entry)}: the score of {name} has dtype {s.dtype}; expected a "
                                      "floating dtype")
        bad = int((~torch.isfinite(s)).sum())
        if bad:
            raise ScorerContractError(f"{_who(entry)}: the score of {name} has {bad} NaN or infinite values out "
                                      f"of {s.numel()}; expected finite scores")
    if not entry.ties_by_design:
        check_not_all_equal(entry, scores)


def check_not_all_equal(entry, scores: dict) -> None:
    """Refuse a network whose scores are all one value: its mask would be a seeded draw."""
    first = next(iter(scores.values())).flatten()[:1]
    if first.numel() == 0:
        return
    value = first.to(torch.float64)
    if all(bool(torch.all(s.to(torch.float64) == value)) for s in scores.values()):
        n = sum(s.numel() for s in scores.values())
        raise ScorerContractError(
            f"{_who(entry)}: every one of its {n:,} scores is {float(value):g}, so its mask would be a random draw "
            "under its name; if score() reads the batches, it needs needs_data = True; if the method is random "
            "by design, register it with ties_by_design=True")


def check_pruned(entry, masks, rows, params: dict, target: int, scope: str, counts: dict | None = None) -> None:
    """What a re-scoring method's ``prune()`` returned: boolean masks of the parameters'
    shapes keeping exactly ``target`` weights (``counts`` per tensor for layer scope)."""
    if not isinstance(masks, dict) or set(masks) != set(params):
        got = sorted(map(str, masks)) if isinstance(masks, dict) else type(masks).__name__
        raise ScorerContractError(f"{_who(entry)}: prune() must return masks for exactly {', '.join(params)}; "
                                  f"got {got}")
    for name, p in params.items():
        m = masks[name]
        if not isinstance(m, torch.Tensor) or m.dtype != torch.bool or m.shape != p.shape:
            what = (f"{m.dtype} {_shape(m)}" if isinstance(m, torch.Tensor) else type(m).__name__)
            raise ScorerContractError(f"{_who(entry)}: prune()'s mask of {name} is {what}; expected torch.bool "
                                      f"{_shape(p)}")
        if counts is not None and int(m.sum()) != counts[name]:
            raise ScorerContractError(f"{_who(entry)}: prune()'s mask of {name} keeps {int(m.sum())} weights; "
                                      f"expected exactly {counts[name]} ({scope} scope)")
    kept = sum(int(m.sum()) for m in masks.values())
    if kept != target:
        raise ScorerContractError(f"{_who(entry)}: prune() keeps {kept:,} weights; expected exactly {target:,}, "
                                  f"round(n / r) over {scope} scope")
    if not isinstance(rows, list) or len(rows) != len(params):
        raise ScorerContractError(f"{_who(entry)}: prune() must return one audit row per tensor "
                                  "(masking.select_masks's rows); got "
                                  f"{len(rows) if isinstance(rows, list) else type(rows).__name__}")
