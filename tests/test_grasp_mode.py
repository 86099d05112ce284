"""GraSP scores with BatchNorm in train mode, as the authors' code does.

alecwangcq/GraSP, pruner/GraSP.py: ``net = copy.deepcopy(net)  # .eval()`` -- the eval
call is commented out and the freshly built network is in train mode, so BatchNorm
normalises with the scoring batch's statistics.  The reference below computes H g the
long way (a separate pass for g, then d(g_b . g)/dtheta), in train mode.
"""

import torch
import torch.nn.functional as F
from torch import nn

from prunelib.scorers import gradients, snip
from prunelib.scorers.grasp import GraspScorer


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
    w = list(params.values())
    g = [torch.zeros_like(p) for p in w]
    for x, y in batches:
        for acc, gi in zip(g, torch.autograd.grad(F.cross_entropy(net(x), y), w)):
            acc += gi / len(batches)
    hg = [torch.zeros_like(p) for p in w]
    for x, y in batches:
        gb = torch.autograd.grad(F.cross_entropy(net(x), y), w, create_graph=True)
        z = sum((a * b).sum() for a, b in zip(gb, g))
        for acc, h in zip(hg, torch.autograd.grad(z, w)):
            acc += h / len(batches)
    return {n: p.detach() * h for (n, p), h in zip(params.items(), hg)}


def test_grasp_scores_in_train_mode_with_one_or_several_batches():
    for batches in ([data()], [data(8, 1), data(8, 2)]):
        net = bn_net()
        params = {n: p for n, p in net.named_parameters() if n.endswith("weight") and p.dim() > 1}
        net.eval()   # whatever mode the caller left it in
        got = GraspScorer().score(net, params, batches, 0)
        want, eval_mode = ({n: v for n, v in reference(ref, {n: p for n, p in ref.named_parameters()
                                                             if n in params}, batches, train).items()}
                           for ref, train in ((bn_net(), True), (bn_net(), False)))
        for n in params:
            torch.testing.assert_close(got[n], want[n], rtol=1e-4, atol=1e-7)
        assert any(not torch.allclose(want[n], eval_mode[n], rtol=1e-2) for n in params)


def test_loss_gradients_lives_in_gradients_and_keeps_its_old_import():
    assert snip.loss_gradients is gradients.loss_gradients
