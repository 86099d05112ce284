"""Weight initialisation schemes, applied after the network is built from the seed.

``pytorch_default`` keeps PyTorch's layer reset (weights U(-sqrt(k), sqrt(k)) with
k = 1/fan_in, the reproduction study's default).  The others re-draw the weights of
Conv and Linear layers and zero their biases; ``xavier_normal`` is the variance-scaling
(Glorot) initialisation the SNIP paper (Lee et al., ICLR 2019) prescribes.  The schemes
and their descriptions are entries of ``prunelib.catalogue.registry.INITS``.
"""

from __future__ import annotations

from torch import nn

from prunelib.catalogue import registry

_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def _redraw(model: nn.Module, draw) -> None:
    for module in model.modules():
        if isinstance(module, _LAYERS):
            draw(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def xavier_normal(model: nn.Module) -> None:
    _redraw(model, nn.init.xavier_normal_)


def xavier_uniform(model: nn.Module) -> None:
    _redraw(model, nn.init.xavier_uniform_)


def kaiming_normal(model: nn.Module) -> None:
    _redraw(model, lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"))


#: The std of a standard normal truncated to [-2, 2] (TF's correction for truncation).
_TRUNCATED_STD = 0.87962566103423978


def _tf_variance_scaling_(t) -> None:
    """TF 1.x ``variance_scaling_initializer()`` with its defaults (scale 1, mode fan_in,
    truncated normal): N(0, s^2) truncated at +-2 s, s = sqrt(1 / fan_in) / 0.8796, so
    the drawn values have variance 1 / fan_in.  fan_in as TF computes it from the shape:
    a 1-D tensor (a bias) counts its length; a Linear weight its in_features; a
    convolution's kernel in_channels x kernel area."""
    fan_in = t.shape[0] if t.dim() == 1 else t.shape[1] * (t[0, 0].numel() if t.dim() > 2 else 1)
    s = (1.0 / fan_in) ** 0.5 / _TRUNCATED_STD
    nn.init.trunc_normal_(t, mean=0.0, std=s, a=-2 * s, b=2 * s)


def variance_scaling(model: nn.Module) -> None:
    """The SNIP authors' initialiser (``namhoonlee/snip-public``, ``snip/network.py``:
    ``get_initializer('vs')`` = ``tf.variance_scaling_initializer()``) for the weights,
    with zero biases: their ``initializer_w_bp`` defaults to ``vs`` and
    ``initializer_b_bp`` to ``zeros`` (``snip/main.py`` as it is now).  With zero biases a
    bias's SNIP score |g * b| is 0, so when ``prune.include_bias`` is on, as in their code,
    every bias ranks last and is pruned.

    The code disagrees with itself here: its first release (commit b00bef0, 2019-06-11)
    defaulted ``initializer_b_bp`` to ``vs``, and commit f028496 (2019-06-26, "Make the
    default initialization for bias terms to be zero") changed it; the paper (2018) says
    nothing of biases.  We follow the code as it is now; ``variance_scaling_with_biases``
    is the first release's draw, for the comparison."""
    _redraw(model, _tf_variance_scaling_)


def variance_scaling_with_biases(model: nn.Module) -> None:
    """The SNIP code's first release (``snip/main.py`` at b00bef0: ``initializer_w_bp`` and
    ``initializer_b_bp`` both ``vs``): weights *and* biases from TF's
    ``variance_scaling_initializer()``, a bias's fan_in being its length (TF's
    ``_compute_fans`` of a 1-D shape).  Its biases score |g * b| > 0, so they compete with
    the weights for the kept count instead of all being pruned.  Fresh weights after
    pruning still start with zero biases (``initializer_b_ap = zeros`` in both releases;
    ``init.after_pruning: redraw`` zeroes them), trained where the mask kept them.

    The weights are drawn first, exactly as ``variance_scaling`` draws them, and the
    biases after, so that for one seed the two schemes differ in the biases only (a
    comparison of the two is paired by seed)."""
    variance_scaling(model)
    for module in model.modules():
        if isinstance(module, _LAYERS) and module.bias is not None:
            _tf_variance_scaling_(module.bias)


def apply(model: nn.Module, scheme: str) -> nn.Module:
    fn = registry.resolve(registry.get("init scheme", scheme).fn)
    if fn is not None:
        fn(model)
    return model


# --- the signal-propagation paper's initialisations (Lee, Ajanthan, Gould & Torr, ICLR 2020) ---
#
# Their code (``namhoonlee/spp-public``, ``spp/model.py``, ``reinitialize``) defaults to
# ``init_w = {'kind': 'orthogonal'}`` and ``init_b = {'kind': 'zeros'}`` (``spp/main.py``),
# with gain 1.  Fully connected weights get TF's ``orthogonal_initializer``; a 4-D kernel
# gets ``conv_orthogonal``, TF's ``ConvolutionOrthogonal2D`` (the block-orthogonal
# construction of Xiao et al., ICML 2018), *not* the delta-orthogonal kernel, so no
# delta-orthogonal scheme is added here.


def _orthogonal_matrix(n: int, generator=None):
    """An n x n orthogonal matrix, Haar-distributed: Q of the QR of a standard normal
    matrix with the signs of R's diagonal folded into Q's columns."""
    import torch

    a = torch.randn(n, n, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(a)
    return q * torch.sign(torch.diagonal(r))


def _symmetric_projection(n: int):
    """A random symmetric projection P = P^T = P^2: the span of the columns of a random
    orthogonal matrix that survive a fair coin each."""
    import torch

    q = _orthogonal_matrix(n)
    c = q * (torch.randn(n, dtype=torch.float64) > 0).to(q.dtype)
    return c @ c.T


def _block_orth(p1, p2) -> dict:
    """The 2 x 2 kernel [[P1 P2, P1 (I - P2)], [(I - P1) P2, (I - P1)(I - P2)]], an
    orthogonal convolution (its taps sum to an orthogonal operator under periodic padding)."""
    import torch

    eye = torch.eye(p1.shape[0], dtype=p1.dtype)
    return {(0, 0): p1 @ p2, (0, 1): p1 @ (eye - p2), (1, 0): (eye - p1) @ p2, (1, 1): (eye - p1) @ (eye - p2)}


def _matrix_conv(m1: dict, m2: dict) -> dict:
    """The convolution of two kernels whose taps are n x n matrices (k x k and l x l taps
    give k + l - 1 squared); the composition of two orthogonal convolutions is one."""
    import torch

    k = max(i for i, _ in m1) + 1
    ll = max(i for i, _ in m2) + 1
    n = m1[0, 0].shape[0]
    out = {}
    for i in range(k + ll - 1):
        for j in range(k + ll - 1):
            acc = torch.zeros(n, n, dtype=m1[0, 0].dtype)
            for a in range(min(k, i + 1)):
                for b in range(min(k, j + 1)):
                    if i - a < ll and j - b < ll:
                        acc = acc + m1[a, b] @ m2[i - a, j - b]
            out[i, j] = acc
    return out


def conv_orthogonal_(weight) -> None:
    """The block-orthogonal kernel of the SPP code's ``conv_orthogonal`` (TF's
    ``ConvolutionOrthogonal2D``, gain 1) drawn into a PyTorch ``[out, in, k, k]`` weight.

    Tap (i, j) of the kernel is the ``in x out`` matrix ``H[:in] P_(i,j)``, H a random
    orthogonal ``out x out`` matrix and P the ``k x k`` product (matrix convolution) of
    ``k - 1`` random 2 x 2 block-orthogonal kernels; ``weight[o, c, i, j]`` is its entry
    ``(c, o)``.  Under periodic padding the convolution is then an isometry from the
    ``in`` to the ``out`` channels (tests/test_sigprop.py).  Like their code it needs a
    square kernel and ``in <= out``."""
    import torch

    out_c, in_c, kh, kw = weight.shape
    if kh != kw:
        raise ValueError(f"conv_orthogonal needs a square kernel, got {kh}x{kw}")
    if in_c > out_c:
        raise ValueError(f"conv_orthogonal needs in_channels <= out_channels, got {in_c} > {out_c}")
    orth = _orthogonal_matrix(out_c)[:in_c, :]
    if kh == 1:
        taps = {(0, 0): orth}
    else:
        p = _block_orth(_symmetric_projection(out_c), _symmetric_projection(out_c))
        for _ in range(kh - 2):
            p = _matrix_conv(p, _block_orth(_symmetric_projection(out_c), _symmetric_projection(out_c)))
        taps = {ij: orth @ m for ij, m in p.items()}
    kernel = torch.empty(out_c, in_c, kh, kw, dtype=torch.float64)
    for (i, j), m in taps.items():
        kernel[:, :, i, j] = m.T
    with torch.no_grad():
        weight.copy_(kernel.to(weight.dtype))


def orthogonal(model: nn.Module) -> None:
    """The SPP code's ``orthogonal`` initialiser, gain 1, zero biases: a Linear weight is
    a random matrix with orthonormal rows or columns (whichever are fewer: QR of a
    Gaussian, R's signs folded in, as TF's ``orthogonal_initializer``; PyTorch's
    ``orthogonal_`` is the same law); a 2-D convolution gets ``conv_orthogonal_``."""
    def draw(w):
        if w.dim() == 4:
            conv_orthogonal_(w)
        else:
            nn.init.orthogonal_(w, gain=1.0)

    _redraw(model, draw)
