"""OBS, WoodFisher and L-OBS as methods: scorers whose ``prune_update`` removes weights
and updates the ones they keep (``Pruning`` ``updating``, prunelib/catalogue/pruning.py;
the formulas: prunelib/methods/second_order.py).

The update protocol (beside ``Scorer.prune``, prunelib/methods/scorers/base.py)::

    masks, rows, ranking, record = scorer.prune_update(model, params, batches, ratio, scope, seed,
                                                       method=name, ranking=wanted)

``model`` the network on the job's device (its ``params`` updated in place: the kept
weights moved by the method's update, the removed ones exactly zero), ``batches`` the
scoring data (``score.per_method.<method>``: ``batch_size`` examples per gradient,
``num_batches`` gradients).  ``masks``/``rows``/``ranking`` as for ``prune``; ``record``:
what the mask meta keeps about the update (``update``: per tensor the norm of the change
to the kept weights, the norm of the removed weights, and the method's settings).

``score`` (the score stage: the dense network's one-shot saliencies, recorded for
audits as SynFlow's are) is ρ_q = w_q² / (2 [H⁻¹]_qq) with the method's H.
"""

from __future__ import annotations

import torch
from torch import nn

from prunelib.methods import masking
from prunelib.methods import second_order as so
from prunelib.methods.scorers.base import Scorer


def _update_record(before: dict, params: dict, masks: dict) -> dict:
    """Per tensor: ‖δw‖ over the kept weights (the update), ‖w‖ of the removed ones (the
    removal), ‖w‖ before."""
    out = {}
    for n, p in params.items():
        old, new, m = before[n].double(), p.detach().double().cpu(), masks[n].cpu()
        out[n] = {"update_norm": float((new - old)[m].norm()), "removed_norm": float(old[~m].norm()),
                  "weight_norm": float(old.norm())}
    return out


def _global_rows(names, shapes, alive, tie) -> list[dict]:
    """Audit rows of a global selection: the masks from ``alive`` and the last step's tie
    record (``second_order.obs_prune_blocks``) attributed to the tensors."""
    sizes = [int(torch.Size(shapes[n]).numel()) for n in names]
    offsets = torch.tensor([0] + sizes).cumsum(0)
    masks = {n: part.view(shapes[n]).clone() for n, part in zip(names, alive.split(sizes))}
    tied = {n: (0, 0, float("-inf")) for n in names}
    if tie is not None:
        idx, sel = tie
        thr = float(sel.threshold)
        counts = [0] * len(names)
        counts_kept = [0] * len(names)
        if sel.n_tied:
            where = torch.bucketize(idx[sel.tied], offsets[1:], right=True)
            where_kept = torch.bucketize(idx[sel.tied_kept], offsets[1:], right=True)
            counts = torch.bincount(where, minlength=len(names)).tolist()
            counts_kept = torch.bincount(where_kept, minlength=len(names)).tolist()
        tied = {n: (counts[i], counts_kept[i], thr) for i, n in enumerate(names)}
    return masks, masking._audit_rows(list(names), masks, tied)


class ObsScorer(Scorer):
    """Exact OBS (Hassibi & Stork 1993) with the inverse empirical Fisher built by
    Sherman–Morrison; ``group`` weights removed per step (1: the paper's one at a time),
    the update applied and the inverse downdated after each step.  Refused above
    ``max_weights`` prunable weights (the full inverse holds n² numbers): use
    ``woodfisher``."""

    needs_data = True
    needs_ratio = True
    updates_weights = True
    block_size: int | None = None
    joint = True
    label = "obs"

    def __init__(self, damping: float = 1e-4, group: int = 1, max_weights: int = 10000, **_):
        self.damping, self.group, self.max_weights = float(damping), int(group), int(max_weights)

    def describe(self) -> dict:
        return {"damping": self.damping, "group": self.group, "max_weights": self.max_weights}

    def _check_size(self, params) -> None:
        n = sum(p.numel() for p in params.values())
        if self.block_size is None and n > self.max_weights:
            raise so.SecondOrderError(
                f"obs: {n:,} prunable weights exceed score.per_method.obs.max_weights = {self.max_weights:,} "
                f"(its inverse Fisher holds n² = {n * n:,} numbers); use woodfisher (block-diagonal OBS) instead")

    def _inverses(self, model, params, batches):
        sizes = [p.numel() for p in params.values()]
        blocks = so.blocks_of(sizes, self.block_size)
        batches = list(batches)
        model.eval()  # (as the WoodFisher code: normalisation layers use their running statistics)
        grads = (g.cpu() for g in so.flat_gradients(model, params, batches))
        return blocks, so.fisher_inverse_blocks(grads, len(batches), blocks, self.damping)

    def score(self, model: nn.Module, params: dict, batches, seed: int) -> dict:
        self._check_size(params)
        blocks, hinvs = self._inverses(model, params, batches)
        w = torch.cat([p.detach().reshape(-1).double().cpu() for p in params.values()])
        diag = torch.cat([h.diagonal() for h in hinvs])
        sal = so.saliency(w, diag)
        out, start = {}, 0
        for n, p in params.items():
            out[n] = sal[start:start + p.numel()].view_as(p).to(torch.float32)
            start += p.numel()
        return out

    def prune_update(self, model: nn.Module, params: dict, batches, ratio: float, scope: str, seed: int,
                     method: str = "?", ranking: bool = False, alive: dict | None = None, keep: int | None = None):
        """See the module docstring; ``alive``: masks of weights already pruned (an IMP
        chain's earlier rounds), kept pruned; ``keep``: the kept count when the caller has
        it exactly (a chain's round(N d_j)), else round(n / ratio)."""
        self._check_size(params)
        names = list(params)
        shapes = {n: params[n].shape for n in names}
        before = {n: params[n].detach().cpu().clone() for n in names}
        blocks, hinvs = self._inverses(model, params, batches)
        w = torch.cat([before[n].reshape(-1).double() for n in names])
        keep = masking.kept_count(w.numel(), ratio) if keep is None else int(keep)
        start_alive = None if alive is None else torch.cat([alive[n].reshape(-1).cpu() for n in names])
        kept, tie, rank = so.obs_prune_blocks(w, hinvs, blocks, keep, self.group, seed, joint=self.joint,
                                              alive=start_alive, stream=f"{self.label}")
        masks, rows = _global_rows(names, shapes, kept, tie)
        start = 0
        with torch.no_grad():
            for n in names:
                k = params[n].numel()
                params[n].copy_(w[start:start + k].view(shapes[n]).to(params[n].dtype))
                start += k
        ranks = None
        if ranking:
            ranks, start = {}, 0
            for n in names:
                ranks[n] = rank[start:start + params[n].numel()].view(shapes[n])
                start += params[n].numel()
        record = {"update": {"norms": _update_record(before, params, masks), "settings": self.describe(),
                             "blocks": len(blocks)}}
        return masks, rows, ranks, record


class WoodFisherScorer(ObsScorer):
    """WoodFisher (Singh & Alistarh, NeurIPS 2020): OBS with the inverse empirical Fisher
    block-diagonal, blocks of ``block_size`` consecutive weights of one tensor.

    What the paper leaves open, settled by the authors' code (IST-DASLab/WoodFisher,
    ``policies/pruners.py``, ``WoodburryFisherPruner``):

    * the gradients are mean-loss gradients of mini-batches (``fisher_mini_bsz``
      examples, ``fisher_subsample_size`` of them): here ``batch_size`` and
      ``num_batches`` of ``score.per_method.woodfisher``;
    * F = λ I + (1/N) Σ g gᵀ with the recursion started at F_0⁻¹ = I / λ
      (``fisher_damp``), network in eval mode, weights only (no biases);
    * the statistic is w_q² / [F⁻¹]_qq (ours has the paper's 1/2: the same ranking), one
      threshold over all blocks (global);
    * one-shot pruning applies the *sum of the single-weight updates*
      Σ_q -(w_q / [F⁻¹]_qq) F⁻¹ e_q and then zeroes the pruned weights
      (``update: independent``, our default, with ``group: 0`` = all in one step).
      ``update: joint`` applies the exact multi-weight update of the paper's Eq. 12
      instead; with ``group: 1`` the two agree (and one block equals ``obs``).

    Where we differ: the code forms blocks along the flattened parameter vector; ours
    never straddle two tensors (a tensor's tail block is shorter)."""

    label = "woodfisher"

    def __init__(self, damping: float = 1e-5, block_size: int = 128, group: int = 0, update: str = "independent",
                 **_):
        super().__init__(damping=damping, group=group)
        self.block_size = int(block_size)
        self.update = update
        self.joint = update == "joint"

    def describe(self) -> dict:
        return {"damping": self.damping, "block_size": self.block_size, "group": self.group, "update": self.update}


class LobsScorer(Scorer):
    """L-OBS (Dong, Chen & Pan, NeurIPS 2017) in OBC's exact row-wise form (Frantar &
    Alistarh, NeurIPS 2022): per layer H = 2 X Xᵀ from its inputs over the scoring data,
    each output row pruned by OBS one weight at a time (prunelib/methods/second_order.py,
    ``lobs_layer``); every prunable tensor keeps round(n_l / r) (layer scope, as L-OBS
    prunes each layer to its own rate).  Layers are pruned one after another on the
    dense network's inputs (L-OBS computes every layer's Hessian on the unpruned
    network; OBC's sequential mode, inputs of the already pruned layers, is not used)."""

    needs_data = True
    needs_ratio = True
    updates_weights = True

    def __init__(self, damping: float = 0.01, **_):
        self.damping = float(damping)

    def describe(self) -> dict:
        return {"damping": self.damping}

    @staticmethod
    def _modules(model, params) -> dict:
        mods = dict(model.named_modules())
        out = {}
        for n in params:
            owner, _, leaf = n.rpartition(".")
            m = mods.get(owner)
            if leaf != "weight" or not isinstance(m, (nn.Linear, nn.Conv2d)):
                raise so.SecondOrderError(f"lobs: prunable tensor {n} is not the weight of a Linear or Conv2d "
                                          "layer (L-OBS takes each layer's Hessian from its inputs)")
            if isinstance(m, nn.Conv2d) and m.groups != 1:
                raise so.SecondOrderError(f"lobs: {owner} is a grouped convolution (groups = {m.groups}); "
                                          "allowed: groups = 1")
            out[n] = m
        return out

    def _hessians(self, model, params, batches) -> dict:
        mods = self._modules(model, params)
        model.eval()
        hs = so.layer_inputs(model, {n: m for n, m in mods.items()}, batches)
        return hs

    def score(self, model, params, batches, seed):
        hs = self._hessians(model, params, batches)
        out = {}
        for n, p in params.items():
            h = hs[n].clone()
            h += self.damping * float(h.diagonal().mean().clamp_min(1e-12)) * torch.eye(h.shape[0],
                                                                                        dtype=torch.float64)
            d = torch.linalg.inv(h).diagonal()
            w2 = p.detach().reshape(p.shape[0], -1).double().cpu()
            out[n] = (w2 * w2 / (2 * d)).view_as(p).float()
        return out

    def prune_update(self, model, params, batches, ratio, scope, seed, method="?", ranking=False, alive=None,
                     keep=None):
        if alive is not None:
            raise so.SecondOrderError("lobs: pruning a network that is already sparse is not supported; "
                                      "use woodfisher as an IMP chain's pruning step")
        hs = self._hessians(model, params, batches)
        before = {n: p.detach().cpu().clone() for n, p in params.items()}
        masks, tied, ranks = {}, {}, {}
        for n, p in params.items():
            keep = masking.kept_count(p.numel(), ratio)
            mask, new, sel, score = so.lobs_layer(before[n].double(), hs[n], keep, seed, f"lobs:{n}", self.damping)
            masks[n] = mask
            tied[n] = (sel.n_tied, sel.n_tied_kept, -float(sel.threshold))
            with torch.no_grad():
                p.copy_(new.to(p.dtype).to(p.device))
            if ranking:  # kept longer = removed later: its removal step's score
                ranks[n] = score
        rows = masking._audit_rows(list(params), masks, tied)
        record = {"update": {"norms": _update_record(before, params, masks), "settings": self.describe()}}
        return masks, rows, (ranks if ranking else None), record
