"""GraSP: gradient signal preservation (Wang, Zhang & Grosse, ICLR 2020, Eq. 8), as the
authors' code runs it (alecwangcq/GraSP, ``pruner/GraSP.py``).

With g = dL/dtheta and H the Hessian of the loss on the scoring data,

    S(-theta) = -theta * (H g)

and GraSP *removes the weights with the largest S(-theta)* (removing them reduces the
gradient norm the least, or increases it).  In our "higher = keep" convention the score
is therefore

    keep score = -S(-theta) = theta * (H g)

so the weights removed are exactly those with the largest -theta * Hg.  (Public
re-implementations have flipped this sign, see the 2022 reproduction study;
``tests/test_formulas.py`` checks the direction on a tiny network.)  The scores are
signed: GraSP ranks the raw values, not their magnitudes.

What is differentiated (the code's protocol; Eq. 8 is written for a plain loss L):

* **Temperature** (setting ``temperature``, default T = 200, the code's ``GraSP(T=200)``):
  the loss is the cross-entropy of the logits divided by T, in both passes,
  L_h = CE(f(x_h; theta) / T, y_h).  T = 1 is the plain loss.
* **Halves, summed**: each scoring batch of N examples is split into its first N // 2
  examples and the rest, as the code's loop does with ``GraSP_fetch_data``'s batch.  Our
  class-balanced scoring batch is ordered class by class like theirs, so the first half
  holds the first classes.  Over all halves h of all scoring batches (the code's
  ``num_iters`` batches; one by default)

      g  = sum_h dL_h/dtheta                                  (a sum, not a mean)
      Hg = sum_h d/dtheta (dL_h/dtheta . stopgrad(g))
      score = theta * Hg

  Without BatchNorm and with an even N this is 4x the Hg of the whole batch's mean loss
  (g and the summed Hessian both double: the same ranking), but in train mode (below)
  each half is normalised with its own statistics, so the halves are another function
  of the weights than the whole batch.  A half with no examples (a batch of one) is
  skipped.
* **Linear re-initialisation** (setting ``reinit_linear``, default true, the code's
  ``GraSP(reinit=True)``): the network is scored as a deep copy whose ``nn.Linear``
  weights are redrawn from Xavier-normal (std = sqrt(2 / (fan_in + fan_out))); the
  scores are theta * Hg *at the redrawn weights*, while the network that is masked and
  trained keeps its own.  The draw comes from the seed's named stream
  ``grasp-reinit-linear``, in module order, on the CPU in the weight's dtype and then
  copied to the device, so a seed gives the same scores on every run and device (the
  code draws from torch's global RNG).  On an all-Linear network (an MLP) the scores
  then do not depend on the initial weights at all, only on the biases and the data.
  The issue is silent on this; we follow the code.

The model passed in is never modified: scoring always runs on a deep copy (the code's
``net = copy.deepcopy(net)``), so its weights, BatchNorm running statistics and mode are
left as they were.  The derivatives are taken with respect to the prunable parameters
(by default the Conv and Linear weights, the code's ``weights``; with
``prune.include_bias`` also the biases, which the code never scores).

BatchNorm mode: train.  The authors' code scores its copy without switching modes (its
``.eval()`` is commented out: ``net = copy.deepcopy(net)  # .eval()``), so BatchNorm
normalises with each half's own statistics, and the Hessian includes the dependence of
those statistics on the weights.  Scoring in eval mode (Synaptic-Flow's default) is a
different criterion on BatchNorm networks, not a faster way to compute this one;
``tests/test_grasp_mode.py`` pins the mode.

Scoring data: the code draws 10 examples per class (``configs/cifar10/*/GraSP_*.json``:
``samples_per_class: 10``), so ``score.per_method.grasp`` defaults to a class-balanced
batch of 100 (10 per class for 10 classes).  The code takes the first examples of each
class from its shuffled loader; ours are drawn per class with the seed.

Where we differ from the code in selection (``prunelib.methods.masking``, shared by all
methods): the code divides the scores by |sum of scores| (a positive constant: no change
to the ranking; we store the raw scores), takes the threshold t as the
``num_params_to_rm``-th largest of -theta * Hg and keeps the weights with a score
``<= t``, which removes one weight fewer than requested and keeps every weight tied at
t; our masking removes exactly the requested count and records (and draws with the
seed) any ties at the threshold.  The code's removal count is ``int(N * (1 - keep_ratio))``
(truncated, then one fewer as above); ours keeps round(N / r) (``masking.kept_count``).

With one scoring batch (the default) g and Hg come from one forward pass per half: both
halves' gradients are taken with their graphs kept, summed into g, and one double
backward of sum_h dL_h/dtheta . stopgrad(g) gives Hg.  With several batches g is
accumulated first (no graphs), then each half's Hg term is taken against that g.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from prunelib.methods.scorers.base import Scorer
from prunelib.foundations.seeding import generator

#: The named random stream of the Linear re-initialisation (``reinit_linear``).
REINIT_STREAM = "grasp-reinit-linear"


def _dot(a, b) -> torch.Tensor:
    # a scalar to differentiate, not autograd.grad(grad_outputs=...): on first use the
    # latter imports sympy, seconds per fresh scoring process
    return sum((x * y).sum() for x, y in zip(a, b))


def halves(batches):
    """Each batch's first N // 2 examples, then the rest (empty halves skipped)."""
    for x, y in batches:
        n = x.shape[0]
        for part in (slice(0, n // 2), slice(n // 2, n)):
            if part.stop > part.start:
                yield x[part], y[part]


def hessian_gradient_product(model, params, batches, temperature: float = 1.0) -> dict[str, torch.Tensor]:
    """Hg = sum_h H_h g with g = sum_h g_h, over the halves h of ``batches`` (module
    docstring), for the loss CE(model(x) / temperature, y).  Runs ``model`` itself in
    train mode (``GraspScorer`` passes a copy)."""
    parts = list(halves(batches))
    if not parts:
        raise ValueError("no scoring batches")
    weights = list(params.values())
    model.train()

    def grad(x, y, graph):
        return torch.autograd.grad(F.cross_entropy(model(x) / temperature, y), weights, create_graph=graph)

    if len(parts) <= 2:  # one batch: one forward per half, the graphs kept for the second pass
        per_half = [grad(x, y, True) for x, y in parts]
        g = [sum(gs[i] for gs in per_half).detach() for i in range(len(weights))]
        hg = torch.autograd.grad(sum(_dot(gs, g) for gs in per_half), weights)
        return dict(zip(params, hg))
    g = [torch.zeros_like(p) for p in weights]
    for x, y in parts:
        for acc, gi in zip(g, grad(x, y, False)):
            acc += gi
    hg = [torch.zeros_like(p) for p in weights]
    for x, y in parts:
        for acc, h in zip(hg, torch.autograd.grad(_dot(grad(x, y, True), g), weights)):
            acc += h
    return dict(zip(params, hg))


def scoring_copy(model: nn.Module, params: dict, seed: int, reinit_linear: bool) -> tuple[nn.Module, dict]:
    """A deep copy of ``model`` and its parameters named as in ``params``; with
    ``reinit_linear`` every ``nn.Linear`` weight of the copy redrawn Xavier-normal from
    the seed's ``grasp-reinit-linear`` stream (module order, CPU, the weight's dtype)."""
    memo: dict = {}
    net = copy.deepcopy(model, memo)
    copied = {n: memo[id(p)] for n, p in params.items()}
    if reinit_linear:
        gen = generator(seed, REINIT_STREAM)
        with torch.no_grad():
            for module in net.modules():
                if isinstance(module, nn.Linear):
                    w = module.weight
                    draw = torch.empty(w.shape, dtype=w.dtype)
                    nn.init.xavier_normal_(draw, generator=gen)
                    w.copy_(draw)
    for p in copied.values():
        p.requires_grad_(True)
    return net, copied


class GraspScorer(Scorer):
    needs_data = True

    def __init__(self, temperature: float = 200.0, reinit_linear: bool = True):
        temperature = float(temperature)
        if not 0 < temperature < float("inf"):
            raise ValueError(f"GraSP temperature = {temperature} is not allowed; allowed: finite numbers > 0")
        self.temperature = temperature
        self.reinit_linear = bool(reinit_linear)

    def describe(self):
        return {"temperature": self.temperature, "reinit_linear": self.reinit_linear,
                "batch_parts": "halves, summed"}

    def score(self, model, params, batches, seed):
        net, copied = scoring_copy(model, params, seed, self.reinit_linear)
        hg = hessian_gradient_product(net, copied, batches, self.temperature)
        return {n: p.detach() * hg[n] for n, p in copied.items()}
