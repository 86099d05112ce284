"""Structured (filter and channel) pruning: which filters a network has, and which to remove.

A *group* is one layer's output units: a Conv's filters (output channels) or a Linear's
units.  Removing filter ``i`` of a group removes

* row ``i`` of the producing layer's weight (and its bias, and the channel of the
  BatchNorm right after it, where those are prunable),
* the input channel ``i`` that it fed in every consuming layer: columns ``i`` of the next
  Linear, input channel ``i`` of the next Conv, or the ``h*w`` columns that channel ``i``
  occupies after a flatten (LeNet-5's ``conv2 -> fc1``).

The compression ratio keeps counting prunable weights: the kept count of a structured mask
is the prunable weights left after both removals (``kept_weights``), so a filter mask at
``r`` is compared with an unstructured one at ``r`` on the same count.

**What "exact" means for filters.**  Filters are removed one at a time, in ascending order
of their score (the per-weight scores of the filter's weight row summed; ties in a seeded
random order), until the kept count is at most ``target = round(n / r)`` (global scope) or
the sum of the per-tensor ``round(n_t / r)`` (layer scope, as ``masking`` counts).  The
mask therefore keeps at most the target, and the difference ``target_kept - n_kept`` (>= 0,
at most one filter's weights and the input columns it fed) is recorded as
``filter_deviation``.  Two things stop the removal before the target: a group is never
emptied (its last filter stays, so no layer collapses), and a ResNet's residual channels are
never removed (below); then the mask keeps *more* than the target, the deviation is
negative and ``target_reached`` is False.  No deviation is hidden.

* global scope (``global_l1_filter``, ``snip_filter``, ...): the next filter removed is the
  lowest-scored one of the whole network (scores of different layers compared directly).
* layer scope (``layer_l1_filter``, Li et al.'s uniform per-layer rate): the next filter
  removed is the lowest-scored one of the group that keeps the largest fraction of its
  filters (ties: the earlier group), so every group keeps the same fraction, to one filter.

**ResNet shortcuts.**  A residual add needs the same channels on both of its inputs, in
every block of a stage.  We keep them: the channels of the residual stream (the stem
convolution, the second convolution of each block, the option-B 1x1 projections) are
never pruned; only the inner channels of each basic block (``conv1``'s filters, ``bn1``,
and ``conv2``'s input channels) are, as in Li et al. (ICLR 2017, Sec. 4.3, "we only prune
the first layer of each residual block").  So options A and B are handled alike, and the
shortcut path is unchanged.  The classifier's outputs (the classes) are never pruned.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import torch
from torch import nn

from prunelib.nets import models
from prunelib.foundations.errors import PrunelibError
from prunelib.methods.masking import kept_count
from prunelib.foundations.seeding import generator

SHORTCUT_POLICY = "residual channels kept; inner channels of each basic block pruned"


class StructureError(PrunelibError, ValueError):
    pass


@dataclass
class Group:
    """One layer's output units: ``producer`` (Conv/Linear module name) makes them,
    ``bn`` (or None) normalises them, ``consumers`` [(module, expand)] read them, each unit
    as ``expand`` consecutive input columns (a flatten of ``expand`` pixels; 1 otherwise)."""

    producer: str
    size: int
    bn: str | None = None
    consumers: list = field(default_factory=list)


def _chain(model: nn.Module, names: list[str], last_expand: dict | None = None) -> list[Group]:
    mods = dict(model.named_modules())
    groups = []
    for a, b in zip(names, names[1:]):
        m = mods[a]
        size = m.out_channels if isinstance(m, nn.modules.conv._ConvNd) else m.out_features
        groups.append(Group(a, size, None, [(b, (last_expand or {}).get(a, 1))]))
    return groups


def channel_groups(model: nn.Module) -> list[Group]:
    """The prunable filter groups of a built-in network (see the module docstring)."""
    if isinstance(model, models.LeNet300):
        return _chain(model, ["fc1", "fc2", "fc3"])
    if isinstance(model, models.MLP400x3):
        return _chain(model, ["fc1", "fc2", "fc3", "fc4"])
    if isinstance(model, models.DeepMLP):  # (mlp7_*: the layers are ``layers.0`` ... ``layers.6``)
        return _chain(model, [f"layers.{i}" for i in range(len(model.layers))])
    if isinstance(model, models.LeNet5):  # also LeNet5Caffe
        expand = model.fc1.in_features // model.conv2.out_channels
        return _chain(model, ["conv1", "conv2", "fc1", "fc2"], {"conv2": expand})
    if isinstance(model, models.VGG16):
        convs = [(f"features.{i}", m) for i, m in enumerate(model.features) if isinstance(m, nn.Conv2d)]
        groups = []
        for j, (name, conv) in enumerate(convs):
            idx = int(name.split(".")[1])
            bn = f"features.{idx + 1}" if isinstance(model.features[idx + 1], nn.BatchNorm2d) else None
            nxt = convs[j + 1][0] if j + 1 < len(convs) else "classifier"  # global average pool: expand 1
            groups.append(Group(name, conv.out_channels, bn, [(nxt, 1)]))
        return groups
    if isinstance(model, models.CifarResNet):
        groups = []
        for layer in ("layer1", "layer2", "layer3"):
            for i, block in enumerate(getattr(model, layer)):
                p = f"{layer}.{i}"
                groups.append(Group(f"{p}.conv1", block.conv1.out_channels, f"{p}.bn1", [(f"{p}.conv2", 1)]))
        return groups
    raise StructureError(f"no filter structure is known for {type(model).__name__}; structured methods "
                         "run on the built-in networks (prunelib/methods/structured.py)")


def columns(idx: torch.Tensor, expand: int) -> torch.Tensor:
    """Input columns of units ``idx`` in a consumer that reads each unit as ``expand`` columns."""
    return (idx[:, None] * expand + torch.arange(expand)[None, :]).flatten()


class _Counter:
    """Kept prunable weights as a function of the kept filters per group."""

    def __init__(self, model: nn.Module, groups: list[Group], prunable: list[str]):
        params = dict(model.named_parameters())
        self.prunable = list(prunable)
        self.numel = {n: params[n].numel() for n in prunable}
        # per prunable tensor: (group producing its dim 0, per-unit size of the rest) and
        # (group consumed along dim 1, expand) -- or None
        self.out_of, self.in_of = {}, {}
        for g_i, g in enumerate(groups):
            for pname in ("weight", "bias"):
                self.out_of[f"{g.producer}.{pname}"] = g_i
            if g.bn:
                for pname in ("weight", "bias"):
                    self.out_of[f"{g.bn}.{pname}"] = g_i
            for cons, expand in g.consumers:
                self.in_of[f"{cons}.weight"] = (g_i, expand)
        self.shape = {n: tuple(params[n].shape) for n in prunable}
        self.groups = groups

    def kept(self, kept: list[int]) -> dict[str, int]:
        out = {}
        for n in self.prunable:
            shape = self.shape[n]
            k = self.numel[n]
            if n in self.out_of:
                k = k // shape[0] * kept[self.out_of[n]]
            if n in self.in_of and len(shape) > 1:
                g_i, expand = self.in_of[n]
                k = k // shape[1] * kept[g_i] * expand
            out[n] = k
        return out


def masks_for(model: nn.Module, groups: list[Group], pruned: list[list[int]], prunable: list[str]) -> dict:
    """Boolean masks of the prunable parameters with the filters ``pruned[g]`` of each
    group removed, and the input columns they fed."""
    params = dict(model.named_parameters())
    masks = {n: torch.ones_like(params[n], dtype=torch.bool) for n in prunable}
    for g, idx in zip(groups, pruned):
        if not idx:
            continue
        idx_t = torch.tensor(sorted(idx), dtype=torch.long)
        for mod in (g.producer, g.bn):
            for pname in ("weight", "bias"):
                if mod and f"{mod}.{pname}" in masks:
                    masks[f"{mod}.{pname}"][idx_t] = False
        for cons, expand in g.consumers:
            if f"{cons}.weight" in masks:
                masks[f"{cons}.weight"][:, columns(idx_t, expand)] = False
    return masks


def filter_scores(scores: dict[str, torch.Tensor], groups: list[Group]) -> list[torch.Tensor]:
    """One score per filter: the scores of its weight row summed (float64)."""
    out = []
    for g in groups:
        s = scores.get(f"{g.producer}.weight")
        if s is None:
            raise StructureError(f"no scores for {g.producer}.weight (is it prunable?)")
        out.append(s.detach().to(torch.float64).reshape(s.shape[0], -1).sum(1))
    return out


def select_filters(model: nn.Module, scores: dict[str, torch.Tensor], prunable: list[str], ratio, scope: str,
                   seed: int) -> tuple[dict, list[dict], dict]:
    """Masks, audit rows (as ``masking.select_masks``) and the structured record
    (pruned filters per layer, target and kept counts, deviation) of a filter pruning."""
    if scope not in ("global", "layer"):
        raise ValueError(f"structured pruning has scope global or layer, not {scope!r}")
    groups = channel_groups(model)
    counter = _Counter(model, groups, prunable)
    fscores = filter_scores(scores, groups)
    if scope == "global":
        target = kept_count(sum(counter.numel.values()), ratio)
    else:
        target = sum(kept_count(counter.numel[n], ratio) for n in prunable)
    gen = generator(seed, "tie-break:filters")
    # ascending order within each group, ties in a seeded random order
    orders = []
    for fs in fscores:
        perm = torch.randperm(fs.numel(), generator=gen)
        orders.append(perm[torch.argsort(fs[perm], stable=True)].tolist())
    kept = [g.size for g in groups]
    pruned: list[list[int]] = [[] for _ in groups]
    n_kept = sum(counter.kept(kept).values())
    if scope == "global":
        flat = torch.cat(fscores)
        owner = torch.cat([torch.full((g.size,), i) for i, g in enumerate(groups)])
        unit = torch.cat([torch.arange(g.size) for g in groups])
        perm = torch.randperm(flat.numel(), generator=gen)
        queue = deque((int(owner[j]), int(unit[j])) for j in perm[torch.argsort(flat[perm], stable=True)].tolist())
    pos = [0] * len(groups)
    while n_kept > target:
        if scope == "global":
            while queue and kept[queue[0][0]] <= 1:
                queue.popleft()
            if not queue:
                break
            g_i, u = queue.popleft()
        else:
            cands = [i for i in range(len(groups)) if kept[i] > 1]
            if not cands:
                break
            g_i = max(cands, key=lambda i: (kept[i] / groups[i].size, -i))
            u = orders[g_i][pos[g_i]]
            pos[g_i] += 1
        pruned[g_i].append(u)
        kept[g_i] -= 1
        n_kept = sum(counter.kept(kept).values())
    masks = masks_for(model, groups, pruned, prunable)
    per_tensor = counter.kept(kept)
    rows = []
    for n in prunable:
        k = int(masks[n].sum())
        assert k == per_tensor[n], (n, k, per_tensor[n])
        rows.append({"name": n, "shape": "x".join(map(str, masks[n].shape)), "numel": masks[n].numel(),
                     "kept": k, "density": k / masks[n].numel(), "collapsed": k == 0,
                     "threshold": float("nan"), "tied_at_threshold": 0, "tied_kept": 0})
    record = {
        "granularity": "filter", "scope": scope, "shortcut_policy": SHORTCUT_POLICY,
        "filter_target_kept": int(target), "filter_n_kept": int(n_kept),
        "filter_deviation": int(target - n_kept), "target_reached": bool(n_kept <= target),
        "filters": [{"layer": g.producer, "filters": g.size, "kept": kept[i], "pruned": sorted(pruned[i]),
                     "score_sum_pruned": float(fscores[i][pruned[i]].sum()) if pruned[i] else 0.0}
                    for i, g in enumerate(groups)],
    }
    return masks, rows, record
