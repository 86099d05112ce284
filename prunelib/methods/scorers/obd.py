"""Optimal Brain Damage (LeCun, Denker & Solla, NeurIPS 1989, Eq. 5).

    s_k = 1/2 * h_kk * theta_k^2

with h_kk the diagonal of the Hessian of the training loss, averaged over the scoring data.

Exact diagonal (``estimator="exact"``).  For cross-entropy on logits z, the Hessian is

    H = J^T H_z J + sum_c (dL/dz_c) d^2 z_c / dtheta^2,    H_z = diag(p) - p p^T

For networks built from linear maps, ReLU and max-pooling (and normalisation layers in
eval mode) the output is linear in any *single* weight, so d^2 z_c / dtheta_k^2 = 0 and the
Hessian's diagonal equals that of the generalised Gauss-Newton matrix J^T H_z J exactly.
With H_z = sum_c p_c (e_c - p)(e_c - p)^T,

    h_kk = mean_n sum_c p_nc * ( d/dtheta_k [ (e_c - p_n)^T z_n ] )^2      (p_n held fixed)

which is C per-example backward passes (C = classes), vectorised with torch.func.vmap.
This is what backpack's DiagGGNExact computes; doing it with torch.func needs no extra
dependency.  ``tests/test_scorers.py`` checks it against torch.autograd.functional.hessian.

Estimate (``estimator="hutchinson"``): diag(H) = E[v * Hv] for Rademacher v, with a fixed
number of probes drawn with the seed, on the loss in train mode; for networks where the
exact identity does not hold (BatchNorm in train mode).  ``"auto"`` picks exact when the
network has no normalisation layer, else Hutchinson.  The estimator used is recorded.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from prunelib.methods.scorers.base import Scorer
from prunelib.foundations.seeding import generator

ESTIMATORS = ("auto", "exact", "hutchinson")


def _has_norm_layers(model) -> bool:
    return any(isinstance(m, (torch.nn.modules.batchnorm._NormBase, torch.nn.GroupNorm, torch.nn.LayerNorm))
               for m in model.modules())


def hessian_diagonal_exact(model, params: dict, batches) -> dict[str, torch.Tensor]:
    """Exact diag of the loss Hessian for piecewise-linear networks (GGN identity), mean over data."""
    model.eval()
    names = list(params)
    frozen = {n: p.detach() for n, p in model.named_parameters() if n not in params}
    buffers = dict(model.named_buffers())
    diag = {n: torch.zeros_like(p) for n, p in params.items()}
    count = 0

    def contrast(p_vals, x1, w):
        """(e_c - p)^T z for one example, with w = e_c - p fixed."""
        z = functional_call(model, ({**frozen, **dict(zip(names, p_vals))}, buffers), (x1.unsqueeze(0),))
        return (z.squeeze(0) * w).sum()

    per_example_grad = vmap(grad(contrast), in_dims=(None, 0, 0))
    p_vals = tuple(params[n].detach() for n in names)
    for x, _ in batches:
        with torch.no_grad():
            prob = torch.softmax(model(x), dim=1)
        n_cls = prob.shape[1]
        eye = torch.eye(n_cls, dtype=prob.dtype, device=prob.device)
        for c in range(n_cls):
            w = eye[c].unsqueeze(0) - prob                      # [N, C]
            gs = per_example_grad(p_vals, x, w)                 # tuple of [N, *shape]
            weight = prob[:, c]
            for n, g in zip(names, gs):
                diag[n] += torch.einsum("n,n...->...", weight, g * g)
        count += x.shape[0]
    return {n: d / count for n, d in diag.items()}


def hessian_diagonal_hutchinson(model, params: dict, batches, probes: int, seed: int) -> dict[str, torch.Tensor]:
    """Hutchinson estimate E[v * Hv], Rademacher v, of the mean-loss Hessian diagonal."""
    model.train()
    gen = generator(seed, "obd-hutchinson")
    names = list(params)
    batches = list(batches)
    est = {n: torch.zeros_like(p) for n, p in params.items()}
    for _ in range(probes):
        vs = [(torch.randint(0, 2, p.shape, generator=gen) * 2 - 1).to(p) for p in params.values()]
        for x, y in batches:
            loss = F.cross_entropy(model(x), y)
            g = torch.autograd.grad(loss, [params[n] for n in names], create_graph=True)
            hv = torch.autograd.grad(sum((gi * vi).sum() for gi, vi in zip(g, vs)), [params[n] for n in names])
            for n, v, h in zip(names, vs, hv):
                est[n] += v * h
    scale = probes * len(batches)
    return {n: e / scale for n, e in est.items()}


class ObdScorer(Scorer):
    needs_data = True

    def __init__(self, estimator: str = "auto", probes: int = 64):
        if estimator not in ESTIMATORS:
            raise ValueError(f"unknown OBD estimator {estimator!r}; allowed: {', '.join(ESTIMATORS)}")
        self.estimator = estimator
        self.probes = probes
        self.used = None

    def describe(self):
        return {"estimator": self.used or self.estimator, "probes": self.probes if self.used == "hutchinson" else 0}

    def score(self, model, params, batches, seed):
        use = self.estimator
        if use == "auto":
            use = "hutchinson" if _has_norm_layers(model) else "exact"
        self.used = use
        if use == "exact":
            h = hessian_diagonal_exact(model, params, batches)
        else:
            h = hessian_diagonal_hutchinson(model, params, batches, self.probes, seed)
        return {n: 0.5 * h[n] * p.detach() ** 2 for n, p in params.items()}
