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
    ``initializer_b_bp`` to ``zeros`` (``snip/main.py``).  (Issue 13 read the code as
    drawing the biases with ``vs`` too; its defaults say zeros, and we follow the code.)
    With zero biases a bias's SNIP score |g * b| is 0, so when ``prune.include_bias`` is
    on, as in their code, every bias ranks last and is pruned."""
    _redraw(model, _tf_variance_scaling_)


def apply(model: nn.Module, scheme: str) -> nn.Module:
    fn = registry.resolve(registry.get("init scheme", scheme).fn)
    if fn is not None:
        fn(model)
    return model
