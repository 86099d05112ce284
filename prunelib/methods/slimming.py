"""The slimmed network, really built, and what its masks buy on real kernels.

``slim(model, masks)`` turns a network with a structured mask (prunelib/methods/structured.py)
into the physically smaller network: Conv, Linear and BatchNorm layers with the pruned
filters and the input channels they fed removed.  ``measure(...)``, called by the eval
stage, checks that it computes what the masked network computes and times both, side by
side in one run on the same device:

* ``slim_max_abs_diff``: max |slim(x) - masked(x)| over a test batch (eval mode), both
  networks in float64 so that the check tests the slimming, not float32 summation order;
  ``slim_equal`` when it is <= ``TOLERANCE``.  ``slim_max_abs_diff_f32``: the same in
  float32, as the networks run (trained ResNets reach a few 1e-6 there);
* ``measured_speedup_infer_b1`` / ``_b256``: dense / slimmed median latency of one
  inference forward (no grad, eval mode) at batch 1 and 256;
* ``measured_speedup_train``: dense / slimmed median time of one training step
  (forward, cross-entropy, backward, SGD step) at the training batch size;
* ``measured_speedup_infer_sparse`` (unstructured masks): dense / CSR median latency of
  one inference forward at batch 256 where every Linear layer at >= 90 % sparsity runs
  as ``torch.sparse.mm`` on a CSR weight (CPU only; absent otherwise).

"Dense" is the same network with dense kernels and the mask's zeros (what a masked
network costs today).  How one speed-up is timed (``paired_speedup``): each repeat times
the dense and the pruned network back to back, in alternating order (dense first on
even repeats, pruned first on odd ones, so that a drift in load hits both equally) and
keeps the ratio dense / pruned of that repeat; each timed sample runs the network as
many times as it takes for a sample of either network to last ``min_sample_seconds``
(calibrated once, before the repeats), so that short forwards are lost neither in the
timer's resolution nor in one scheduler time slice.  Repeats
continue until at least ``min_repeats`` are in and the interquartile range of the
ratios is at most ``target_spread`` x their median, or ``max_repeats`` is reached.  The
row keeps the median ratio (``<column>``), its IQR (``<column>_iqr``) and the repeat
count (``<column>_repeats``; = ``max_repeats`` when the spread never came down).

These timings are taken by the ``measure`` stage (prunelib/stages/measure.py), which the
workflow runs alone, after every other job of the grid (workflow/rules/measure.smk);
the eval stage only checks the slimmed network (``SLIM``) and leaves them NaN.
Measured and recorded, never asserted.
"""

from __future__ import annotations

import copy
import math
import statistics
import time
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from prunelib.config.settings import MeasureSettings
from prunelib.data import datasets
from prunelib.foundations import eval_row
from prunelib.methods.structured import Group, StructureError, channel_groups, columns, masks_for

TOLERANCE = 1e-5
SPARSE_MIN_SPARSITY = 0.9

#: Timing columns: in every row, NaN where they do not apply (prunelib/foundations/eval_row.py
#: names them, with their ``_iqr`` and ``_repeats`` companions).
MEASURED = eval_row.MEASURED_SPEEDUPS
#: Columns of the slimmed network: only in the rows of structured masks (absent, not NaN,
#: elsewhere, so that two runs' rows compare equal).
SLIM = ("slim_max_abs_diff", "slim_max_abs_diff_f32", "slim_equal", "slim_params")


def kept_filters(model: nn.Module, masks: dict) -> tuple[list[Group], list[torch.Tensor]] | None:
    """The groups and the kept filter indices per group, if ``masks`` is a structured mask
    of ``model`` (exactly the mask that removing those filters gives); None otherwise."""
    try:
        groups = channel_groups(model)
    except StructureError:
        return None
    kept, pruned = [], []
    for g in groups:
        m = masks.get(f"{g.producer}.weight")
        if m is None:
            return None
        alive = m.reshape(m.shape[0], -1).any(1)
        kept.append(alive.nonzero().flatten())
        pruned.append((~alive).nonzero().flatten().tolist())
    expected = masks_for(model, groups, pruned, list(masks))
    if any(not torch.equal(expected[n], masks[n].bool()) for n in masks):
        return None
    return groups, kept


def masked_copy(model: nn.Module, masks: dict) -> nn.Module:
    """A copy of ``model`` with every masked weight set to zero (dense shapes)."""
    out = copy.deepcopy(model)
    params = dict(out.named_parameters())
    with torch.no_grad():
        for n, m in masks.items():
            params[n].mul_(m.to(params[n].device, params[n].dtype))
    return out


def _set(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, attr = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, attr, module)


def _shrunk(mod: nn.Module, out_idx, in_idx) -> nn.Module:
    w = mod.weight.detach()
    if out_idx is not None:
        w = w[out_idx]
    if in_idx is not None:
        w = w[:, in_idx]
    b = mod.bias.detach()[out_idx] if (mod.bias is not None and out_idx is not None) else (
        None if mod.bias is None else mod.bias.detach())
    if isinstance(mod, nn.Linear):
        new = nn.Linear(w.shape[1], w.shape[0], bias=b is not None)
    elif isinstance(mod, nn.Conv2d):
        if mod.groups != 1:
            raise StructureError("grouped convolutions are not slimmed")
        new = nn.Conv2d(w.shape[1], w.shape[0], mod.kernel_size, mod.stride, mod.padding, mod.dilation,
                        bias=b is not None, padding_mode=mod.padding_mode)
    else:
        raise StructureError(f"cannot slim a {type(mod).__name__}")
    new = new.to(w.device, w.dtype)
    with torch.no_grad():
        new.weight.copy_(w)
        if b is not None:
            new.bias.copy_(b)
    return new


def _shrunk_bn(bn: nn.BatchNorm2d, idx) -> nn.Module:
    new = type(bn)(len(idx), eps=bn.eps, momentum=bn.momentum, affine=bn.affine,
                   track_running_stats=bn.track_running_stats)
    new = new.to(bn.weight.device if bn.affine else bn.running_mean.device)
    with torch.no_grad():
        if bn.affine:
            new.weight.copy_(bn.weight[idx])
            new.bias.copy_(bn.bias[idx])
        if bn.track_running_stats:
            new.running_mean.copy_(bn.running_mean[idx])
            new.running_var.copy_(bn.running_var[idx])
            new.num_batches_tracked.copy_(bn.num_batches_tracked)
    new.train(bn.training)
    return new


def slim(model: nn.Module, masks: dict, found=None) -> nn.Module:
    """The physically smaller network of a structured mask (``StructureError`` if the
    mask is not one).  Weights are those of the masked network."""
    found = found or kept_filters(model, masks)
    if found is None:
        raise StructureError("the mask is not a structured (filter) mask of this network")
    groups, kept = found
    out = masked_copy(model, masks)
    mods = dict(out.named_modules())
    out_idx, in_idx = {}, {}
    for g, idx in zip(groups, kept):
        out_idx[g.producer] = idx
        for cons, expand in g.consumers:
            in_idx[cons] = columns(idx, expand)
    for name in sorted(set(out_idx) | set(in_idx)):
        _set(out, name, _shrunk(mods[name], out_idx.get(name), in_idx.get(name)))
    for g, idx in zip(groups, kept):
        if g.bn:
            _set(out, g.bn, _shrunk_bn(mods[g.bn], idx))
    return out


class CsrLinear(nn.Module):
    """A Linear layer whose weight is a CSR sparse tensor (inference only)."""

    def __init__(self, lin: nn.Linear):
        super().__init__()
        with warnings.catch_warnings():  # "Sparse CSR tensor support is in beta state"
            warnings.simplefilter("ignore", UserWarning)
            self.weight = lin.weight.detach().to_sparse_csr()
        self.bias = None if lin.bias is None else lin.bias.detach()

    def forward(self, x):
        y = torch.sparse.mm(self.weight, x.t()).t()
        return y if self.bias is None else y + self.bias


def csr_copy(model: nn.Module, masks: dict, min_sparsity: float = SPARSE_MIN_SPARSITY):
    """A copy of the masked ``model`` with every Linear at >= ``min_sparsity`` as CsrLinear,
    and the names of those layers."""
    out = masked_copy(model, masks)
    names = []
    for name, mod in list(out.named_modules()):
        key = f"{name}.weight"
        if isinstance(mod, nn.Linear) and key in masks:
            density = float(masks[key].float().mean())
            if 1 - density >= min_sparsity:
                _set(out, name, CsrLinear(mod))
                names.append(name)
    return out, names


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


#: How a speed-up is timed (config ``measure:``; its defaults are the plain ones).
Timing = MeasureSettings


def quartiles(values) -> tuple[float, float, float]:
    """(Q1, median, Q3) of ``values`` (``statistics.quantiles``' inclusive method, i.e.
    linear interpolation between order statistics, numpy's default)."""
    v = sorted(values)
    if len(v) == 1:
        return v[0], v[0], v[0]
    q1, q2, q3 = statistics.quantiles(v, n=4, method="inclusive")
    return q1, q2, q3


def paired_speedup(dense, pruned, timing: Timing = Timing(), device="cpu", clock=time.perf_counter) -> dict:
    """``{"median", "iqr", "repeats"}`` of the per-repeat ratio dense time / pruned time
    (the module docstring gives the rule).  ``dense`` and ``pruned`` are callables;
    ``clock`` returns seconds (tests pass a fake one)."""
    for _ in range(timing.warmup):
        dense()
        pruned()
    _sync(device)

    def sample(f, n):
        _sync(device)
        t0 = clock()
        for _ in range(n):
            f()
        _sync(device)
        return clock() - t0

    # calls per sample: doubled until a sample of each lasts min_sample_seconds (the faster
    # network's too: a sample of a millisecond is at the mercy of one scheduler time slice)
    n = 1
    while n < 1_000_000 and min(sample(dense, n), sample(pruned, n)) < timing.min_sample_seconds:
        n *= 2
    ratios: list[float] = []
    while len(ratios) < timing.max_repeats:
        if len(ratios) % 2 == 0:
            td = sample(dense, n)
            tp = sample(pruned, n)
        else:
            tp = sample(pruned, n)
            td = sample(dense, n)
        ratios.append(td / tp if tp > 0 else math.inf)
        if len(ratios) >= timing.min_repeats:
            q1, med, q3 = quartiles(ratios)
            if q3 - q1 <= timing.target_spread * abs(med):
                break
    q1, med, q3 = quartiles(ratios)
    return {"median": med, "iqr": q3 - q1, "repeats": len(ratios)}


def _record(row: dict, column: str, result: dict) -> None:
    row[column] = result["median"]
    row[column + eval_row.SPREAD_SUFFIX] = result["iqr"]
    row[column + eval_row.REPEATS_SUFFIX] = result["repeats"]


def _infer(net, x):
    def f():
        with torch.no_grad():
            net(x)
    return f


def _train_step(net, x, y):
    opt = torch.optim.SGD(net.parameters(), lr=0.0)  # lr 0: the timed copies stay as they are

    def f():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(net(x), y).backward()
        opt.step()
    return f


def test_batch(data: dict, dataset: str, n: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` test examples (repeated if there are fewer), normalised, on ``device``."""
    x, y = data["test_x"], data["test_y"]
    idx = torch.arange(n) % y.numel()
    return datasets.to_float(x[idx], dataset).to(device), y[idx].to(device)


def measure_missing(device) -> dict:
    """The measured columns of a row that measures nothing (a failed cell)."""
    return {**{c: math.nan for c in eval_row.speedup_columns()}, "sparse_layers": "",
            "measure_device": device_name(device), "measure_train_batch": 0, "measure_infer_batch": 0}


def measure(model: nn.Module, masks: dict, data: dict, dataset: str, device, structured: bool,
            train_batch: int = 128, timing: Timing | None = None, infer_batch: int = 256) -> dict:
    """The measured columns of an eval row: ``SLIM`` (structured masks only) and, when
    ``timing`` is given, the speed-ups (``MEASURED``, each with its ``_iqr`` and
    ``_repeats``; NaN where they do not apply or ``timing`` is None)."""
    row = measure_missing(device)
    row.update(measure_train_batch=train_batch, measure_infer_batch=infer_batch)
    device = torch.device(device)
    model = model.to(device)
    found = kept_filters(model, masks) if structured else None
    x256, _ = test_batch(data, dataset, infer_batch, device)
    if found is not None:
        masked = masked_copy(model, masks).eval()
        small = slim(model, masks, found).eval()
        with torch.no_grad():
            diff32 = float((small(x256) - masked(x256)).abs().max())
            diff = float((copy.deepcopy(small).double()(x256.double())
                          - copy.deepcopy(masked).double()(x256.double())).abs().max())
        row.update(slim_max_abs_diff=diff, slim_max_abs_diff_f32=diff32, slim_equal=diff <= TOLERANCE,
                   slim_params=sum(p.numel() for p in small.parameters()))
        if timing is not None:
            _record(row, "measured_speedup_infer_b1",
                    paired_speedup(_infer(masked, x256[:1]), _infer(small, x256[:1]), timing, device))
            _record(row, "measured_speedup_infer_b256",
                    paired_speedup(_infer(masked, x256), _infer(small, x256), timing, device))
            xt, yt = test_batch(data, dataset, train_batch, device)
            dense_t, small_t = copy.deepcopy(masked).train(), copy.deepcopy(small).train()
            _record(row, "measured_speedup_train",
                    paired_speedup(_train_step(dense_t, xt, yt), _train_step(small_t, xt, yt), timing, device))
    elif device.type == "cpu":
        sparse, names = csr_copy(model, masks)
        if names:
            row["sparse_layers"] = ",".join(names)
            if timing is not None:
                masked = masked_copy(model, masks).eval()
                sparse.eval()
                _record(row, "measured_speedup_infer_sparse",
                        paired_speedup(_infer(masked, x256), _infer(sparse, x256), timing, device))
    return row


def device_name(device) -> str:
    """The device in words: the CUDA device's name, or the CPU and its thread count."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    cpu = platform.processor() or platform.machine()
    return f"cpu ({cpu}, {torch.get_num_threads()} threads)"
