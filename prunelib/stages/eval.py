"""The eval stage: a cell's eval row, the one record the tables, figures and audits read.

Its columns are named in prunelib/foundations/eval_row.py: top-1 and what it hides
(prunelib/train/metrics.py), compression counted from the weights, MACs
(prunelib/nets/macs.py), measured speed-ups (prunelib/methods/slimming.py), timing,
status and lineage.
"""

from __future__ import annotations

import time

import torch

import prunelib
from prunelib.config.contracts import EvalContract
from prunelib.data import datasets
from prunelib.foundations import eval_row
from prunelib.foundations.artifacts import input_record, load_pt, write_parquet
from prunelib.methods import slimming
from prunelib.nets.macs import multiply_accumulates
from prunelib.stages.common import build_model, model_from
from prunelib.train.loop import evaluate, resolve_device
from prunelib.train.metrics import beyond_top1


def run_eval(c: EvalContract, final_path, mask_path, data_path, out) -> dict:
    """The cell's eval row (one Parquet row; its columns: prunelib/foundations/eval_row.py)."""
    method, ratio, seed = c.method, float(c.ratio), int(c.seed)
    final_blob = load_pt(final_path)
    model, meta = model_from(final_blob)
    mask_blob = load_pt(mask_path)
    masks = mask_blob["masks"]
    data = datasets.load_prepared(data_path)
    dev = resolve_device(c.device)
    start = time.perf_counter()
    status, reason = meta.get("status", "ok"), meta.get("reason", "")
    if status == "ok":
        logits = []
        metrics = evaluate(model, data, meta["dataset"], c.eval_batch_size, dev, logits=logits)
        metrics.update(beyond_top1(torch.cat(logits), data["test_y"], datasets.info(meta["dataset"]).num_classes))
    else:
        metrics = {"top1": float("nan"), "top5": float("nan"), "test_loss": float("nan"), **eval_row.MISSING_METRICS}
    metrics.update(best_of_checkpoints(final_blob.get("test_checkpoints") or {}, meta, data,
                                       c.eval_batch_size, dev))
    eval_seconds = time.perf_counter() - start
    params = dict(model.named_parameters())
    n_prunable = sum(params[n].numel() for n in masks)
    n_nonzero_prunable = sum(int((params[n] != 0).sum()) for n in masks)
    collapsed = [n for n, m in masks.items() if not bool(m.any())]
    r_e = n_prunable / n_nonzero_prunable if n_nonzero_prunable else float("inf")
    macs_dense, macs_kept = multiply_accumulates(model, masks, meta["dataset"])
    row = {
        "arch": meta["arch"], "dataset": meta["dataset"], "method": method, "ratio": ratio,
        "seed": seed, "variant": c.variant, "init_scheme": meta["init_scheme"],
        # prune.allocation ('' = the method's own scope)
        "allocation": mask_blob["meta"].get("allocation") or "",
        **metrics,
        "n_params": sum(p.numel() for p in params.values()),
        "n_prunable": n_prunable,
        "n_nonzero": sum(int((p != 0).sum()) for p in params.values()),
        "n_nonzero_prunable": n_nonzero_prunable,
        "n_kept": sum(int(m.sum()) for m in masks.values()),
        "empirical_ratio": r_e, "compression_error": (r_e - ratio) / ratio,
        "collapsed_layers": len(collapsed), "collapsed_names": ",".join(collapsed),
        # weights whose fate the seeded tie-break drew, not the scores (0 in masks from before it was recorded)
        "tied_at_cut": int(mask_blob["meta"].get("tied_at_cut", 0)),
        "tied_at_cut_fraction": float(mask_blob["meta"].get("tied_at_cut_fraction", 0.0)),
        "macs_dense": macs_dense, "macs_kept": macs_kept,
        "speedup": macs_dense / macs_kept if macs_kept else float("inf"),
        "train_seconds": meta["train_seconds"], "score_seconds": meta["mask"].get("score_seconds", 0.0),
        "eval_seconds": eval_seconds,
        "status": status, "reason": reason,
        "prunelib_version": prunelib.__version__, "torch_version": str(torch.__version__),
        "device": meta["device"], "settings_hash": c.cell_hash,
        **lineage_columns(meta, mask_blob["meta"], input_record(data_path), input_record(mask_path),
                          input_record(final_path)),
    }
    if "eigendamage" in mask_blob["meta"]:
        row.update(_eigendamage_columns(model, mask_blob["meta"], data, meta, dev, status))
    else:
        row.update(_measured(model, masks, mask_blob["meta"], data, meta, dev, status))
    row.update(eval_row.signal_propagation_columns(meta))
    write_parquet([row], out)
    return row


def best_of_checkpoints(checkpoints: dict, meta: dict, data: dict, batch_size: int, dev) -> dict:
    """The best-of-checkpoints metric (``eval.every_steps``): the maximum test top-1 over
    the checkpoints a train job kept, and the step of its first occurrence, as the SNIP
    code reports 1 - max accuracy over its saved checkpoints (``snip/test.py``).  Selected
    on the test set, so optimistic: recorded beside ``top1`` (the final weights), never
    instead of it.  Null (not measured) without checkpoints."""
    if not checkpoints:
        return {"best_test_top1": None, "best_test_step": None, "checkpoints_evaluated": 0}
    model = build_model(meta["arch"], meta["dataset"], meta.get("model"))
    accuracy = {}
    for step in sorted(checkpoints):
        model.load_state_dict(checkpoints[step])
        accuracy[step] = evaluate(model, data, meta["dataset"], batch_size, dev)["top1"]
    best = max(accuracy.values())
    return {"best_test_top1": best, "best_test_step": min(k for k, a in accuracy.items() if a == best),
            "checkpoints_evaluated": len(accuracy)}


def lineage_columns(final_meta: dict, mask_meta: dict, data: dict, mask: dict, final: dict) -> dict:
    """SHA-256 of data, init, scores, mask and final for one eval row ('' where the cell
    has no such artifact, e.g. no scores for the dense control or random pruning).  For an
    IMP cell ``init`` is the weights its train stage started from (the chain round's
    trained weights) and ``scores`` the chain round's mask.pt, which its mask was cut from."""
    def digest(rec):
        return (rec or {}).get("sha256") or ""

    upstream = final_meta.get("inputs", {})
    records = (data, upstream.get("init"), mask_meta.get("inputs", {}).get("scores"), mask, final)
    return dict(zip(eval_row.LINEAGE_COLUMNS, map(digest, records), strict=True))  # (data, init, scores, mask, final)


def _eigendamage_columns(model, mask_meta, data, meta, dev, status) -> dict:
    """An EigenDamage cell (prunelib/methods/eigendamage.py): ``model`` is the network it
    built.  Its counts are against the original network's prunable weights (n_prunable);
    its kept weights are the built network's Conv/Linear weights; MACs of the original
    against the built network; measured speed-ups of the built network against the
    original-shaped network it folds into (``eigendamage.measure``)."""
    from prunelib.methods import eigendamage

    rec = mask_meta["eigendamage"]
    original = build_model(meta["arch"], meta["dataset"], meta.get("model"))
    weights = [m.weight for m in model.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    n_prunable = int(rec["n_prunable"])
    nonzero = sum(int((w != 0).sum()) for w in weights)
    r_e = n_prunable / nonzero if nonzero else float("inf")
    macs_dense, _ = multiply_accumulates(original, {}, meta["dataset"])
    macs_kept, _ = multiply_accumulates(model, {}, meta["dataset"])
    out = {"n_prunable": n_prunable, "n_kept": int(rec["eigen_n_kept"]), "n_nonzero_prunable": nonzero,
           "empirical_ratio": r_e, "compression_error": (r_e - float(mask_meta["ratio"])) / float(mask_meta["ratio"]),
           "macs_dense": macs_dense, "macs_kept": macs_kept,
           "speedup": macs_dense / macs_kept if macs_kept else float("inf"),
           "granularity": "eigenbasis", "filter_deviation": int(rec["eigen_deviation"]),
           "target_reached": bool(rec["target_reached"])}
    if status != "ok":
        return {**out, **slimming.measure_missing(dev)}
    return {**out, **eigendamage.measure(model, original, meta["eigendamage_spec"], data, meta["dataset"], dev)}


def _measured(model, masks, mask_meta, data, meta, dev, status) -> dict:
    """Measured speed-ups (prunelib/methods/slimming.py): the slimmed network of a structured
    mask against the masked one, or CSR Linear layers of an unstructured mask at >= 90%
    sparsity; NaN where they do not apply (or the cell failed)."""
    rec = mask_meta.get("structured")
    extra = {"granularity": "filter" if rec else "weight",
             "filter_deviation": rec["filter_deviation"] if rec else 0,
             "target_reached": rec["target_reached"] if rec else True}
    if status != "ok":
        return {**extra, **slimming.measure_missing(dev)}
    return {**extra, **slimming.measure(model, masks, data, meta["dataset"], dev, rec is not None)}
