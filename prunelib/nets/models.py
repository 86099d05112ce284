"""The built-in networks (their facts: ``prunelib.catalogue.registry.ARCHS``).

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


class MLP400x3(nn.Module):
    """The lottery-ticket sanity-check MLP: 784-400-400-400-10 with ReLU (638,810
    parameters on MNIST)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, image_size: int = 28):
        super().__init__()
        self.input_shape = (in_channels, image_size, image_size)
        self.fc1 = nn.Linear(in_channels * image_size * image_size, 400)
        self.fc2 = nn.Linear(400, 400)
        self.fc3 = nn.Linear(400, 400)
        self.fc4 = nn.Linear(400, num_classes)

    def forward(self, x):
        x = torch.flatten(x, 1)
        for fc in (self.fc1, self.fc2, self.fc3):
            x = torch.relu(fc(x))
        return self.fc4(x)


class DeepMLP(nn.Module):
    """The signal-propagation paper's MLP family (``namhoonlee/spp-public``,
    ``spp/network.py``, ``MLP``): ``depth`` fully connected layers of ``width`` units,
    input -> width -> ... -> width -> classes, ``activation`` (identity or tanh) after every
    layer but the last.  Layers ``layers.0`` ... ``layers.<depth - 1>``."""

    def __init__(self, depth: int, width: int, activation: str, num_classes: int = 10, in_channels: int = 1,
                 image_size: int = 28):
        super().__init__()
        self.input_shape = (in_channels, image_size, image_size)
        self.activation = activation
        #: f(c x) = c f(x) for c > 0 (no tanh): what SynFlow's power-of-two rescaling needs
        #: (prunelib/methods/scorers/synflow.py scores a network that is not in float64).
        self.positively_homogeneous = activation != "tanh"
        sizes = [in_channels * image_size * image_size] + [width] * (depth - 1) + [num_classes]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes, sizes[1:]))

    def forward(self, x):
        x = torch.flatten(x, 1)
        for i, fc in enumerate(self.layers):
            x = fc(x)
            if i < len(self.layers) - 1 and self.activation == "tanh":  # (see positively_homogeneous)
                x = torch.tanh(x)
        return x


def mlp7_linear(num_classes: int = 10, in_channels: int = 1, image_size: int = 28) -> nn.Module:
    """``mlp-7-linear``, the SPP code's default network: 784-100x6-10, no nonlinearity."""
    return DeepMLP(7, 100, "linear", num_classes, in_channels, image_size)


def mlp7_tanh(num_classes: int = 10, in_channels: int = 1, image_size: int = 28) -> nn.Module:
    """``mlp-7-tanh``: the same with tanh after every hidden layer."""
    return DeepMLP(7, 100, "tanh", num_classes, in_channels, image_size)


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


class LeNet5Caffe(LeNet5):
    """LeNet-5-Caffe as the SNIP authors ran it (``namhoonlee/snip-public``,
    ``snip/network.py``): the same layers and 431,080 parameters as ``LeNet5``, but no
    nonlinearity after the two convolutions:

    Conv(1->20, 5x5), MaxPool 2, Conv(20->50, 5x5), MaxPool 2, Linear(800->500) ReLU,
    Linear(500->10).
    """

    def forward(self, x):
        x = torch.max_pool2d(self.conv1(x), 2)
        x = torch.max_pool2d(self.conv2(x), 2)
        return self.fc2(torch.relu(self.fc1(torch.flatten(x, 1))))


#: VGG-16's configuration "D" (Simonyan & Zisserman, ICLR 2015); "M" is a 2x2 max-pool.
VGG16_LAYERS = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class VGG16(nn.Module):
    """CIFAR VGG-16 with batch norm, as in the pruning literature (SNIP, GraSP, SynFlow).

    13 bias-free 3x3 convolutions (padding 1) in configuration D, each followed by
    BatchNorm2d and ReLU, five 2x2 max-pools, global average pooling and one
    Linear(512 -> classes): 14,724,042 parameters for 10 classes.  The convolutions have
    no bias because the batch norm right after them would cancel it.  Five pools need
    images of at least 32x32 pixels.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3, image_size: int = 32):
        super().__init__()
        if image_size < 32:
            raise ValueError(f"vgg16 needs images of at least 32x32 pixels (five 2x2 max-pools), got {image_size}")
        self.input_shape = (in_channels, image_size, image_size)
        layers: list[nn.Module] = []
        channels = in_channels
        for v in VGG16_LAYERS:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(channels, v, 3, padding=1, bias=False), nn.BatchNorm2d(v),
                           nn.ReLU()]  # not in place: scorers hook layer outputs
                channels = v
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x):
        x = self.features(x)
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return self.classifier(x)


class ShortcutA(nn.Module):
    """He et al.'s option A: identity, subsampled by 2 and zero-padded to the new channel
    count (no parameters).  ``x[..., ::2, ::2]`` has ceil(H/2) rows, the same as the
    stride-2, padding-1 3x3 convolution of the main path."""

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.stride, self.extra = stride, planes - in_planes

    def forward(self, x):
        if self.stride != 1:
            x = x[:, :, ::self.stride, ::self.stride]
        if self.extra:
            x = nn.functional.pad(x, (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))
        return x


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, plus the shortcut, then ReLU (He et al., CVPR 2016)."""

    def __init__(self, in_planes: int, planes: int, stride: int, shortcut: str):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        if stride == 1 and in_planes == planes:
            self.shortcut: nn.Module = nn.Identity()
        elif shortcut == "A":
            self.shortcut = ShortcutA(in_planes, planes, stride)
        else:  # option B: a projection only where the shape changes, without BN (as in the paper)
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False)

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


SHORTCUTS = ("A", "B")


class CifarResNet(nn.Module):
    """He et al.'s CIFAR ResNet (CVPR 2016, Sec. 4.2): depth = 6n + 2.

    3x3 conv 16 + BN + ReLU; three stages of n basic blocks with 16, 32, 64 channels
    (the first block of stages 2 and 3 has stride 2); global average pooling;
    Linear(64 -> classes).  Shortcut "A" (parameter-free) gives ResNet-20 269,722 and
    ResNet-56 853,018 parameters for 10 classes; "B" (1x1 projections) 272,282 and 855,578.
    """

    def __init__(self, depth: int, num_classes: int = 10, in_channels: int = 3, image_size: int = 32,
                 shortcut: str = "A"):
        super().__init__()
        if (depth - 2) % 6 or depth < 8:
            raise ValueError(f"a CIFAR ResNet has depth 6n + 2 (n >= 1), got {depth}")
        if shortcut not in SHORTCUTS:
            raise ValueError(f"unknown shortcut {shortcut!r}; allowed: {', '.join(SHORTCUTS)}")
        self.input_shape = (in_channels, image_size, image_size)
        self.depth, self.shortcut_type = depth, shortcut
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        stages, in_planes = [], 16
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            blocks = []
            for i in range(n):
                blocks.append(BasicBlock(in_planes, planes, stride if i == 0 else 1, shortcut))
                in_planes = planes
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return self.fc(x)


def _resnet(depth: int) -> Callable[..., nn.Module]:
    def builder(num_classes: int = 10, in_channels: int = 3, image_size: int = 32, shortcut: str = "A"):
        return CifarResNet(depth, num_classes, in_channels, image_size, shortcut)

    builder.__name__ = f"resnet{depth}"
    builder.__doc__ = f"ResNet-{depth} for CIFAR ({(depth - 2) // 6} blocks per stage); see CifarResNet."
    return builder


resnet20, resnet32, resnet56, resnet110 = (_resnet(d) for d in (20, 32, 56, 110))


def build(arch: str, num_classes: int, in_channels: int, image_size: int, **options) -> nn.Module:
    """Build ``arch`` (an entry of ``prunelib.catalogue.registry.ARCHS``); ``options`` (e.g.
    ``shortcut``) are passed on where the network takes them; ``bn_momentum`` and
    ``bn_eps`` are set on every BatchNorm layer."""
    from prunelib.catalogue import registry

    entry = registry.arch(arch)
    kw = {k: v for k, v in options.items() if k in entry.options}
    model = registry.resolve(entry.builder)(num_classes=num_classes, in_channels=in_channels,
                                             image_size=image_size, **kw)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            if "bn_momentum" in options:
                module.momentum = float(options["bn_momentum"])
            if "bn_eps" in options:
                module.eps = float(options["bn_eps"])
    return model


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
