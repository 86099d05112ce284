"""SynFlow in float32 on the power-of-two rescaled network ranks as float64 does.

The rescaling multiplies every score of a round by one constant K = 2^log2_scale
(prunelib/methods/scorers/synflow.py), so on every built-in network the rescaled float32 scores
times 2^-log2_scale must equal the float64 scores up to float32 rounding, on the dense
network and on a pruned one, and the masks must agree except for near ties at the
threshold.  Where float32 without rescaling overflows (ResNet-56, ResNet-110), the
rescaled scores stay finite.
"""

import copy

import pytest
import torch
from torch import nn

from prunelib.nets import models

from prunelib.catalogue import registry
from prunelib.methods.masking import kept_count
from prunelib.methods.scorers.synflow import SynflowScorer, _LinearizedNet, chain_modules

# every built-in network, at the smallest input it accepts (VGG-16 needs 32x32)
NETWORKS = {
    "lenet300": (1, 28, {}), "lenet5": (1, 28, {}), "lenet5_caffe": (1, 28, {}), "mlp400x3": (1, 28, {}),
    "mlp7_linear": (1, 28, {}), "mlp7_tanh": (1, 28, {}),
    "vgg16": (3, 32, {}),
    "resnet20": (3, 8, {}), "resnet32": (3, 8, {}), "resnet56": (3, 8, {}), "resnet110": (3, 8, {}),
    "resnet20-B": (3, 8, {"shortcut": "B"}),
}
assert {k.split("-")[0] for k in NETWORKS} == set(registry.ARCHS)


def build(key: str, perturb_shifts: bool = False) -> nn.Module:
    arch = key.split("-")[0]
    channels, size, options = NETWORKS[key]
    torch.manual_seed(0)
    model = models.build(arch, 10, channels, size, **options)
    if perturb_shifts:  # nonzero BatchNorm shifts and running statistics, as after training
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.bias.uniform_(-0.5, 0.5)
                    m.weight.uniform_(0.5, 1.5)
                    m.running_mean.uniform_(-0.2, 0.2)
                    m.running_var.uniform_(0.5, 2.0)
    return model


def scaled_back(net: _LinearizedNet) -> torch.Tensor:
    return net.score_flat_now().to(torch.float64) * 2.0 ** -net.log2_scale


def assert_same_scores(model: nn.Module, prune_every: int) -> None:
    names = models.prunable_names(model)
    ref = _LinearizedNet(model, names, "float64")
    fast = _LinearizedNet(model, names, "float32-rescaled")
    s64, s32 = ref.score_flat_now().clone(), scaled_back(fast)
    assert bool(torch.isfinite(s64).all()) and bool(torch.isfinite(s32).all())
    # dense network, then the same weights pruned from both: activations shrink, the
    # rescaling must follow
    gone = torch.arange(0, s64.numel(), prune_every)
    ref.remove(gone)
    fast.remove(gone)
    for a, b in ((s64, s32), (ref.score_flat_now().clone(), scaled_back(fast))):
        assert float(a.max()) > 0
        big = a > a.max() * 1e-30   # (pruned weights score 0 in both)
        rel = ((a - b).abs()[big] / a[big]).max()
        assert float(rel) < 1e-4, float(rel)
        assert torch.equal(a == 0, b == 0)




def test_rescaling_covers_biases_and_batchnorm_shifts():
    assert_same_scores(build("resnet20", perturb_shifts=True), prune_every=2)
    assert_same_scores(build("lenet5"), prune_every=2)


def test_the_chain_is_the_root_and_its_sequential_containers_only():
    model = build("resnet20")
    chain = chain_modules(model)
    blocks = [m for m in model.modules() if isinstance(m, models.BasicBlock)]
    assert all(b in chain for b in blocks)              # a residual block is one step
    inner = {m for b in blocks for m in b.modules() if m is not b}
    assert not inner & set(chain)                        # nothing inside it is rescaled alone
    assert chain[0] is model.conv1 and chain[-1] is model.fc


@pytest.mark.parametrize("key", list(NETWORKS))
def test_rescaled_float32_ranks_as_float64_on_every_builtin_network(key):
    """Scores: float64 scores times one constant (dense, and with a third pruned);
    masks of a 2-round run at r = 16: the same, up to near ties."""
    model = build(key)
    assert_same_scores(model, prune_every=3)
    names = models.prunable_names(model)
    named = dict(model.named_parameters())
    params = {n: named[n] for n in names}
    m64, rows64, _ = SynflowScorer(rounds=2, precision="float64").prune(model, params, 16, "global", 0,
                                                                        ranking=False)
    m32, rows32, rank = SynflowScorer(rounds=2).prune(model, params, 16, "global", 0, ranking=False)
    assert rank is None
    n = sum(p.numel() for p in params.values())
    kept = kept_count(n, 16)
    assert sum(r["kept"] for r in rows32) == kept == sum(int(m.sum()) for m in m32.values())
    differ = sum(int((m64[k] != m32[k]).sum()) for k in names)
    # float32 rounding (1e-6 relative) may swap weights that close to a threshold: a
    # handful among tens of thousands, never a systematic shift
    assert differ <= max(2, kept // 1000), (differ, kept)


@pytest.mark.parametrize("key", ["resnet56", "resnet110"])
def test_rescaled_scores_are_finite_where_plain_float32_overflows(key):
    channels, size, _ = NETWORKS[key]
    torch.manual_seed(0)
    model = models.build(key, 10, channels, 32)
    plain = copy.deepcopy(model).eval()
    with torch.no_grad():
        for t in list(plain.parameters()) + list(plain.buffers()):
            if t.is_floating_point():
                t.abs_()
        out = plain(torch.ones(1, channels, 32, 32))
    assert not bool(torch.isfinite(out).all())          # the authors' float32 computation overflows
    net = _LinearizedNet(model, models.prunable_names(model), "float32-rescaled")
    s = net.score_flat_now()
    assert bool(torch.isfinite(s).all()) and bool((s > 0).any())


def test_prunable_biases_fall_back_to_float64():
    torch.manual_seed(0)
    model = models.build("lenet300", 10, 1, 28)
    names = models.prunable_names(model, include_bias=True)
    named = dict(model.named_parameters())
    params = {n: named[n] for n in names}
    with pytest.raises(ValueError, match="fc1.bias"):
        _LinearizedNet(model, names, "float32-rescaled")
    masks, rows, _ = SynflowScorer(rounds=2).prune(model, params, 4, "global", 0)
    assert sum(r["kept"] for r in rows) == kept_count(sum(p.numel() for p in params.values()), 4)


def test_unknown_precision_is_rejected_with_the_allowed_values():
    with pytest.raises(ValueError, match=r"precision = 'float16' is not allowed; allowed: float32-rescaled, float64"):
        SynflowScorer(precision="float16")
