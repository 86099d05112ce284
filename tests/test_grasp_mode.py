"""GraSP scores with BatchNorm in train mode, as the authors' code does.

alecwangcq/GraSP, pruner/GraSP.py: ``net = copy.deepcopy(net)  # .eval()`` -- the eval
call is commented out and the freshly built network is in train mode, so BatchNorm
normalises with the scoring batch's statistics (each half's: the code's loop scores the
first N // 2 examples and the rest separately).  The reference below computes H g the
long way, in train mode: a separate pass for g = sum of the halves' gradients, then the
sum of d(g_h . g)/dtheta over the halves, the logits divided by T.  It is taken at the
network's own weights, so the scorer runs with reinit_linear false (the Linear
re-initialisation is tests/test_grasp_protocol.py's).
"""

import torch
from torch import nn

from conftest import grasp_long_way
from prunelib.methods.scorers import gradients, snip
from prunelib.methods.scorers.grasp import GraspScorer

T = 200.0


def bn_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 4, 3, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.Conv2d(4, 3, 3, bias=False), nn.BatchNorm2d(3), nn.ReLU(),
                         nn.Flatten(), nn.Linear(3 * 2 * 2, 5))


def data(n=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 2, 6, 6, generator=g), torch.randint(0, 5, (n,), generator=g)


def reference(net, params, batches, train: bool):
    net.train(train)
    halves = [(x[p], y[p]) for x, y in batches for p in (slice(0, len(y) // 2), slice(len(y) // 2, None))]
    return grasp_long_way(net, params, halves, T)


def test_grasp_scores_in_train_mode_with_one_or_several_batches():
    for batches in ([data()], [data(8, 1), data(8, 2)]):
        net = bn_net()
        params = {n: p for n, p in net.named_parameters() if n.endswith("weight") and p.dim() > 1}
        net.eval()   # whatever mode the caller left it in
        got = GraspScorer(temperature=T, reinit_linear=False).score(net, params, batches, 0)
        assert not net.training  # scored on a copy: the caller's model keeps its mode
        want, eval_mode = ({n: v for n, v in reference(ref, {n: p for n, p in ref.named_parameters()
                                                             if n in params}, batches, train).items()}
                           for ref, train in ((bn_net(), True), (bn_net(), False)))
        scale = max(float(v.abs().max()) for v in want.values())  # ~1/T^3: float32 rounding is relative
        for n in params:
            torch.testing.assert_close(got[n], want[n], rtol=1e-4, atol=1e-6 * scale)
        assert any(not torch.allclose(want[n], eval_mode[n], rtol=1e-2) for n in params)


def test_loss_gradients_lives_in_gradients_and_keeps_its_old_import():
    assert snip.loss_gradients is gradients.loss_gradients
