import pytest
import torch

from prunelib import init_schemes, models


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


@pytest.mark.parametrize("scheme", init_schemes.SCHEMES)
def test_init_schemes_are_seeded(scheme):
    def make():
        torch.manual_seed(7)
        return init_schemes.apply(models.build("lenet300", 10, 1, 28), scheme)

    a, b = make(), make()
    for (n, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(p, q), n


def test_xavier_normal_has_glorot_variance_and_zero_bias():
    torch.manual_seed(0)
    m = init_schemes.apply(models.build("lenet300", 10, 1, 28), "xavier_normal")
    w = m.fc1.weight
    expected_std = (2.0 / (784 + 300)) ** 0.5
    assert abs(w.std().item() - expected_std) / expected_std < 0.02
    assert torch.count_nonzero(m.fc1.bias) == 0
