"""Weight initialisation schemes, applied after the network is built from the seed.

``pytorch_default`` keeps PyTorch's layer reset (weights U(-sqrt(k), sqrt(k)) with
k = 1/fan_in, the reproduction study's default).  The others re-draw the weights of
Conv and Linear layers and zero their biases; ``xavier_normal`` is the variance-scaling
(Glorot) initialisation the SNIP paper (Lee et al., ICLR 2019) prescribes.
"""

from __future__ import annotations

from torch import nn

SCHEMES = ("pytorch_default", "xavier_normal", "xavier_uniform", "kaiming_normal")


def apply(model: nn.Module, scheme: str) -> nn.Module:
    if scheme not in SCHEMES:
        raise ValueError(f"unknown init scheme {scheme!r}; allowed: {', '.join(SCHEMES)}")
    if scheme == "pytorch_default":
        return model
    for module in model.modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
            if scheme == "xavier_normal":
                nn.init.xavier_normal_(module.weight)
            elif scheme == "xavier_uniform":
                nn.init.xavier_uniform_(module.weight)
            else:
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return model
