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
network costs today).  Timings alternate between the two networks, repeat by repeat, so
that a load change on a shared machine hits both; the median of the repeats is kept.
These numbers are measured and recorded, never asserted.
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

from prunelib.data import datasets
from prunelib.methods.structured import Group, StructureError, channel_groups, columns, masks_for

TOLERANCE = 1e-5
SPARSE_MIN_SPARSITY = 0.9
REPEATS = {"b1": 15, "b256": 5, "train": 5, "sparse": 7, "warmup": 2}

#: Timing columns: in every row, NaN where they do not apply (prunelib/foundations/eval_row.py).
MEASURED = ("measured_speedup_infer_b1", "measured_speedup_infer_b256", "measured_speedup_train",
            "measured_speedup_infer_sparse")
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


def side_by_side(fns: list, repeats: int, device, warmup: int = 2) -> list[float]:
    """Median seconds of each of ``fns``, timed alternately, repeat by repeat."""
    for _ in range(warmup):
        for f in fns:
            f()
    _sync(device)
    times = [[] for _ in fns]
    for _ in range(repeats):
        for i, f in enumerate(fns):
            _sync(device)
            t0 = time.perf_counter()
            f()
            _sync(device)
            times[i].append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times]


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
    return {**{c: math.nan for c in MEASURED}, "sparse_layers": "",
            "measure_device": device_name(device), "measure_train_batch": 0, "measure_infer_batch": 0}


def measure(model: nn.Module, masks: dict, data: dict, dataset: str, device, structured: bool,
            train_batch: int = 128, repeats: dict | None = None, infer_batch: int = 256) -> dict:
    """The measured columns of an eval row (``MEASURED``, NaN where they do not apply;
    ``SLIM`` for structured masks only)."""
    reps = {**REPEATS, **(repeats or {})}
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
        t = side_by_side([_infer(masked, x256[:1]), _infer(small, x256[:1])], reps["b1"], device,
                         reps["warmup"])
        row["measured_speedup_infer_b1"] = t[0] / t[1]
        t = side_by_side([_infer(masked, x256), _infer(small, x256)], reps["b256"], device, reps["warmup"])
        row["measured_speedup_infer_b256"] = t[0] / t[1]
        xt, yt = test_batch(data, dataset, train_batch, device)
        dense_t, small_t = copy.deepcopy(masked).train(), copy.deepcopy(small).train()
        t = side_by_side([_train_step(dense_t, xt, yt), _train_step(small_t, xt, yt)], reps["train"], device,
                         reps["warmup"])
        row["measured_speedup_train"] = t[0] / t[1]
    elif device.type == "cpu":
        sparse, names = csr_copy(model, masks)
        if names:
            masked = masked_copy(model, masks).eval()
            sparse.eval()
            t = side_by_side([_infer(masked, x256), _infer(sparse, x256)], reps["sparse"], device,
                             reps["warmup"])
            row["measured_speedup_infer_sparse"] = t[0] / t[1]
            row["sparse_layers"] = ",".join(names)
    return row


def device_name(device) -> str:
    """The device in words: the CUDA device's name, or the CPU and its thread count."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    cpu = platform.processor() or platform.machine()
    return f"cpu ({cpu}, {torch.get_num_threads()} threads)"
