"""Weight initialisation schemes, applied after the network is built from the seed.

``pytorch_default`` keeps PyTorch's layer reset (weights U(-sqrt(k), sqrt(k)) with
k = 1/fan_in, the reproduction study's default).  The others re-draw the weights of
Conv and Linear layers and zero their biases; ``xavier_normal`` is the variance-scaling
(Glorot) initialisation the SNIP paper (Lee et al., ICLR 2019) prescribes.  The schemes
and their descriptions are entries of ``prunelib.registry.INITS``.
"""

from __future__ import annotations

from torch import nn

from prunelib import registry

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


def apply(model: nn.Module, scheme: str) -> nn.Module:
    fn = registry.resolve(registry.get("init scheme", scheme).fn)
    if fn is not None:
        fn(model)
    return model
