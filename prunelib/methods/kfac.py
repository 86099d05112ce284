"""Kronecker-factored curvature (K-FAC) of each Conv/Linear layer, as EigenDamage uses it.

For a layer s = W a (a: its input with a homogeneous 1 appended where it has a bias,
s: its pre-activation), the Fisher block of vec(W) is approximated (Martens & Grosse
2015; Wang et al., "EigenDamage", ICML 2019, Sec. 2.2) by a Kronecker product

    F_W  ~=  S (x) A,      A = E[a a^T],   S = E[g g^T],   g = dL/ds  (one example's loss)

with rows of W (output units) along S and columns (inputs, bias last) along A, so that
with W of shape [out, in(+1)] the quadratic form is  vec(dW)^T F vec(dW) = tr(dW^T S dW A).

How the expectations are taken follows the authors' code (alecwangcq/EigenDamage-Pytorch,
``utils/kfac_utils.py``, ``ComputeCovA``/``ComputeCovG`` with ``batch_averaged=True``):

* **Linear**: A = 1/B sum_n a_n a_n^T;  S = 1/B sum_n g_n g_n^T, with g_n the gradient of
  example n's own loss (the batch-mean loss's gradient times B).
* **Conv2d** (``patches="unfold"``: Kron-OBD/OBS): a_{n,t} is the unfolded input patch
  (C*kh*kw values, zero padding as the layer pads, bias 1 appended) at output position
  t of T = out_h*out_w; g_{n,t} the gradient at that position.  The authors divide each
  patch by T and scale each gradient by T (``a / spatial_size``, ``g * spatial_size``),
  which gives

      A = 1/(B T^2) sum_{n,t} a a^T,      S = T/B sum_{n,t} g g^T

  (the paper's Eq. for convolutions, with their spatial scaling).
* **Conv2d** (``patches="channel"``: EigenDamage's ``use_patch=True``,
  ``ComputeCovAPatch``): every kernel position p of every patch is a sample of the C
  input channels (bias coordinate 1/P, P = kh*kw), so A is C(+1) x C(+1):

      A = 1/(B P T^2) sum_{n,t,p} a a^T,  S as above.

The labels of the loss are sampled from the network's own predictive distribution
(``fisher="true"``, the authors' setting in every config) or the data's labels
(``"empirical"``).  The network is in eval mode while the factors are taken, as in the
authors' ``_compute_fisher``.  **Where we differ:** the authors sum the factors over
batches (``kfac_eigen_pruner``) or divide by the number of batches (``kfac_full_pruner``);
we always average over the ``num_batches`` scoring batches -- a common scale that changes
no ranking.  ``tests/test_kfac.py`` checks the factors against autograd's per-example
gradients.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from prunelib.foundations.seeding import generator

FISHERS = ("true", "empirical")
PATCHES = ("unfold", "channel")


@dataclass
class Factors:
    """One layer's K-FAC factors: ``A`` over its inputs (bias last), ``S`` over its outputs."""

    A: torch.Tensor
    S: torch.Tensor
    #: Whether A carries the homogeneous (bias) coordinate.
    bias: bool
    #: ``unfold`` or ``channel`` for a Conv2d, ``linear`` for a Linear.
    patches: str


def _input_rows(mod: nn.Module, x: torch.Tensor, patches: str) -> tuple[torch.Tensor, float]:
    """The rows a of A (bias coordinate appended) and the factor that A's sum of a a^T is
    divided by, per batch: (rows, divisor)."""
    b = x.shape[0]
    if isinstance(mod, nn.Linear):
        a = x.reshape(b, -1)
        if mod.bias is not None:
            a = torch.cat([a, a.new_ones(b, 1)], 1)
        return a, float(b)
    if mod.groups != 1:
        raise ValueError("K-FAC factors of grouped convolutions are not supported")
    if mod.padding_mode != "zeros" or isinstance(mod.padding, str):
        raise ValueError("K-FAC factors need a Conv2d with numeric zero padding")
    cols = F.unfold(x, mod.kernel_size, mod.dilation, mod.padding, mod.stride)  # [B, C*P, T]
    t = cols.shape[-1]
    if patches == "unfold":
        a = cols.transpose(1, 2).reshape(b * t, -1)
        if mod.bias is not None:
            a = torch.cat([a, a.new_ones(a.shape[0], 1)], 1)
        return a, float(b * t * t)
    p = mod.kernel_size[0] * mod.kernel_size[1]
    a = cols.reshape(b, mod.in_channels, p, t).permute(0, 3, 2, 1).reshape(b * t * p, mod.in_channels)
    if mod.bias is not None:
        a = torch.cat([a, a.new_full((a.shape[0], 1), 1.0 / p)], 1)
    return a, float(b * p * t * t)


def _grad_rows(mod: nn.Module, g: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Rows of per-example pre-activation gradients (``g``: the batch-mean loss's
    gradient) and the factor that multiplies S's sum of g g^T: (rows, factor)."""
    b = g.shape[0]
    g = g * b  # one example's own loss
    if isinstance(mod, nn.Linear):
        return g.reshape(b, -1), 1.0 / b
    t = g.shape[2] * g.shape[3]
    return g.permute(0, 2, 3, 1).reshape(b * t, -1), t / b


def layers_of(model: nn.Module, names: list[str] | None = None) -> list[str]:
    """The Conv2d/Linear modules of ``model`` (by name), or ``names`` checked to be such."""
    mods = dict(model.named_modules())
    if names is None:
        return [n for n, m in mods.items() if isinstance(m, (nn.Linear, nn.Conv2d))]
    for n in names:
        if not isinstance(mods.get(n), (nn.Linear, nn.Conv2d)):
            raise ValueError(f"K-FAC layer {n!r} is not a Linear or Conv2d of this network")
    return list(names)


def kfac_factors(model: nn.Module, layers: list[str], batches, seed: int, fisher: str = "true",
                 patches: str = "unfold") -> dict[str, Factors]:
    """The K-FAC factors of ``layers`` (module names), averaged over ``batches``."""
    if fisher not in FISHERS:
        raise ValueError(f"K-FAC fisher = {fisher!r} is not allowed; allowed: {', '.join(FISHERS)}")
    if patches not in PATCHES:
        raise ValueError(f"K-FAC patches = {patches!r} is not allowed; allowed: {', '.join(PATCHES)}")
    mods = dict(model.named_modules())
    was = model.training
    model.eval()
    gen = generator(seed, "kfac:labels")
    seen: dict[str, list] = {}

    def hook(name):
        def f(_mod, inputs, output):
            seen[name] = [inputs[0].detach(), output]
        return f

    handles = [mods[n].register_forward_hook(hook(n)) for n in layers]
    sums = {n: [None, None] for n in layers}
    count = 0
    try:
        for x, y in batches:
            seen.clear()
            with torch.enable_grad():
                x = x.detach()
                out = model(x)
                if fisher == "true":
                    prob = torch.softmax(out.detach().double().cpu(), 1)
                    y = torch.multinomial(prob, 1, generator=gen).squeeze(1).to(out.device)
                loss = F.cross_entropy(out, y)
                grads = torch.autograd.grad(loss, [seen[n][1] for n in layers])
            for n, g in zip(layers, grads):
                m = mods[n]
                a, div = _input_rows(m, seen[n][0], patches)
                gr, mul = _grad_rows(m, g.detach())
                aa = a.t() @ a / div
                gg = gr.t() @ gr * mul
                sums[n][0] = aa if sums[n][0] is None else sums[n][0] + aa
                sums[n][1] = gg if sums[n][1] is None else sums[n][1] + gg
            count += 1
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    if count == 0:
        raise ValueError("K-FAC factors need at least one batch")
    out = {}
    for n in layers:
        m = mods[n]
        kind = "linear" if isinstance(m, nn.Linear) else patches
        out[n] = Factors(sums[n][0] / count, sums[n][1] / count, m.bias is not None, kind)
    return out


def matrix_weight(mod: nn.Module) -> torch.Tensor:
    """The layer's weight as the matrix the factors act on: [out, in*kh*kw (+1 bias)]
    (the authors' ``fetch_mat_weights(layer, use_patch=False)``)."""
    w = mod.weight.detach().reshape(mod.weight.shape[0], -1)
    if mod.bias is not None:
        w = torch.cat([w, mod.bias.detach()[:, None]], 1)
    return w


def split_matrix(mod: nn.Module, mat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The inverse of ``matrix_weight``: (weight of the layer's shape, bias or None)."""
    if mod.bias is not None:
        return mat[:, :-1].reshape(mod.weight.shape), mat[:, -1]
    return mat.reshape(mod.weight.shape), None
