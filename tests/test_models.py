import pytest
import torch

from prunelib.nets import init_schemes

from prunelib.nets import models

from prunelib.catalogue import registry


@pytest.mark.parametrize("arch, expected", [("lenet300", 266_610), ("lenet5", 431_080)])
def test_parameter_counts(arch, expected):
    model = models.build(arch, num_classes=10, in_channels=1, image_size=28)
    assert sum(p.numel() for p in model.parameters()) == expected


def test_lenet5_layers_match_the_study():
    m = models.build("lenet5", 10, 1, 28)
    assert (m.conv1.in_channels, m.conv1.out_channels, m.conv1.kernel_size) == (1, 20, (5, 5))
    assert (m.conv2.in_channels, m.conv2.out_channels, m.conv2.kernel_size) == (20, 50, (5, 5))
    assert (m.fc1.in_features, m.fc1.out_features) == (800, 500)
    assert (m.fc2.in_features, m.fc2.out_features) == (500, 10)
    assert m(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


def test_prunable_names_default_and_with_bias():
    m = models.build("lenet5", 10, 1, 28)
    assert models.prunable_names(m) == ["conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight"]
    with_bias = models.prunable_names(m, include_bias=True)
    assert with_bias == ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias",
                         "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    n_prunable = sum(dict(m.named_parameters())[n].numel() for n in models.prunable_names(m))
    assert n_prunable == 431_080 - (20 + 50 + 500 + 10)


def test_prunable_norm_parameters_only_when_asked():
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(),
                              torch.nn.Linear(4 * 26 * 26, 2))
    assert models.prunable_names(net) == ["0.weight", "3.weight"]
    assert models.prunable_names(net, include_norm=True) == ["0.weight", "1.weight", "1.bias", "3.weight"]


def test_unknown_arch_names_allowed_values():
    with pytest.raises(ValueError, match="allowed: lenet300, lenet5"):
        models.build("vgg99", 10, 1, 28)


# Expected fc1 weight law per scheme (fan_in 784, fan_out 300): (distribution, std).
# pytorch_default is U(-1/sqrt(784), 1/sqrt(784)); the others zero the biases but those of _DRAW_BIASES.
_SCHEME_LAW = {
    "pytorch_default": ("uniform", (1 / 784) ** 0.5 / 3 ** 0.5),
    "xavier_normal": ("normal", (2.0 / (784 + 300)) ** 0.5),
    "xavier_uniform": ("uniform", (2.0 / (784 + 300)) ** 0.5),
    "kaiming_normal": ("normal", (2.0 / 784) ** 0.5),
    # TF's variance scaling: N(0, s^2) truncated at +-2 s, std 1/sqrt(fan_in) after truncation
    "variance_scaling": ("normal", (1 / 784) ** 0.5),
    "variance_scaling_with_biases": ("normal", (1 / 784) ** 0.5),
    # orthonormal rows (300 of length 784): ||W||_F^2 = 300, so std 1/sqrt(784); entries
    # nearly Gaussian (the exact law: tests/test_sigprop.py, singular values all 1)
    "orthogonal": ("normal", (1 / 784) ** 0.5),
}
#: Schemes that draw the biases too (the others zero them).
_DRAW_BIASES = ("pytorch_default", "variance_scaling_with_biases")  # (variance_scaling: zero biases, snip/main.py)


def test_every_init_scheme_of_the_registry_has_its_law_tested():
    assert set(_SCHEME_LAW) == set(registry.INITS)


@pytest.mark.parametrize("scheme", list(_SCHEME_LAW))
def test_init_schemes_are_seeded_and_draw_their_own_law(scheme):
    def make(seed):
        torch.manual_seed(seed)
        return init_schemes.apply(models.build("lenet300", 10, 1, 28), scheme)

    a, b, c = make(7), make(7), make(8)
    for (n, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(p, q), n
    assert not torch.equal(a.fc1.weight, c.fc1.weight)  # the draw follows the seed
    # a scheme that did nothing would leave PyTorch's default law, which differs from
    # every other scheme's in std or shape (uniform: |w| <= sqrt(3) std; normal: tails)
    law, std = _SCHEME_LAW[scheme]
    w = a.fc1.weight.detach().double()
    assert abs(w.std().item() - std) / std < 0.02, (scheme, w.std().item(), std)
    bound = 3 ** 0.5 * std
    if law == "uniform":
        assert w.abs().max().item() <= bound * (1 + 1e-6)
    else:
        assert (w.abs() > bound).double().mean().item() > 0.05  # N(0, s): P(|w| > 1.73 s) = 8%
    if scheme not in _DRAW_BIASES:
        assert torch.count_nonzero(a.fc1.bias) == 0
    else:
        assert torch.count_nonzero(a.fc1.bias) == 300


def test_xavier_normal_has_glorot_variance_and_zero_bias():
    torch.manual_seed(0)
    m = init_schemes.apply(models.build("lenet300", 10, 1, 28), "xavier_normal")
    w = m.fc1.weight
    expected_std = (2.0 / (784 + 300)) ** 0.5
    assert abs(w.std().item() - expected_std) / expected_std < 0.02
    assert torch.count_nonzero(m.fc1.bias) == 0


@pytest.mark.parametrize("arch, shortcut, expected", [
    ("vgg16", None, 14_724_042),
    ("resnet20", "A", 269_722), ("resnet56", "A", 853_018),
    ("resnet20", "B", 272_282), ("resnet56", "B", 855_578),
])
def test_cifar_parameter_counts(arch, shortcut, expected):
    opts = {"shortcut": shortcut} if shortcut else {}
    model = models.build(arch, num_classes=10, in_channels=3, image_size=32, **opts)
    assert sum(p.numel() for p in model.parameters()) == expected
    assert model.input_shape == (3, 32, 32)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_vgg16_and_resnet_layers():
    vgg = models.build("vgg16", 100, 3, 32)
    convs = [m for m in vgg.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 13 and all(c.bias is None and c.kernel_size == (3, 3) for c in convs)
    assert [c.out_channels for c in convs] == [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    assert (vgg.classifier.in_features, vgg.classifier.out_features) == (512, 100)
    for depth in (20, 32, 56, 110):
        net = models.build(f"resnet{depth}", 10, 3, 32)
        convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
        assert len(convs) + 1 == depth   # conv layers + the final Linear
        assert len(net.layer1) == (depth - 2) // 6
    b = models.build("resnet20", 10, 3, 32, shortcut="B")
    assert isinstance(b.layer2[0].shortcut, torch.nn.Conv2d) and b.layer2[0].shortcut.kernel_size == (1, 1)
    assert not isinstance(b.layer2[1].shortcut, torch.nn.Conv2d)   # identity where the shape is kept


def test_option_a_shortcut_is_subsampled_zero_padded_identity():
    net = models.build("resnet20", 10, 3, 32)
    x = torch.randn(2, 16, 32, 32)
    y = net.layer2[0].shortcut(x)
    assert y.shape == (2, 32, 16, 16)
    assert torch.equal(y[:, 8:24], x[:, :, ::2, ::2]) and not y[:, :8].any() and not y[:, 24:].any()


def test_options_reach_only_networks_that_take_them():
    assert models.build("lenet5", 10, 1, 28, shortcut="B") is not None   # ignored, no error
    with pytest.raises(ValueError, match="allowed: A, B"):
        models.build("resnet20", 10, 3, 32, shortcut="C")


@pytest.mark.parametrize("arch", ["lenet300", "lenet5", "vgg16", "resnet20"])
def test_minimum_image_sizes_in_the_registry_match_the_networks(arch):
    need = registry.arch(arch).min_image_size
    for channels in (1, 3):  # every network takes any channel count
        net = models.build(arch, 10, channels, max(need, 8))
        assert net(torch.zeros(2, channels, max(need, 8), max(need, 8))).shape == (2, 10)
    if need > 1:
        with pytest.raises(ValueError, match="at least"):
            models.build(arch, 10, 3, need - 1)
