"""Signal propagation at initialisation (Lee, Ajanthan, Gould & Torr, "A Signal
Propagation Perspective for Pruning Neural Networks at Initialization", ICLR 2020):
the isometry residual of a masked layer, approximate isometry (AI), and the Jacobian
singular values their ``--check_jsv`` reports.

A layer's weight is read as the matrix ``W`` of shape ``[out, in * k * k]`` (a Linear
weight as it is; a convolution kernel flattened), ``C`` its mask.  The authors' TF code
(``namhoonlee/spp-public``) keeps kernels as ``[..., in, out]`` and flattens them to
``V = [-1, out]``; their ``V^T V`` is our ``(C ⊙ W)(C ⊙ W)^T``, an ``out x out`` matrix.

* residual ``r(W) = ||(C ⊙ W)(C ⊙ W)^T - I_out||_F`` (``spp/model.py``,
  ``compute_isometry``: ``tf.norm(..., ord='euclidean')`` of the matrix, i.e. the
  Frobenius norm, *not squared*);
* AI minimises ``sum_l r(W_l)^p`` over the kept weights with plain SGD, learning rate 0.1,
  10,000 steps (``compute_isometry``: ``prepare_optimization('sgd', 0.1, 'constant')``;
  ``spp/approximate_isometry.py``: ``for itr in range(10000)``), the gradient reaching
  ``W`` through ``C ⊙ W`` so pruned weights never move.  The code's objective is the
  norm, ``p = 1`` (our default); the issue (and the paper's equation, as the issue
  writes it) squares it, ``p = 2`` (``init.isometry_power``).  Both have the same
  minimisers; their SGD paths differ.  The code feeds a data batch to each step that the
  objective never reads: AI is data-free, and so is ours.  Only weights are included
  (the code's ``'w' in k``), never biases.
* Jacobian singular values (``spp/check.py``, ``jacobian_singular_value``, after init,
  after pruning and after AI): the code measures the *input-output* Jacobian
  ``d logits / d input`` of every training example (batches of 10) and prints the
  mean, std, max and min over all its singular values.  The paper argues with the
  *layer-wise* Jacobians ``J_l = D_l W_l``; for a linear network (their default
  ``mlp-7-linear``) ``J_l = W_l`` exactly, so we record all three: the input-output
  spectrum as the code measures it (on the first ``n`` training examples, not all
  60,000), per layer the singular values of ``C ⊙ W`` (the layer Jacobian of a linear
  network, its linear part otherwise), and for the MLPs (linear or tanh) the true
  ``D_l (C ⊙ W_l)`` of every example (``layer_jacobian_spectra``).

No config, no stages: functions of a model and its masks (torch only).
"""

from __future__ import annotations

import torch
from torch import nn

#: The SPP code's AI optimiser: plain SGD, constant learning rate, number of steps.
AI_LR = 0.1
AI_STEPS = 10_000

_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def layer_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every Conv and Linear weight of ``model`` by parameter name (the layers AI and the
    diagnostic look at), in module order."""
    return {f"{name}.weight" if name else "weight": m.weight for name, m in model.named_modules()
            if isinstance(m, _LAYERS)}


def as_matrix(w: torch.Tensor) -> torch.Tensor:
    """``[out, in * k * k]``: the layer as the linear map from one position's inputs to its
    outputs."""
    return w.reshape(w.shape[0], -1)


def residual(w: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """``||(C ⊙ W)(C ⊙ W)^T - I||_F`` (a 0-d tensor, differentiable in ``w``)."""
    m = as_matrix(w if mask is None else w * mask)
    return torch.linalg.matrix_norm(m @ m.T - torch.eye(m.shape[0], dtype=m.dtype, device=m.device))


def residuals(model: nn.Module, masks: dict) -> dict[str, float]:
    """The isometry residual of every layer weight, masked where ``masks`` has it."""
    with torch.no_grad():
        return {n: float(residual(w.double(), masks[n].double() if n in masks else None))
                for n, w in layer_weights(model).items()}


def approximate_isometry(model: nn.Module, masks: dict, steps: int = AI_STEPS, lr: float = AI_LR,
                         power: int = 1) -> dict[str, dict[str, float]]:
    """AI in place: ``steps`` steps of SGD at ``lr`` on ``sum_l r(W_l)^power``, the loss
    built on ``C ⊙ W`` so that only kept weights receive gradient; the pruned ones are
    zero afterwards.  Returns ``{layer: {"before": r, "after": r}}`` (residuals in
    float64).  The layers' terms share no weights, so the sum is ``steps`` independent
    descents with one learning rate, as in the code."""
    weights = layer_weights(model)
    before = residuals(model, masks)
    params = list(weights.values())
    consts = {n: (masks[n].to(w.dtype) if n in masks else None) for n, w in weights.items()}
    opt = torch.optim.SGD(params, lr=lr)
    for _ in range(int(steps)):
        opt.zero_grad(set_to_none=True)
        loss = sum(residual(w, consts[n]) ** power for n, w in weights.items())
        loss.backward()
        opt.step()
    with torch.no_grad():
        for n, w in weights.items():
            if consts[n] is not None:
                w.mul_(consts[n])
    after = residuals(model, masks)
    return {n: {"before": before[n], "after": after[n]} for n in weights}


def _stats(s: torch.Tensor) -> dict[str, float]:
    s = s.double().flatten()
    return {"mean": float(s.mean()), "std": float(s.std(unbiased=False)) if s.numel() > 1 else 0.0,
            "max": float(s.max()), "min": float(s.min())}


def layer_spectra(model: nn.Module, masks: dict | None = None) -> dict[str, dict[str, float]]:
    """Per layer: mean, std, max and min of the singular values of ``C ⊙ W`` (as a
    matrix), the layer-wise Jacobian of a linear network."""
    masks = masks or {}
    out = {}
    with torch.no_grad():
        for n, w in layer_weights(model).items():
            m = as_matrix(w.double() * (masks[n].double() if n in masks else 1.0))
            out[n] = _stats(torch.linalg.svdvals(m))
    return out


def io_jacobian_singular_values(model: nn.Module, x: torch.Tensor, batch_size: int = 100) -> torch.Tensor:
    """The singular values of ``d model(x_i) / d x_i`` for every example ``x_i`` of ``x``
    (``[N, min(classes, input size)]``), one backward pass per output unit and batch, as
    the code's ``batch_jacobian`` loops over the outputs.  The model is put in eval mode
    (BatchNorm uses its running statistics; the code runs it with ``is_train`` False)."""
    was_training = model.training
    model.eval()
    out = []
    try:
        for start in range(0, x.shape[0], batch_size):
            xb = x[start:start + batch_size].detach().clone().requires_grad_(True)
            y = model(xb)
            rows = []
            for k in range(y.shape[1]):
                (g,) = torch.autograd.grad(y[:, k].sum(), xb, retain_graph=k < y.shape[1] - 1)
                rows.append(g.reshape(g.shape[0], -1))
            jac = torch.stack(rows, dim=1)  # [b, classes, input size]
            out.append(torch.linalg.svdvals(jac.double()))
    finally:
        model.train(was_training)
    return torch.cat(out)


def _elementwise_derivative(out: torch.Tensor, h: torch.Tensor, generator: torch.Generator) -> torch.Tensor | None:
    """``d out / d h`` as a ``[B, n]`` diagonal when ``out`` is an elementwise function of
    ``h`` (same shape, and the vector-Jacobian product with a random vector is that vector
    times the diagonal), else None."""
    if out.shape != h.shape:
        return None
    if out is h:
        return torch.ones_like(h)
    (d,) = torch.autograd.grad(out.sum(), h, retain_graph=True)
    v = torch.randn(h.shape, generator=generator, dtype=h.dtype)
    (dv,) = torch.autograd.grad((out * v).sum(), h, retain_graph=True)
    if not torch.allclose(dv, d * v, rtol=1e-4, atol=1e-6):
        return None
    return d


def _scaled_rows_singular_values(d: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """The singular values of ``diag(d_i) W`` for every row ``d_i`` of ``d`` (``[B, k]``,
    k = min(out, in) each), as the square roots of the eigenvalues of the smaller Gram
    matrix, ``D (W W^T) D`` or ``W^T D^2 W``: one k x k symmetric eigenproblem per example
    instead of an out x in SVD (about 10 times faster for a 100 x 784 layer).  In float64
    a singular value is exact to about 1e-8 of the largest."""
    if w.shape[0] <= w.shape[1]:
        gram = d.unsqueeze(2) * (w @ w.T).unsqueeze(0) * d.unsqueeze(1)
    else:
        gram = w.T.unsqueeze(0) @ ((d * d).unsqueeze(2) * w.unsqueeze(0))
    return torch.linalg.eigvalsh(gram).clamp_min(0).sqrt()


def layer_jacobian_spectra(model: nn.Module, x: torch.Tensor, batch_size: int = 100) -> dict | None:
    """Per layer, the stats over the examples ``x`` of the singular values of the true
    layer-wise Jacobian ``J_l(x) = d x_l / d x_(l-1) = D_l W_l`` (the paper's Section 4;
    ``D_l = diag(phi'(h_l))``, ``h_l = W_l x_(l-1) + b_l`` the layer's pre-activation,
    ``x_l`` the next layer's input): one ``out x in`` matrix per example and layer, its
    singular values pooled over the examples.  ``D_l`` is read off autograd, so any
    elementwise activation works (tanh; identity gives ``J_l = W_l``, as
    ``layer_spectra``).  Defined for networks whose weight layers are all Linear, each
    feeding the next through an elementwise map (the MLPs); None otherwise: for a
    convolution the layer Jacobian is an operator on the whole feature map (e.g. VGG-16's
    first block on 32 x 32 inputs: 65,536 x 65,536 per example), out of reach, and the
    diagnostic keeps its linear part, ``layer_spectra``.  The SPP code measures no
    layer-wise Jacobian (its ``--check_jsv`` is input-output: ``io_jacobian_singular_values``)."""
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, _LAYERS)]
    if not layers or any(not isinstance(m, nn.Linear) for _, m in layers):
        return None
    gen = torch.Generator().manual_seed(0)  # (the elementwise check's probe only)
    was_training = model.training
    model.eval()
    values: dict[str, list] = {f"{n}.weight" if n else "weight": [] for n, _ in layers}
    try:
        for start in range(0, x.shape[0], batch_size):
            seen = []
            hooks = [m.register_forward_hook(lambda mod, inp, out: seen.append((mod, inp[0], out)))
                     for _, m in layers]
            try:
                with torch.enable_grad():
                    y = model(x[start:start + batch_size])
            finally:
                for hk in hooks:
                    hk.remove()
            if [mod for mod, _, _ in seen] != [m for _, m in layers]:
                return None  # a layer ran twice or out of module order: not a chain of layers
            for i, ((name, m), (_, _, h)) in enumerate(zip(layers, seen)):
                nxt = seen[i + 1][1] if i + 1 < len(seen) else y
                d = _elementwise_derivative(nxt, h, gen)
                if d is None:
                    return None
                values[f"{name}.weight" if name else "weight"].append(
                    _scaled_rows_singular_values(d.detach().double(), m.weight.detach().double()))
    finally:
        model.train(was_training)
    return {n: _stats(torch.cat(v)) for n, v in values.items()}


def spectrum(model: nn.Module, masks: dict | None, x: torch.Tensor, layer_jacobians: bool = True) -> dict:
    """The diagnostic at one point (dense, pruned or pruned + AI): ``{"io": stats of the
    input-output Jacobian's singular values over the examples ``x``, "layers": {layer:
    stats of C ⊙ W}, "layer_jacobians": {layer: stats of D_l (C ⊙ W_l) over ``x``}}``,
    the last for the MLPs only (``layer_jacobian_spectra``) and unless ``layer_jacobians``
    is False.  ``masks`` is applied to a copy; ``model`` is left as it is."""
    import copy

    net = copy.deepcopy(model)
    if masks:
        with torch.no_grad():
            params = dict(net.named_parameters())
            for n, m in masks.items():
                params[n].mul_(m.to(params[n].dtype))
    out = {"io": _stats(io_jacobian_singular_values(net, x)), "layers": layer_spectra(net, masks)}
    jac = layer_jacobian_spectra(net, x) if layer_jacobians else None
    if jac is not None:
        out["layer_jacobians"] = jac
    return out
