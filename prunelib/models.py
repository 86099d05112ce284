"""Network registry.

Every builder takes ``(num_classes, in_channels, image_size)`` so that the dataset,
not the network, decides the input and output shapes.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn


class LeNet300(nn.Module):
    """LeCun et al.'s LeNet-300-100 MLP: 784-300-100-10 (266,610 parameters on MNIST)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, image_size: int = 28):
        super().__init__()
        self.input_shape = (in_channels, image_size, image_size)
        self.fc1 = nn.Linear(in_channels * image_size * image_size, 300)
        self.fc2 = nn.Linear(300, 100)
        self.fc3 = nn.Linear(100, num_classes)

    def forward(self, x):
        x = torch.flatten(x, 1)
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        return self.fc3(x)


class LeNet5(nn.Module):
    """The reproduction study's CNN (its Table 4.1; 431,080 parameters on MNIST).

    Conv(1->20, 5x5) ReLU, MaxPool 2, Conv(20->50, 5x5) ReLU, MaxPool 2,
    Linear(800->500) ReLU, Linear(500->10).
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, image_size: int = 28):
        super().__init__()
        self.input_shape = (in_channels, image_size, image_size)
        self.conv1 = nn.Conv2d(in_channels, 20, 5)
        self.conv2 = nn.Conv2d(20, 50, 5)
        side = ((image_size - 4) // 2 - 4) // 2
        if side < 1:
            raise ValueError(f"lenet5 needs images of at least 16x16 pixels, got {image_size}")
        self.fc1 = nn.Linear(50 * side * side, 500)
        self.fc2 = nn.Linear(500, num_classes)

    def forward(self, x):
        x = torch.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        return self.fc2(torch.relu(self.fc1(x)))


MODELS: dict[str, Callable[..., nn.Module]] = {
    "lenet300": LeNet300,
    "lenet5": LeNet5,
}


def build(arch: str, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    try:
        builder = MODELS[arch]
    except KeyError:
        raise ValueError(f"unknown arch {arch!r}; allowed: {', '.join(MODELS)}") from None
    return builder(num_classes=num_classes, in_channels=in_channels, image_size=image_size)


_NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def prunable_names(model: nn.Module, include_bias: bool = False, include_norm: bool = False) -> list[str]:
    """Names of the parameters that pruning may remove, in ``named_parameters`` order.

    Conv and Linear weights always; their biases with ``include_bias``; the affine
    parameters of normalisation layers with ``include_norm``.
    """
    names = []
    for mod_name, module in model.named_modules():
        prefix = f"{mod_name}." if mod_name else ""
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
            names.append(prefix + "weight")
            if include_bias and module.bias is not None:
                names.append(prefix + "bias")
        elif include_norm and isinstance(module, _NORM_TYPES):
            names += [prefix + n for n, p in module.named_parameters(recurse=False)]
    order = {n: i for i, (n, _) in enumerate(model.named_parameters())}
    return sorted(names, key=order.__getitem__)
