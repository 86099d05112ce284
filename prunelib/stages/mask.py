"""The mask stage: a cell's mask at its ratio, by the method's ``Pruning``
(prunelib/catalogue/pruning.py), then its sanity-check variant if any.

``PATHS`` maps each kind of pruning to the function that makes its mask; a new kind of
method adds its entry here and nowhere else in the stages.
"""

from __future__ import annotations

import dataclasses
import time

import torch

from prunelib.catalogue import pruning, registry
from prunelib.config.contracts import MaskContract
from prunelib.foundations.artifacts import input_record, load_pt, save_pt, write_parquet
from prunelib.data import datasets
from prunelib.methods import allocation, eigendamage, kfac, masking, score_checks, structured, variants
from prunelib.stages.common import cpu_state, load_model, provenance
from prunelib.train.loop import resolve_device


@dataclasses.dataclass
class Selected:
    """A mask before any sanity-check variant: masks, audit rows, the ranking that
    ``invert`` reads (None where the method has none), the scope, and what to record."""

    masks: dict
    rows: list
    ranking: dict | None
    scope: str
    extra: dict
    score_seconds: float = 0.0
    #: The lineage of what was read: {role: {path, sha256}}.
    inputs: dict = dataclasses.field(default_factory=dict)
    #: A method that updates the weights it keeps (``Pruning.updates_weights``): the whole
    #: network's state after pruning (removed weights zero, kept ones updated) and the
    #: meta of the artifact they came from; the mask stage writes them to ``paths.UPDATED``.
    weights: dict | None = None
    weights_meta: dict | None = None
    #: A method that changes the network (EigenDamage): {spec, state_dict} of the built network.
    network: dict | None = None


def _dense(c: MaskContract, init_path, _scores_path) -> Selected:
    """The dense control: every prunable weight kept."""
    blob = load_pt(init_path)
    scores = {n: torch.ones_like(blob["state_dict"][n]) for n in blob["meta"]["prunable"]}
    masks, rows = masking.select_masks(scores, c.ratio, "all", c.seed, method=c.method)
    return Selected(masks, rows, None, "all", {}, inputs={"init": input_record(init_path)})


def _single_pass(c: MaskContract, _init_path, scores_path) -> Selected:
    """A single-pass foresight method: the top-k of its stored scores, over its own scope
    or, with ``prune.allocation``, within the kept count the allocation gives each tensor."""
    m = registry.method(c.method)
    blob = load_pt(scores_path)
    scores = blob["scores"]
    scope = c.allocation or m.scope
    extra = {"allocation": c.allocation} if c.allocation else {}
    if scope in allocation.SCOPES:
        masks, rows = masking.select_masks(scores, c.ratio, scope, c.seed, method=m.name)
    else:
        shapes = {n: tuple(s.shape) for n, s in scores.items()}
        total = masking.kept_count(sum(s.numel() for s in scores.values()), c.ratio)
        counts = allocation.counts_for(scope, shapes, total)
        masks, rows = masking.select_per_tensor(scores, counts, c.seed, method=m.name)
    return Selected(masks, rows, scores, scope, extra, blob["meta"].get("seconds", 0.0),
                    {"scores": input_record(scores_path)})


def _rescored(c: MaskContract, init_path, scores_path) -> Selected:
    """A method whose scores depend on the ratio (SynFlow): pruned by its scorer's
    ``prune`` (prunelib/methods/scorers/base.py), which scores again between rounds."""
    m = registry.method(c.method)
    scorer = m.make_scorer(c.knobs)
    model, meta = load_model(init_path)
    model.to(resolve_device(c.device))
    named = dict(model.named_parameters())
    params = {n: named[n] for n in meta["prunable"]}
    masks, rows, ranking = scorer.prune(model, params, c.ratio, m.scope, c.seed, method=m.name,
                                        ranking=variants.needs_ranking(c.variant and c.variant.variant))
    counts = ({n: masking.kept_count(p.numel(), c.ratio) for n, p in params.items()} if m.scope == "layer"
              else None)
    score_checks.check_pruned(m, masks, rows, params, masking.target_kept(
        [{"numel": p.numel()} for p in params.values()], c.ratio, m.scope), m.scope, counts)
    ranking = ranking and {n: v.cpu() for n, v in ranking.items()}  # (only a variant that reads it builds it)
    return Selected({n: mk.cpu() for n, mk in masks.items()}, rows, ranking,
                    m.scope, scorer.describe(), load_pt(scores_path)["meta"].get("seconds", 0.0),
                    {"scores": input_record(scores_path), "init": input_record(init_path)})


def _chain(c: MaskContract, _init_path, round_mask_path) -> Selected:
    """An iterative method: the mask of the chain round that lands on the ratio (the
    chain's time is the cell's train time)."""
    blob = load_pt(round_mask_path)
    ranking = (masking.removal_ranking(blob["pruned_round"], blob["ranked_by"])
               if variants.needs_ranking(c.variant and c.variant.variant) else None)
    extra = {"imp_round": blob["meta"]["round"], "paper": blob["meta"]["paper"]}
    if "layer_rates" in blob["meta"]:
        extra["layer_rates"] = blob["meta"]["layer_rates"]
    return Selected(blob["masks"], blob["rows"], ranking, c.criterion, extra,
                    inputs={"scores": input_record(round_mask_path)})


def _structured(c: MaskContract, init_path, scores_path) -> Selected:
    """A structured method: whole filters chosen by their summed scores, the input
    channels they fed removed with them (prunelib/methods/structured.py); the record of
    pruned filters per layer and of the deviation from the target goes into the meta."""
    m = registry.method(c.method)
    model, meta = load_model(init_path)
    blob = load_pt(scores_path)
    masks, rows, record = structured.select_filters(model, blob["scores"], meta["prunable"], c.ratio,
                                                    m.scope, c.seed)
    return Selected(masks, rows, None, m.scope, {"structured": record}, blob["meta"].get("seconds", 0.0),
                    {"scores": input_record(scores_path), "init": input_record(init_path)})


def _structured_updating(c: MaskContract, init_path, scores_path, data_path=None) -> Selected:
    """A filter method that updates the filters it keeps (Kron-OBS): the filters as
    ``_structured`` chooses them, then each layer's update from the S^-1 its score stage
    stored (``kron.updated_state``: dW = -S^-1[:, P] diag(1/[S^-1]_jj) W[P], bias column
    included); removed weights are zero in the updated state (the input columns the
    removed filters fed included)."""
    from prunelib.methods.scorers import kron

    sel = _structured(c, init_path, scores_path)
    model, meta = load_model(init_path)
    blob = load_pt(scores_path)
    s_inv = blob["extra"]["s_inverse"]
    pruned = {f["layer"]: f["pruned"] for f in sel.extra["structured"]["filters"] if f["pruned"]}
    before = cpu_state(model)
    state = kron.updated_state(model, s_inv, pruned)
    for n, mk in sel.masks.items():  # (removed weights exactly zero)
        state[n] = state[n] * mk.to(state[n].dtype)
    norms = {}
    for n, mk in sel.masks.items():
        old, new = before[n].double(), state[n].double()
        norms[n] = {"update_norm": float((new - old)[mk].norm()), "removed_norm": float(old[~mk].norm()),
                    "weight_norm": float(old.norm())}
    sel.extra["update"] = {"norms": norms, "settings": {"rule": "Kron-OBS, summed single-filter updates"}}
    sel.weights, sel.weights_meta = state, meta
    return sel


def _eigenbasis(c: MaskContract, init_path, scores_path) -> Selected:
    """EigenDamage (prunelib/methods/eigendamage.py): each layer rotated into the eigenbasis
    of the K-FAC factors the score stage stored, rows and columns removed to the cell's
    ratio, the network built.  The built network goes into the mask artifact (training and
    eval start from it); its masks keep every weight of it (all True), its counts are the
    built network's against the original prunable weights."""
    model, meta = load_model(init_path)
    blob = load_pt(scores_path)
    factors = {k: kfac.Factors(f["A"], f["S"], f["bias"], f["patches"]) for k, f in blob["extra"]["kfac"].items()}
    bases = eigendamage.decompose(model, factors)
    kept, record = eigendamage.select(model, bases, meta["prunable"], c.ratio, c.seed)
    built = eigendamage.build(model, bases, kept)
    masks, rows = {}, []
    for name, mod in built.named_modules():
        if isinstance(mod, (torch.nn.Linear, torch.nn.Conv2d)):
            w = mod.weight
            masks[f"{name}.weight"] = torch.ones_like(w, dtype=torch.bool)
            rows.append({"name": f"{name}.weight", "shape": "x".join(map(str, w.shape)), "numel": w.numel(),
                         "kept": w.numel(), "density": 1.0, "collapsed": False, "threshold": float("nan"),
                         "tied_at_threshold": 0, "tied_kept": 0})
    extra = {"eigendamage": record, "target_kept": record["eigen_target_kept"], "n_kept": record["eigen_n_kept"],
             "n_prunable": record["n_prunable"]}
    network = {"spec": eigendamage.spec_of(kept), "state_dict": cpu_state(built)}
    return Selected(masks, rows, None, "global", extra, blob["meta"].get("seconds", 0.0),
                    {"scores": input_record(scores_path), "init": input_record(init_path)}, network=network)


def _updating(c: MaskContract, init_path, scores_path, data_path=None) -> Selected:
    """A method that updates the weights it keeps (OBS, WoodFisher, L-OBS): its scorer's
    ``prune_update`` (prunelib/methods/scorers/obs.py) on the scoring data of the mask
    contract, which prunes per ratio and leaves the updated network; its state goes to
    the updated-weights artifact."""
    if not data_path:
        raise ValueError(f"method {c.method} updates the weights it keeps: the mask stage needs --data")
    if c.data is None:
        raise ValueError(f"method {c.method}: the mask contract has no scoring data (data)")
    m = registry.method(c.method)
    scorer = m.make_scorer(c.knobs)
    model, meta = load_model(init_path)
    dev = resolve_device(c.device)
    model.to(dev)
    named = dict(model.named_parameters())
    params = {n: named[n] for n in meta["prunable"]}
    d = c.data
    data = datasets.load_prepared(data_path)
    batches = [(x.to(dev), y.to(dev)) for x, y in
               datasets.scoring_batches(data, meta["dataset"], c.seed, d["batch_size"], d["num_batches"],
                                        d["class_balanced"])]
    start = time.perf_counter()
    masks, rows, ranking, record = scorer.prune_update(
        model, params, batches, c.ratio, m.scope, c.seed, method=m.name,
        ranking=variants.needs_ranking(c.variant and c.variant.variant))
    counts = ({n: masking.kept_count(p.numel(), c.ratio) for n, p in params.items()} if m.scope == "layer"
              else None)
    score_checks.check_pruned(m, masks, rows, params, masking.target_kept(
        [{"numel": p.numel()} for p in params.values()], c.ratio, m.scope), m.scope, counts)
    masks = {n: mk.cpu() for n, mk in masks.items()}
    state = cpu_state(model)
    for n, mk in masks.items():  # (removed weights exactly zero, whatever the method left there)
        state[n] = state[n] * mk.to(state[n].dtype)
    ranking = ranking and {n: v.cpu() for n, v in ranking.items()}
    inputs = {"scores": input_record(scores_path), "init": input_record(init_path), "data": input_record(data_path)}
    extra = {**scorer.describe(), **record, "n_examples": d["batch_size"] * d["num_batches"],
             "update_seconds": time.perf_counter() - start}
    return Selected(masks, rows, ranking, m.scope, extra, load_pt(scores_path)["meta"].get("seconds", 0.0),
                    inputs, weights=state, weights_meta=meta)


#: How each kind of pruning makes its mask.
PATHS = {pruning.DENSE.name: _dense, pruning.SINGLE_PASS.name: _single_pass, pruning.RESCORED.name: _rescored,
         pruning.CHAIN.name: _chain, pruning.STRUCTURED.name: _structured, pruning.UPDATING.name: _updating,
         pruning.EIGENBASIS.name: _eigenbasis, pruning.STRUCTURED_UPDATING.name: _structured_updating}


def run_mask(c: MaskContract, init_path, scores_path, out_mask, out_table, data_path=None,
             out_weights=None) -> None:
    """``scores_path``: the method's scores, the chain round's mask.pt for an iterative
    method, unused for the dense control.  A method that updates the weights it keeps
    (``Pruning.updates_weights``) also reads the data (``data_path``) and writes the
    updated weights to ``out_weights`` (``paths.UPDATED``: ``{state_dict, meta}`` like an
    init artifact, so training loads it as its starting point; its meta records the
    update per tensor and its inputs), before the mask, so that a mask never exists
    without its weights."""
    start = time.perf_counter()
    how = registry.method(c.method).pruning
    if how.updates_weights:
        if not out_weights:
            raise ValueError(f"method {c.method} updates the weights it keeps: the mask stage needs --out-weights "
                             f"(paths.UPDATED)")
        sel = PATHS[how.name](c, init_path, scores_path, data_path=data_path)
    else:
        sel = PATHS[how.name](c, init_path, scores_path)
    masks, rows, extra = sel.masks, sel.rows, dict(sel.extra)
    if c.variant is not None:
        masks, new_rows, record = variants.transform_mask(c.variant.variant, masks, c.variant.seed, sel.ranking,
                                                          c.ratio, sel.scope, c.method)
        rows = new_rows or _recount_rows(rows, masks)
        extra["variant"] = record
    seconds = time.perf_counter() - start
    summary = masking.mask_summary(rows)
    target = masking.target_kept(rows, c.ratio, sel.scope)
    meta = {"method": c.method, "ratio": float(c.ratio), "seed": c.seed, "scope": sel.scope, "target_kept": target,
            **summary, **extra, "seconds": seconds, "score_seconds": sel.score_seconds,
            "settings_hash": c.hash(), **provenance(), "inputs": sel.inputs}
    if sel.weights is not None:
        # like an init artifact (training loads it), plus what the pruning did to it
        wmeta = {**sel.weights_meta, "pruned_by": {"method": c.method, "ratio": float(c.ratio), "seed": c.seed,
                                                    "settings_hash": c.hash()},
                 "update": extra.get("update", {}), "mask_seconds": seconds, **provenance(), "inputs": sel.inputs}
        save_pt({"state_dict": sel.weights, "meta": wmeta}, out_weights)
    save_pt({"masks": masks, "meta": meta, **({"network": sel.network} if sel.network is not None else {})},
            out_mask)
    write_parquet(rows, out_table, metadata={k: meta[k] for k in ("method", "ratio", "seed", "scope",
                                                                  "target_kept", "n_kept", "n_prunable")})


def _recount_rows(rows: list[dict], masks: dict) -> list[dict]:
    """Audit rows of a mask transformed after selection (kept counts per tensor are
    recounted; the selection's threshold and tie records stay those of the method)."""
    out = []
    for r in rows:
        kept = int(masks[r["name"]].sum())
        out.append({**r, "kept": kept, "density": kept / r["numel"], "collapsed": kept == 0})
    return out
