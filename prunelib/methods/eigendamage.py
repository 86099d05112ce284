"""EigenDamage: structured pruning in the Kronecker-factored eigenbasis (Wang, Zhang, Wang,
Luo & Grosse, ICML 2019, Sec. 4), and the network it builds.

Per layer, with K-FAC factors A = Q_A diag(d_A) Q_A^T and S = Q_S diag(d_S) Q_S^T
(prunelib/methods/kfac.py, EigenDamage's channel patches for convolutions), the weight is
rotated into the eigenbasis

    W* = Q_S^T W Q_A            (conv: per kernel position p, W*_p = Q_S^T W_p Q_A)

where the Fisher is diagonal, diag(d_S (x) d_A).  Removing row r (an output eigen-direction)
or column c (an input one) of W* then costs exactly

    dL_r = sum_{p,c} W*_{r,p,c}^2 d_S[r] d_A[c],     dL_c = sum_{p,r} W*_{r,p,c}^2 d_S[r] d_A[c]

(the paper's Eq. 13 without the common 1/2).  Rows and columns of all layers are removed in
one global ascending order of dL until the parameters the built network keeps are at most
``round(n / r)`` (n: the prunable weights); the network is then built for real: each pruned
layer becomes

    projection (1x1 conv / Linear, Q_A[:, C]^T; the homogeneous coordinate as its bias)
    -> core (the layer's kernel, stride and padding: W*[R, :, C]) -> back-projection (1x1 / Linear, Q_S[:, R])

whose parameters are in_dim*|C| + |R|*|C|*kh*kw + out*|R| weights (the projection's bias not
counted, like every bias in the prunable count).  ``rotated_masked`` is the same pruning in the
original architecture (W = Q_S[:, R] W*[R, :, C] Q_A[:, C]^T); ``tests/test_eigendamage.py``
checks in float64 that the built network computes it.

**Where we follow the authors' code** (alecwangcq/EigenDamage-Pytorch,
``pruner/kfac_eigen_pruner.py``, ``utils/prune_utils.py``): channel patches for A
(``use_patch: true`` in their configs), the bias as a homogeneous input coordinate of value
1/(kh*kw) for convolutions and 1 for Linear layers, eigenvalues <= 1e-10 set to zero,
unnormalised importances (``normalize: false``), one threshold over rows and columns of all
layers, the last layer (the classifier) left out, at most ``prune_ratio_limit`` (0.95) of a
layer's rows or columns removed, and a layer whose bottleneck would have more parameters
than it has kept as it was (``exact_ratio > 1``: not replaced, counted at its size).

**Where we differ**: (1) the authors remove a fraction of the rows and columns (a percentile of
all importances) and report the parameter count that results; we remove them one at a time
until the parameter count meets the target, as prunelib's filter methods do (the deviation is
recorded; ``target_reached`` is False when the limits stop the removal first).  (2) Ties are
broken by a seeded draw.  (3) A convolution with both a bias and zero padding is refused: the
authors' constant input channel is zero-padded by the core convolution, so their bottleneck
does not compute the original layer at the border (none of prunelib's networks has one).
(4) The rotations are fixed buffers of the built network by default (their ``fix_rotation``
option; their configs train them: ``fix_rotation: false``); ``trainable_rotations`` makes them
parameters.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from prunelib.foundations.seeding import generator
from prunelib.methods import kfac
from prunelib.methods.masking import kept_count

EIG_FLOOR = 1e-10
PRUNE_RATIO_LIMIT = 0.95


@dataclass
class Basis:
    """One layer in its eigenbasis: ``core`` [out, P, in(+1)] = W* (P = 1 for a Linear)."""

    layer: str
    q_a: torch.Tensor
    q_s: torch.Tensor
    d_a: torch.Tensor
    d_s: torch.Tensor
    core: torch.Tensor
    conv: bool
    bias: bool

    @property
    def n_rows(self) -> int:
        return self.core.shape[0]

    @property
    def n_cols(self) -> int:
        return self.core.shape[2]

    @property
    def patch(self) -> int:
        return self.core.shape[1]

    def importances(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(dL of each row, dL of each column) of the rotated weight (float64)."""
        imp = (self.core ** 2 * (self.d_s[:, None, None] * self.d_a[None, None, :])).sum(1)
        return imp.sum(1), imp.sum(0)


def patch_weight(mod: nn.Module) -> torch.Tensor:
    """The layer's weight as [out, P, in (+1 bias)]: per kernel position, the matrix over
    input channels (the authors' ``fetch_mat_weights(layer, use_patch=True)``)."""
    w = mod.weight.detach()
    if isinstance(mod, nn.Linear):
        w = w[:, None, :]
    else:
        w = w.permute(0, 2, 3, 1).reshape(w.shape[0], -1, w.shape[1])
    if mod.bias is not None:
        w = torch.cat([w, mod.bias.detach()[:, None, None].expand(-1, w.shape[1], 1)], 2)
    return w


def eigen_layers(model: nn.Module, prunable: list[str]) -> list[str]:
    """The layers EigenDamage rotates: every Conv2d/Linear with a prunable weight but the
    last one (the classifier, left out as in the authors' ``_prepare_model``)."""
    names = [n for n in kfac.layers_of(model) if f"{n}.weight" in prunable]
    mods = dict(model.named_modules())
    last = kfac.layers_of(model)[-1]
    out = []
    for n in names:
        m = mods[n]
        if n == last:
            continue
        if isinstance(m, nn.Conv2d) and m.bias is not None and any(p != 0 for p in m.padding):
            raise ValueError(f"eigendamage: layer {n} has a bias and zero padding; its bottleneck would not "
                             "compute it at the border (prunelib/methods/eigendamage.py)")
        out.append(n)
    return out


def decompose(model: nn.Module, factors: dict[str, kfac.Factors]) -> dict[str, Basis]:
    """Each layer of ``factors`` rotated into the eigenbasis of its factors (float64)."""
    mods = dict(model.named_modules())
    out = {}
    for name, f in factors.items():
        m = mods[name]
        d_a, q_a = torch.linalg.eigh(f.A.double())
        d_s, q_s = torch.linalg.eigh(f.S.double())
        d_a = d_a * (d_a > EIG_FLOOR)
        d_s = d_s * (d_s > EIG_FLOOR)
        w = patch_weight(m).double().to(q_a.device)
        core = torch.einsum("or,opc,cd->rpd", q_s, w, q_a)
        out[name] = Basis(name, q_a, q_s, d_a, d_s, core, isinstance(m, nn.Conv2d), m.bias is not None)
    return out


def _bneck(b: Basis, rows: int, cols: int) -> int:
    """Weights of the bottleneck: projection + core + back-projection (bias not counted)."""
    in_dim = b.n_cols - (1 if b.bias else 0)
    return in_dim * cols + rows * cols * b.patch + b.n_rows * rows


def select(model: nn.Module, bases: dict[str, Basis], prunable: list[str], ratio, seed: int,
           limit: float = PRUNE_RATIO_LIMIT) -> tuple[dict, dict]:
    """Kept rows and columns per layer ({layer: (rows, cols)}, sorted index tensors; a layer
    left as it was has None) and the record: target and kept parameter counts, deviation."""
    params = dict(model.named_parameters())
    n_total = sum(params[n].numel() for n in prunable)
    target = kept_count(n_total, ratio)
    orig = {k: params[f"{k}.weight"].numel() for k in bases}
    others = n_total - sum(orig.values())
    names = list(bases)
    kept_r = {k: bases[k].n_rows for k in names}
    kept_c = {k: bases[k].n_cols for k in names}
    max_r = {k: min(int(limit * bases[k].n_rows), bases[k].n_rows - 1) for k in names}
    max_c = {k: min(int(limit * bases[k].n_cols), bases[k].n_cols - 1) for k in names}
    size = {k: min(_bneck(bases[k], kept_r[k], kept_c[k]), orig[k]) for k in names}
    units, imps = [], []
    for k in names:
        r, c = bases[k].importances()
        units += [(k, 0, i) for i in range(r.numel())] + [(k, 1, i) for i in range(c.numel())]
        imps.append(torch.cat([r, c]).cpu())
    flat = torch.cat(imps)
    perm = torch.randperm(flat.numel(), generator=generator(seed, "tie-break:eigendamage"))
    order = perm[torch.argsort(flat[perm], stable=True)].tolist()
    removed = {k: ([], []) for k in names}
    n_kept = others + sum(size.values())
    for j in order:
        if n_kept <= target:
            break
        k, side, i = units[j]
        if side == 0:
            if bases[k].n_rows - kept_r[k] >= max_r[k]:
                continue
            kept_r[k] -= 1
        else:
            if bases[k].n_cols - kept_c[k] >= max_c[k]:
                continue
            kept_c[k] -= 1
        removed[k][side].append(i)
        new = min(_bneck(bases[k], kept_r[k], kept_c[k]), orig[k])
        n_kept += new - size[k]
        size[k] = new
    kept = {}
    layers = []
    for k in names:
        b = bases[k]
        replaced = _bneck(b, kept_r[k], kept_c[k]) < orig[k]
        rows = torch.tensor(sorted(set(range(b.n_rows)) - set(removed[k][0])), dtype=torch.long)
        cols = torch.tensor(sorted(set(range(b.n_cols)) - set(removed[k][1])), dtype=torch.long)
        kept[k] = (rows, cols) if replaced else None
        layers.append({"layer": k, "rows": b.n_rows, "cols": b.n_cols, "kept_rows": int(rows.numel()),
                       "kept_cols": int(cols.numel()), "replaced": bool(replaced), "weights": orig[k],
                       "kept_weights": int(size[k])})
    record = {"granularity": "eigenbasis", "scope": "global", "prune_ratio_limit": limit,
              "eigen_target_kept": int(target), "eigen_n_kept": int(n_kept),
              "eigen_deviation": int(target - n_kept), "target_reached": bool(n_kept <= target),
              "n_prunable": int(n_total), "layers": layers}
    return kept, record


class _Bottleneck(nn.Sequential):
    """projection -> core -> back-projection (one EigenDamage layer)."""


def _bottleneck(mod: nn.Module, b: Basis, rows: torch.Tensor, cols: torch.Tensor, dtype,
                trainable_rotations: bool = False) -> nn.Module:
    device = mod.weight.device
    rows, cols = rows.to(b.core.device), cols.to(b.core.device)
    qa = b.q_a[:, cols]                        # [in(+1), c]
    qs = b.q_s[:, rows]                        # [out, r]
    core = b.core[rows][:, :, cols]            # [r, P, c]
    in_dim = b.n_cols - (1 if b.bias else 0)
    const = (1.0 / b.patch) if b.conv else 1.0
    proj_w, proj_b = qa[:in_dim].t(), (qa[in_dim] * const if b.bias else None)
    if b.conv:
        kh, kw = mod.kernel_size
        proj = nn.Conv2d(in_dim, len(cols), 1, bias=b.bias)
        proj.weight.data = proj_w[:, :, None, None].clone()
        mid = nn.Conv2d(len(cols), len(rows), mod.kernel_size, mod.stride, mod.padding, mod.dilation, bias=False)
        mid.weight.data = core.reshape(len(rows), kh, kw, len(cols)).permute(0, 3, 1, 2).contiguous()
        back = nn.Conv2d(len(rows), b.n_rows, 1, bias=False)
        back.weight.data = qs[:, :, None, None].clone()
    else:
        proj = nn.Linear(in_dim, len(cols), bias=b.bias)
        proj.weight.data = proj_w.clone()
        mid = nn.Linear(len(cols), len(rows), bias=False)
        mid.weight.data = core[:, 0, :].clone()
        back = nn.Linear(len(rows), b.n_rows, bias=False)
        back.weight.data = qs.clone()
    if proj_b is not None:
        proj.bias.data = proj_b.clone()
    out = _Bottleneck(proj, mid, back).to(device=device, dtype=dtype)
    if not trainable_rotations:
        for m in (out[0], out[2]):
            m.weight.requires_grad_(False)
            if m.bias is not None:
                m.bias.requires_grad_(False)
    return out


def _set(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, attr = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, attr, module)


def build(model: nn.Module, bases: dict[str, Basis], kept: dict, trainable_rotations: bool = False) -> nn.Module:
    """The EigenDamage network: each replaced layer a projection, core and back-projection."""
    out = copy.deepcopy(model)
    mods = dict(out.named_modules())
    dtype = next(model.parameters()).dtype
    for k, sel in kept.items():
        if sel is not None:
            _set(out, k, _bottleneck(mods[k], bases[k], sel[0], sel[1], dtype, trainable_rotations))
    return out


def rotated_masked(model: nn.Module, bases: dict[str, Basis], kept: dict) -> nn.Module:
    """The same pruning in the original architecture: W = Q_S[:, R] W*[R, :, C] Q_A[:, C]^T."""
    out = copy.deepcopy(model)
    mods = dict(out.named_modules())
    for k, sel in kept.items():
        if sel is None:
            continue
        b, m = bases[k], mods[k]
        rows, cols = sel
        w = torch.einsum("or,rpd,cd->opc", b.q_s[:, rows], b.core[rows][:, :, cols], b.q_a[:, cols])
        in_dim = b.n_cols - (1 if b.bias else 0)
        with torch.no_grad():
            if b.conv:
                kh, kw = m.kernel_size
                m.weight.copy_(w[:, :, :in_dim].reshape(w.shape[0], kh, kw, in_dim).permute(0, 3, 1, 2))
            else:
                m.weight.copy_(w[:, 0, :in_dim])
            if b.bias:
                # the homogeneous column, one copy per kernel position, each seen at 1/P
                m.bias.copy_(w[:, :, in_dim].sum(1) * (1.0 / b.patch if b.conv else 1.0))
    return out


def weight_count(net: nn.Module) -> int:
    """Weights of every Conv/Linear layer of ``net`` (biases not counted)."""
    return sum(m.weight.numel() for m in net.modules() if isinstance(m, (nn.Linear, nn.Conv2d)))


def prune(model: nn.Module, prunable: list[str], batches, ratio, seed: int, fisher: str = "true",
          limit: float = PRUNE_RATIO_LIMIT, trainable_rotations: bool = False) -> tuple[nn.Module, dict, dict]:
    """EigenDamage end to end: (built network, kept rows/cols per layer, record)."""
    layers = eigen_layers(model, prunable)
    factors = kfac.kfac_factors(model, layers, batches, seed, fisher, "channel")
    bases = decompose(model, factors)
    kept, record = select(model, bases, prunable, ratio, seed, limit)
    return build(model, bases, kept, trainable_rotations), kept, record


def spec_of(kept: dict) -> dict:
    """The built network's shape, as the artifacts record it: {layer: [kept rows, kept cols]}
    for each replaced layer (enough to rebuild it empty and load its state dict)."""
    return {k: [int(sel[0].numel()), int(sel[1].numel())] for k, sel in kept.items() if sel is not None}


def skeleton(model: nn.Module, spec: dict) -> nn.Module:
    """``model`` with each layer of ``spec`` replaced by an (untrained) bottleneck of the
    recorded size, in place: what a built network's state dict loads into."""
    mods = dict(model.named_modules())
    for k, (r, c) in spec.items():
        m = mods[k]
        conv = isinstance(m, nn.Conv2d)
        bias = m.bias is not None
        in_dim = m.in_channels if conv else m.in_features
        out_dim = m.out_channels if conv else m.out_features
        patch = m.kernel_size[0] * m.kernel_size[1] if conv else 1
        b = Basis(k, torch.zeros(in_dim + bias, in_dim + bias, dtype=torch.float64),
                  torch.zeros(out_dim, out_dim, dtype=torch.float64), torch.zeros(in_dim + bias),
                  torch.zeros(out_dim), torch.zeros(out_dim, patch, in_dim + bias, dtype=torch.float64), conv, bias)
        dtype = m.weight.dtype
        _set(model, k, _bottleneck(m, b, torch.arange(r), torch.arange(c), dtype))
    return model


def collapse(built: nn.Module, original: nn.Module, spec: dict) -> nn.Module:
    """The built network folded back into the original architecture (``original``: a network
    of that architecture, its other weights ignored): each bottleneck's back-projection, core
    and projection multiplied out (W = Q_S[:, R] W*[R, :, C] Q_A[:, C]^T, the homogeneous
    coordinate back into the bias).  Right after pruning this is ``rotated_masked``; after
    training it is the same function in the original shape (the eval stage's check)."""
    out = copy.deepcopy(original)
    out.load_state_dict({k: v for k, v in built.state_dict().items() if k in out.state_dict()}, strict=False)
    mods, bmods = dict(out.named_modules()), dict(built.named_modules())
    with torch.no_grad():
        for k in spec:
            proj, core, back = bmods[k]
            m = mods[k]
            if isinstance(m, nn.Conv2d):
                w = torch.einsum("or,rckl,ci->oikl", back.weight[:, :, 0, 0], core.weight, proj.weight[:, :, 0, 0])
                b = (torch.einsum("or,rckl,c->o", back.weight[:, :, 0, 0], core.weight, proj.bias)
                     if proj.bias is not None else None)
            else:
                w = back.weight @ core.weight @ proj.weight
                b = back.weight @ core.weight @ proj.bias if proj.bias is not None else None
            m.weight.copy_(w)
            if b is not None:
                m.bias.copy_(b)
    return out


def measure(built: nn.Module, original: nn.Module, spec: dict, data: dict, dataset: str, device,
            train_batch: int = 128, infer_batch: int = 256, timing=None) -> dict:
    """The measured columns of an EigenDamage eval row: the built network against the
    original-shaped network it folds into (``collapse``), as ``slimming.measure`` does for
    filters -- ``slim_max_abs_diff`` in float64, ``slim_equal``, ``slim_params`` and, when
    ``timing`` is given (the measure stage, prunelib/stages/measure.py; the eval stage
    times nothing), the speed-ups at batch 1, 256 and one training step (original time /
    built time, each with its spread and repeat count: ``slimming.paired_speedup``)."""
    from prunelib.methods import slimming

    row = slimming.measure_missing(device)
    row.update(measure_train_batch=train_batch, measure_infer_batch=infer_batch)
    device = torch.device(device)
    built = built.to(device).eval()
    dense = collapse(built, original.to(device), spec).eval()
    x, _ = slimming.test_batch(data, dataset, infer_batch, device)
    with torch.no_grad():
        diff32 = float((built(x) - dense(x)).abs().max())
        diff = float((copy.deepcopy(built).double()(x.double()) - copy.deepcopy(dense).double()(x.double()))
                     .abs().max())
    row.update(slim_max_abs_diff=diff, slim_max_abs_diff_f32=diff32, slim_equal=diff <= slimming.TOLERANCE,
               slim_params=sum(p.numel() for p in built.parameters()))
    if timing is None:
        return row
    slimming._record(row, "measured_speedup_infer_b1", slimming.paired_speedup(
        slimming._infer(dense, x[:1]), slimming._infer(built, x[:1]), timing, device))
    slimming._record(row, "measured_speedup_infer_b256", slimming.paired_speedup(
        slimming._infer(dense, x), slimming._infer(built, x), timing, device))
    xt, yt = slimming.test_batch(data, dataset, train_batch, device)
    d_t, b_t = copy.deepcopy(dense).train(), copy.deepcopy(built).train()
    slimming._record(row, "measured_speedup_train", slimming.paired_speedup(
        slimming._train_step(d_t, xt, yt), slimming._train_step(b_t, xt, yt), timing, device))
    return row
