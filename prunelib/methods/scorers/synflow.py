"""SynFlow: iterative synaptic flow pruning (Tanaka, Kunin, Yamins & Ganguli, NeurIPS 2020).

Data-free.  Every parameter is replaced by its absolute value, normalisation layers are
put in eval mode, and an all-ones input is passed through the network:

    R = 1^T ( prod_l |theta^[l]| ) 1        (the sum of the network's outputs)
    score = (dR/dtheta) * theta

(with theta = |theta| here, so every score is >= 0).  Pruning is iterative: over n rounds
(default 100) the density follows the exponential schedule density_k = r^(-k/n), and
each round re-scores the network with the current mask applied before selecting the
exact top round(N * density_k) weights (``masking.multi_round_select``); the last round
lands exactly on r.  Weights pruned in an earlier round stay pruned.

Precision.  R is a product over all layers and overflows float32 on deep networks (the
authors' float32 code gives ResNet-56 inf and NaN scores, and then prunes everything).
The rounds therefore run in float32 on a *rescaled* network: after each module of the
network's chain (the root's children, and the children of ``nn.Sequential`` containers
on it), the activation is multiplied by d = 2^-e, the power of two that brings its
largest entry into [1/2, 1), and every additive term downstream (Linear/Conv biases,
BatchNorm's shift beta and running mean mu) by the product D of the d's before it.  With
|theta| >= 0 every module is positively homogeneous once its additive terms are scaled
with its input (ReLU, pooling, zero padding, x - mu, x + beta, W x + b), so the rescaled
network computes R' = K R with K = prod d, exactly as a function of the weights; hence

    score'(w) = w dR'/dw = K w dR/dw = K score(w)        for every weight w,

one positive constant per round, and the ranking within a round is the float64 one.  The
d's are powers of two, so the rescaling itself rounds nothing; what differs from float64
is only float32's own rounding (a relative 1e-6 or so), which can swap weights whose
scores are that close to the threshold.  ``tests/test_synflow_rescaled.py`` checks, on
every built-in network, that float32-rescaled and float64 masks agree up to such near
ties.  Hooks go only on the chain, never inside a module: a residual block is one step of
the chain, so both of its branches see the same D.  A prunable additive parameter (a
bias, with ``prune.include_bias``/``include_norm``) cannot be rescaled in place, so those
runs use float64 without rescaling (``precision="float64"``).

Because of the per-round selection the scores depend on r: the ``score`` stage stores the
single-shot (round-1) scores, in float64, and the ``mask`` stage runs the rounds.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from prunelib.methods.masking import multi_round_select
from prunelib.catalogue import registry
from prunelib.methods.scorers.base import Scorer

#: The allowed values of the ``precision`` setting (its registry entry owns them).
PRECISIONS = tuple(registry.method("synflow").settings["precision"].schema["enum"])


def _input_shape(model) -> tuple:
    shape = getattr(model, "input_shape", None)
    if shape is None:
        raise ValueError("SynFlow needs model.input_shape (channels, height, width)")
    return tuple(shape)


def chain_modules(model: nn.Module) -> list[nn.Module]:
    """The modules whose outputs are consecutive points of the network's forward chain:
    the root's children, descending into ``nn.Sequential`` containers, keeping only
    modules with parameters (ReLU and pooling commute with positive scaling anyway)."""
    out = []
    for child in model.children():
        if isinstance(child, nn.Sequential):
            out += chain_modules(child)
        elif any(True for _ in child.parameters()):
            out.append(child)
    return out


def _additive_terms(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """(module, attribute) of every term added to an activation: biases, BatchNorm's beta
    and running mean (eval mode: gamma (x - mu) / sigma + beta)."""
    terms = []
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            terms += [(module, a) for a in ("bias", "running_mean") if getattr(module, a, None) is not None]
        elif isinstance(getattr(module, "bias", None), torch.Tensor):
            terms.append((module, "bias"))
    return terms


class _LinearizedNet:
    """The network with |theta| and norm layers in eval mode, built once.  The prunable
    weights share one flat storage, so pruning is one ``index_fill_`` and the scores of a
    round are written into one flat buffer."""

    def __init__(self, model: nn.Module, names: list[str], precision: str = "float64"):
        if precision not in PRECISIONS:
            raise ValueError(f"SynFlow precision = {precision!r} is not allowed; allowed: {', '.join(PRECISIONS)}")
        if precision == "float32-rescaled" and not getattr(model, "positively_homogeneous", True):
            # the rescaling commutes with ReLU and pooling only: tanh(d x) != d tanh(x), so a
            # network that says so (nets/models.py: mlp7_tanh) is scored in float64 instead
            precision = "float64"
        dtype = torch.float64 if precision == "float64" else torch.float32
        self.net = copy.deepcopy(model).to(dtype).eval()
        with torch.no_grad():
            for p in self.net.parameters():
                p.abs_()
                p.requires_grad_(False)
            for buf in self.net.buffers():  # running statistics: keep them non-negative too
                if buf.is_floating_point():
                    buf.abs_()
        named = dict(self.net.named_parameters())
        device = next(self.net.parameters()).device
        self.names = names
        self.shapes = {n: named[n].shape for n in names}
        sizes = [named[n].numel() for n in names]
        self.flat = torch.empty(sum(sizes), dtype=dtype, device=device)
        self.params = []
        for n, part in zip(names, self.flat.split(sizes)):
            part.copy_(named[n].detach().flatten())
            owner, _, attr = n.rpartition(".")
            p = nn.Parameter(part.view(self.shapes[n]))  # shares self.flat's storage
            setattr(self.net.get_submodule(owner), attr, p)
            self.params.append(p)
        self.score_flat = torch.empty_like(self.flat)
        self.score_views = [v.view(self.shapes[n]) for n, v in zip(names, self.score_flat.split(sizes))]
        self.x = torch.ones((1, *_input_shape(model)), dtype=dtype, device=device)
        self.log2_scale = 0   # log2 K of the last forward pass
        if precision == "float32-rescaled":
            self._install_rescaling(set(names))

    def _install_rescaling(self, prunable: set[str]) -> None:
        module_names = {m: n for n, m in self.net.named_modules()}
        terms = _additive_terms(self.net)
        for module, attr in terms:
            full = f"{module_names[module]}.{attr}".lstrip(".")
            if full in prunable:
                raise ValueError(f"SynFlow precision float32-rescaled cannot rescale the prunable additive "
                                 f"term {full}; use precision float64")
        # zero terms (BatchNorm's beta and mu at initialisation) stay zero at any scale: no hook
        terms = [(module, attr) for module, attr in terms if bool(getattr(module, attr).detach().ne(0).any())]
        # D * base is formed in float64: D alone may be far outside float32's range
        self._bases = {(module, attr): getattr(module, attr).detach().to(torch.float64) for module, attr in terms}
        self._exp = 0  # log2 D at the current point of the forward pass

        def start(module, args):
            self._exp = 0

        def scale_additive(module, args):
            with torch.no_grad():
                for attr in ("bias", "running_mean"):
                    base = self._bases.get((module, attr))
                    if base is not None:
                        d = math.ldexp(1.0, self._exp) if self._exp < 1024 else math.inf
                        getattr(module, attr).copy_(base * d)

        def renormalise(module, args, out):
            peak = float(out.detach().abs().amax())
            if peak == 0.0 or not math.isfinite(peak):
                return None  # nothing to scale (a dead layer), or an overflow the round check reports
            e = math.frexp(peak)[1]  # peak = f 2^e, f in [1/2, 1)
            self._exp -= e
            return out * 2.0 ** -e

        self.net.register_forward_pre_hook(start)
        for module in {m for m, _ in terms}:
            module.register_forward_pre_hook(scale_additive)
        for module in chain_modules(self.net):
            module.register_forward_hook(renormalise)

    def score_flat_now(self) -> torch.Tensor:
        """This round's scores of all prunable weights, flat (a buffer reused every round),
        times the round's constant K = 2^log2_scale."""
        r = self.net(self.x).sum()
        grads = torch.autograd.grad(r, self.params)
        for g, p, out in zip(grads, self.params, self.score_views):
            torch.mul(g, p.detach(), out=out)
        self.log2_scale = getattr(self, "_exp", 0)
        return self.score_flat

    def remove(self, index: torch.Tensor) -> None:
        self.flat.index_fill_(0, index, 0.0)

    def scores(self, masks: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        if masks is not None:
            with torch.no_grad():
                for n, p in zip(self.names, self.params):
                    p.mul_(masks[n].to(p.dtype))
        self.score_flat_now()
        # views of this net's score buffer (no copy of all scores): callers build a net per call
        return dict(zip(self.names, self.score_views))


def synflow_scores(model: torch.nn.Module, names: list[str],
                   masks: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Single-shot SynFlow scores of ``names`` (optionally with ``masks`` applied), float64."""
    return _LinearizedNet(model, names, "float64").scores(masks)


class SynflowScorer(Scorer):
    needs_ratio = True

    def __init__(self, rounds: int = 100, precision: str = "float32-rescaled"):
        if precision not in PRECISIONS:
            raise ValueError(f"SynFlow precision = {precision!r} is not allowed; allowed: {', '.join(PRECISIONS)}")
        self.rounds = rounds
        self.precision = precision

    def describe(self):
        return {"rounds": self.rounds, "schedule": "exponential", "dtype": self.precision}

    def score(self, model, params, batches, seed):
        return synflow_scores(model, list(params))

    def prune(self, model, params, ratio, scope, seed, method="synflow", ranking=True):
        """Masks, audit rows of the last round, and (with ``ranking``) the whole run's
        ranking (``masking.removal_ranking``: weights pruned in earlier rounds rank lowest,
        then by the score they had when last ranked), which only the ``invert`` sanity
        check reads; without it the third value is None."""
        names = list(params)
        precision = self.precision
        if precision == "float32-rescaled" and any(n.endswith("bias") for n in names):
            precision = "float64"  # a prunable additive term cannot be rescaled (module docstring)
        net = _LinearizedNet(model, names, precision)
        return multi_round_select(net.score_flat_now, net.remove, net.shapes, ratio, self.rounds, scope, seed,
                                  method=method, stream="synflow-round", ranking=ranking)
