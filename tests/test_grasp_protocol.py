"""GraSP as the authors' code runs it (alecwangcq/GraSP, pruner/GraSP.py): logits divided
by T = 200 in both passes, each scoring batch split into halves whose gradients and
Hessian-gradient terms are summed, and the scores taken on a copy whose Linear weights
are redrawn Xavier-normal.

The reference is a bias-free linear classifier z = W x / T, whose softmax cross-entropy
has closed forms: per example dL/dW = (p - y) x^T / T and, for a direction V,
H V = (1/T^2) (diag(p) - p p^T) (V x) x^T (each averaged over a half's examples)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from cells import settings
from conftest import grasp_long_way
from prunelib import config, stages
from prunelib.catalogue import registry
from prunelib.foundations.artifacts import load_pt
from prunelib.config import ConfigError, contracts
from prunelib.data.datasets import scoring_batches
from prunelib.methods.scorers.grasp import REINIT_STREAM, GraspScorer
from prunelib.foundations.seeding import generator

D, C = 5, 3


def linear_model(seed=0):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(D, C, bias=False)).double()
    with torch.no_grad():
        net[0].weight.normal_(0, 1.5)
    return net, {"0.weight": net[0].weight}


def data(n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, D, generator=g, dtype=torch.float64), torch.randint(0, C, (n,), generator=g)


def analytic(w, batches, temperature):
    """(g, Hg) of the halves' summed losses, from the closed forms (float64)."""
    parts = []
    for x, y in batches:
        n = x.shape[0]
        parts += [(x[:n // 2], y[:n // 2]), (x[n // 2:], y[n // 2:])]

    def probs(x):
        return torch.softmax(x @ w.T / temperature, dim=1)

    g = torch.zeros_like(w)
    for x, y in parts:
        p, onehot = probs(x), torch.eye(C, dtype=w.dtype)[y]
        g += sum(torch.outer(p[i] - onehot[i], x[i]) for i in range(len(y))) / temperature / len(y)
    hg = torch.zeros_like(w)
    for x, _ in parts:
        p = probs(x)
        hg += sum(torch.outer((torch.diag(p[i]) - torch.outer(p[i], p[i])) @ (g @ x[i]), x[i])
                  for i in range(len(x))) / temperature ** 2 / len(x)
    return g, hg


def untempered(w, batches):
    """The same closed forms written for the plain loss (no T anywhere)."""
    parts = [q for x, y in batches for q in ((x[:len(y) // 2], y[:len(y) // 2]), (x[len(y) // 2:], y[len(y) // 2:]))]
    g = sum(((torch.softmax(x @ w.T, 1) - torch.eye(C, dtype=w.dtype)[y]).T @ x) / len(y) for x, y in parts)
    hg = torch.zeros_like(w)
    for x, _ in parts:
        p = torch.softmax(x @ w.T, 1)
        v = x @ g.T                                   # rows: g x_i
        hv = p * v - p * (p * v).sum(1, keepdim=True)  # (diag(p) - p p^T) g x_i
        hg += hv.T @ x / len(x)
    return w * hg


BATCHES = {"one batch of 8": [data(8, 1)], "batches of 8 and 5 (odd: halves of 2 and 3)": [data(8, 1), data(5, 2)]}


@pytest.mark.parametrize("batches", BATCHES.values(), ids=BATCHES.keys())
@pytest.mark.parametrize("temperature", [200.0, 1.0, 7.5])
def test_scores_are_theta_times_the_summed_halves_hessian_times_the_summed_gradient(batches, temperature):
    net, params = linear_model()
    w = params["0.weight"].detach().clone()
    _, hg = analytic(w, batches, temperature)
    got = GraspScorer(temperature=temperature, reinit_linear=False).score(net, params, batches, 0)["0.weight"]
    torch.testing.assert_close(got, w * hg, rtol=1e-10, atol=1e-14 * float((w * hg).abs().max()))
    assert torch.equal(params["0.weight"], w)


def test_temperature_one_is_the_untempered_loss_and_200_ranks_differently():
    net, params = linear_model()
    batches = BATCHES["one batch of 8"]
    w = params["0.weight"].detach().clone()
    plain = GraspScorer(temperature=1, reinit_linear=False).score(net, params, batches, 0)["0.weight"]
    torch.testing.assert_close(plain, untempered(w, batches), rtol=1e-12, atol=1e-15)
    hot = GraspScorer(reinit_linear=False).score(net, params, batches, 0)["0.weight"]
    assert not torch.equal(plain.flatten().argsort(), hot.flatten().argsort())
    # (a T = 200 score is far smaller, ~1/T^3: g ~ 1/T, H ~ 1/T^2)
    assert hot.abs().max() < 1e-4 * plain.abs().max()


def whole_batch_scores(net, params, batches, temperature):
    """theta * Hg of the mean loss over each whole batch (no halves), by double backward."""
    net.train()
    return grasp_long_way(net, params, batches, temperature)


def test_halves_rescale_the_scores_without_batchnorm_and_change_them_with_it():
    """Two equal halves without BatchNorm: g doubles and so does the summed Hessian, so
    the scores are 4x the whole batch's (the same ranking).  With BatchNorm in train mode
    each half is normalised with its own statistics: another function of the weights."""
    net, params = linear_model()
    batches = BATCHES["one batch of 8"]
    got = GraspScorer(reinit_linear=False).score(net, params, batches, 0)["0.weight"]
    torch.testing.assert_close(got, 4 * whole_batch_scores(net, params, batches, 200.0)["0.weight"],
                               rtol=1e-10, atol=0)
    torch.manual_seed(0)
    bn = nn.Sequential(nn.Linear(D, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, C)).double()
    params = {n: p for n, p in bn.named_parameters() if n in ("0.weight", "3.weight")}
    got = GraspScorer(temperature=1, reinit_linear=False).score(bn, params, batches, 0)
    whole = whole_batch_scores(bn, params, batches, 1.0)
    ratio = torch.cat([(got[n] / whole[n]).flatten() for n in params])
    assert not torch.allclose(ratio, ratio[0].expand_as(ratio), rtol=1e-2)


def redrawn(shape, seed, dtype=torch.float64):
    fan_out, fan_in = shape
    return torch.empty(shape, dtype=dtype).normal_(0, math.sqrt(2 / (fan_in + fan_out)),
                                                   generator=generator(seed, "grasp-reinit-linear"))


def test_reinit_linear_scores_the_redrawn_weights_of_a_copy_and_leaves_the_model_alone():
    assert REINIT_STREAM == "grasp-reinit-linear"
    net, params = linear_model()
    before = params["0.weight"].detach().clone()
    batches = BATCHES["batches of 8 and 5 (odd: halves of 2 and 3)"]
    got = GraspScorer().score(net, params, batches, 4)["0.weight"]
    w = redrawn((C, D), 4)
    assert not torch.allclose(w, before)
    _, hg = analytic(w, batches, 200.0)
    torch.testing.assert_close(got, w * hg, rtol=1e-10, atol=1e-14 * float((w * hg).abs().max()))
    assert torch.equal(params["0.weight"], before) and params["0.weight"].grad is None
    # seeded: bit-identical for a seed, another draw for another seed
    assert torch.equal(GraspScorer().score(net, params, batches, 4)["0.weight"], got)
    assert not torch.allclose(GraspScorer().score(net, params, batches, 5)["0.weight"], got)


def test_a_batchnorm_model_keeps_its_weights_statistics_and_mode():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))
    net.eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    params = {n: p for n, p in net.named_parameters() if n in ("0.weight", "4.weight")}
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(10, 2, 6, 6, generator=g), torch.arange(10) % 3)]
    scores = GraspScorer().score(net, params, batches, 0)
    assert set(scores) == set(params) and all(torch.isfinite(s).all() for s in scores.values())
    assert not net.training
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())


# --- settings: config -> knobs -> scorer -> score artifact -------------------------------

def test_temperature_and_reinit_are_settings_of_grasp_and_grasp_filter():
    for method in ("grasp", "grasp_filter"):
        entry = registry.method(method)
        assert entry.setting_defaults() == {"temperature": 200.0, "reinit_linear": True}
        scorer = entry.make_scorer()
        assert (scorer.temperature, scorer.reinit_linear) == (200.0, True)
        assert scorer.describe() == {"temperature": 200.0, "reinit_linear": True, "batch_parts": "halves, summed"}
    assert registry.method("grasp_filter").settings == registry.method("grasp").settings


@pytest.mark.parametrize("method", ["grasp", "grasp_filter"])
@pytest.mark.parametrize("value", [0, -1.5])
def test_a_temperature_that_is_not_positive_is_rejected_in_one_line(method, value):
    with pytest.raises(ConfigError) as exc:
        config.resolve({"score": {"per_method": {method: {"temperature": value}}}})
    assert str(exc.value) == (f"config error: score.per_method.{method}.temperature = {value} is not allowed; "
                              "allowed: numbers > 0")
    with pytest.raises(ValueError, match="temperature"):
        GraspScorer(temperature=float("inf"))


def test_the_configured_temperature_reaches_the_scorer_and_the_score_artifact(tmp_path, mnist, mnist_pt):
    default = settings()
    s = settings(score={"per_method": {"grasp": {"temperature": 3}}})
    knobs = contracts.score_contract(s, "grasp", 0).knobs
    assert knobs == {"temperature": 3, "reinit_linear": True}
    assert contracts.score_contract(s, "grasp_filter", 0) == contracts.score_contract(default, "grasp_filter", 0)
    assert contracts.score_contract(s, "grasp", 0).hash() != contracts.score_contract(default, "grasp", 0).hash()
    stages.run_init(contracts.init_contract(s, "lenet300", "mnist", 0, "pytorch_default"), tmp_path / "i.pt",
                    tmp_path / "i.parquet")
    stages.run_score(contracts.score_contract(s, "grasp", 0), tmp_path / "i.pt", mnist_pt, tmp_path / "s.pt")
    blob = load_pt(tmp_path / "s.pt")
    assert (blob["meta"]["temperature"], blob["meta"]["reinit_linear"]) == (3.0, True)
    model, meta = stages.load_model(tmp_path / "i.pt")
    params = {n: p for n, p in model.named_parameters() if n in meta["prunable"]}
    batches = list(scoring_batches(mnist, "mnist", 0, 100, 1, class_balanced=True))
    want = GraspScorer(temperature=3).score(model, params, batches, 0)
    assert all(torch.equal(blob["scores"][n], want[n]) for n in want)
    other = GraspScorer().score(model, params, batches, 0)
    assert not torch.equal(other["fc1.weight"], want["fc1.weight"])
