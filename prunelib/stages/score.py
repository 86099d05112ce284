"""The score stage: one importance score per prunable weight, made once for every ratio."""

from __future__ import annotations

import time

import torch

from prunelib.catalogue import registry
from prunelib.config.contracts import ScoreContract
from prunelib.data import datasets
from prunelib.foundations.artifacts import input_record, save_pt
from prunelib.methods import score_checks
from prunelib.stages.common import load_model, provenance
from prunelib.train.loop import resolve_device


def _targets(y: torch.Tensor, dataset: str, labels: str) -> torch.Tensor:
    """The loss's targets for a scoring batch with labels ``y`` (``score.labels``):
    ``data``: ``y`` itself; ``uniform``: a ``[B, C]`` float tensor of ``1 / C``, for
    which ``F.cross_entropy`` is the cross-entropy against the uniform distribution,
    ``-(1/C) sum_k log softmax(z)_k``, as the SPP code's ``compute_loss(labels, logits,
    fake_uniform=True)`` (``tf.ones_like(logits) / num_classes`` into
    ``softmax_cross_entropy_with_logits``; ``namhoonlee/spp-public``, spp/model.py).
    The labels are then never read: unsupervised pruning (Lee et al., ICLR 2020)."""
    if labels == "data":
        return y
    if labels == "uniform":
        c = datasets.info(dataset).num_classes
        return torch.full((y.shape[0], c), 1.0 / c, dtype=torch.float32)
    raise ValueError(f"score.labels = {labels!r} is not allowed; allowed: data, uniform")


def compute_scores(model: torch.nn.Module, prunable: list[str], scorer, data: dict | None, dataset: str,
                   seed: int, data_settings: dict, device: torch.device, entry=None) -> tuple[dict, dict]:
    """Scores of ``scorer`` (a method's ``Scorer``, built with its settings) for the
    ``prunable`` parameters of ``model`` (on the CPU), and what was used to compute them
    (scoring data, method settings).  ``data_settings``: ``ScoreSettings.data_for(method)``.
    With ``entry`` (the method's registry entry), what ``score()`` returned and how it
    used the batches are held to the scorer contract first (prunelib/methods/score_checks.py)."""
    model.to(device)
    named = dict(model.named_parameters())
    params = {n: named[n] for n in prunable}
    batches = []
    used = {}
    if scorer.needs_data:
        d = data_settings
        batches = [(x.to(device), _targets(y, dataset, d.get("labels", "data")).to(device)) for x, y in
                   datasets.scoring_batches(data, dataset, seed, d["batch_size"], d["num_batches"],
                                            d["class_balanced"])]
        used = {**d, "n_examples": d["batch_size"] * d["num_batches"]}
    batches = score_checks.Batches(batches)
    raw = scorer.score(model, params, batches, seed)
    if entry is not None:
        score_checks.check_data_use(entry, scorer.needs_data, batches)
        score_checks.check_scores(entry, raw, params)
    scores = {n: s.detach().cpu() for n, s in raw.items()}
    return scores, {**used, **scorer.describe()}


def run_score(c: ScoreContract, init_path, data_path, out) -> None:
    m = registry.method(c.method)
    scorer = m.make_scorer(c.knobs)
    model, meta = load_model(init_path)
    data = datasets.load_prepared(data_path) if scorer.needs_data else None
    dev = resolve_device(c.device)
    start = time.perf_counter()
    scores, used = compute_scores(model, meta["prunable"], scorer, data, meta["dataset"], c.seed, c.data, dev,
                                  entry=m)
    seconds = time.perf_counter() - start
    # a method whose mask stage needs more than the scores (EigenDamage's K-FAC factors)
    extra = scorer.artifact_extra() if hasattr(scorer, "artifact_extra") else None  # (None: nothing beside)
    save_pt({"scores": scores, **({"extra": extra} if extra is not None else {}),
             "meta": {"method": c.method, "seed": c.seed, "scope": m.scope, "paper": m.paper, **used,
                      "n_examples": used.get("n_examples", 0), "seconds": seconds, "device": str(dev),
                      "init": meta, "settings_hash": c.hash(), **provenance(),
                      "inputs": {"init": input_record(init_path),
                                 **({"data": input_record(data_path)} if scorer.needs_data else {})}}}, out)
