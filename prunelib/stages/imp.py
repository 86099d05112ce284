"""Iterative magnitude pruning, one round of a chain per job (prunelib/methods/iterative.py
for the method; workflow/rules/imp.smk for the chain), and the table of a chain's rounds."""

from __future__ import annotations

import dataclasses
import time
from fractions import Fraction

import torch

from prunelib.catalogue import registry
from prunelib.config.contracts import ImpRoundContract
from prunelib.data import datasets
from prunelib.foundations.artifacts import input_record, load_pt, save_pt, write_parquet
from prunelib.foundations import paths
from prunelib.methods import iterative, masking
from prunelib.stages.common import cpu_state, model_from, provenance
from prunelib.train import resume
from prunelib.train.loop import (TrainingDiverged, evaluate, progress_printer, resolve_device, run_steps,
                                 steps_per_epoch, training_examples)


def run_imp_round(c: ImpRoundContract, data_path, out: dict, init_path=None, prev_weights=None,
                  prev_mask=None, rewind_path=None, label: str = "") -> None:
    """Round 0 trains the dense network from
    ``init_path`` for T steps and writes ``rewind.pt`` (the weights at the rewind step;
    at step 0 when the method keeps trained weights).  Round j >= 1 prunes the previous
    round's trained weights (``prev_weights``, with the chain's ranking in ``prev_mask``)
    to density d_j, resets the survivors to ``rewind_path`` (or keeps them) and retrains.
    ``out`` maps each output role (``paths.IMP_FILES``) to its path:
    weights.pt (trained), mask.pt (masks, ranking, audit rows), mask.parquet,
    train_log.parquet."""
    method, seed, j = c.method, c.seed, c.round
    missing = [r for r in paths.imp_roles(j) if not out.get(r)]
    if missing:
        raise ValueError(f"imp round {j}: no output path for {', '.join(missing)}")
    start_path = init_path if j == 0 else prev_weights
    start_blob = load_pt(start_path)  # read once
    train_s = c.train  # (resolved for the chain's dataset by the contract)
    data = datasets.load_prepared(data_path)
    inputs = {"data": input_record(data_path), ("init" if j == 0 else "prev_weights"): input_record(start_path)}
    dev = resolve_device(c.device)
    spe = steps_per_epoch(training_examples(data, train_s, seed), train_s.batch_size)
    plan = iterative.resolve_plan(c.imp, spe, train_s.epochs, train_s.steps)
    start = time.perf_counter()
    status, reason, extra = "ok", "", {}
    if j == 0:
        model, meta = model_from(start_blob)
        prunable = meta["prunable"]
        params = dict(model.named_parameters())
        masks = {n: torch.ones_like(params[n], dtype=torch.bool) for n in prunable}
        _, rows_mask = masking.select_masks({n: torch.ones_like(masks[n], dtype=torch.float64) for n in masks},
                                            1, "all", seed, method=method)
        pruned_round = {n: torch.ones_like(m, dtype=torch.int32) for n, m in masks.items()}
        ranked_by = {n: torch.zeros_like(m, dtype=torch.float32) for n, m in masks.items()}
        positions, lr_of = range(0, plan.train_steps), iterative.dense_lr(train_s, plan, spe)
        rewind_step = plan.rewind_step or 0
        ckpt = {rewind_step: None}
        base_meta = {**meta, "init": meta}
    else:
        prev = load_pt(prev_mask)
        inputs["prev_mask"] = input_record(prev_mask)
        prev_w = start_blob
        base_meta = {k: v for k, v in prev_w["meta"].items() if k not in ("round", "status", "reason")}
        model, _ = model_from(prev_w)
        density = Fraction(c.density)
        prev_failed = prev_w["meta"].get("status", "ok") != "ok"
        weights = prev_w["state_dict"]
        if prev_failed:  # its weights may be NaN: keep the chain's densities exact, train nothing
            weights = {n: torch.nan_to_num(v, nan=0.0, posinf=0.0, neginf=0.0) for n, v in weights.items()}
        output = (iterative.output_layer(model, prev["masks"]) if plan.criterion == iterative.LAYER_OUTPUT_HALF
                  else ())
        if c.imp.pruner and not prev_failed:
            # the pruning step of a method that updates the weights it keeps (woodfisher_imp):
            # the trained network pruned with the update; rewinding (below) throws it away
            if plan.criterion != "global":
                raise ValueError(f"{method}: its pruner {c.imp.pruner['method']} ranks globally; "
                                 f"iterative.criterion = {plan.criterion!r} is not allowed (allowed: global)")
            d = c.imp.pruner["data"]
            model.to(dev)
            batches = [(x.to(dev), y.to(dev)) for x, y in
                       datasets.scoring_batches(data, base_meta["dataset"], seed, d["batch_size"],
                                                d["num_batches"], d["class_balanced"])]
            masks, rows_mask, magnitude, record = iterative.prune_round_updating(
                model, list(prev["masks"]), prev["masks"], density, c.imp.pruner, batches, seed, j, method)
            model.cpu()
            masks = {n: m.cpu() for n, m in masks.items()}
            extra["update"] = {**record["update"], "pruner": c.imp.pruner["method"],
                               "discarded": plan.rewind_step is not None}
        else:
            masks, rows_mask, magnitude = iterative.prune_round(weights, prev["masks"], density,
                                                                plan.criterion, seed, j, method, output)
        pruned_round, ranked_by = iterative.update_ranking(prev["pruned_round"], prev["ranked_by"], masks,
                                                           prev["masks"], magnitude, j)
        if plan.rewind_step is not None:  # reset the survivors to theta_k
            model.load_state_dict(load_pt(rewind_path)["state_dict"])
            inputs["rewind"] = input_record(rewind_path)
        positions, lr_of = plan.round_positions(), iterative.round_lr(train_s, plan, spe)
        ckpt = None
        extra["density"] = c.density
        if prev_failed:
            status, reason = "failed", f"round {j - 1} failed: {prev_w['meta'].get('reason', '')}"
    name = f"{label or method} round {j}"
    progress = progress_printer(name)
    what = "dense training" if j == 0 else f"density {float(Fraction(c.density)):.4f}"
    progress(f"{what}: steps {positions.start}..{positions.stop} (T = {plan.train_steps})")
    rows = []
    ckpt_file = resume.for_job(out["weights"], c, inputs)
    if status == "ok":
        ckpt_file.catch_signals()
        try:
            rows = run_steps(model, masks, data, base_meta["dataset"], train_s, seed, dev, positions, lr_of,
                             progress, checkpoints=ckpt, resume=ckpt_file)
        except TrainingDiverged as exc:
            status, reason, rows = "failed", str(exc), exc.rows
            progress(f"FAILED: {reason}")
        finally:
            ckpt_file.release_signals()
    seconds = time.perf_counter() - start + ckpt_file.seconds_before  # (a resumed round: both runs)
    metrics = (evaluate(model, data, base_meta["dataset"], train_s.eval_batch_size, dev)
               if status == "ok" else {})
    if metrics:
        progress(f"test top1 {100 * metrics['top1']:.2f}%")
    paper = registry.method(method).paper
    # the chain up to this round is what a cell at this round's ratio cost
    chain_seconds = seconds + (0.0 if j == 0 else base_meta.get("chain_seconds", base_meta["train_seconds"]))
    meta = {**base_meta, "method": method, "round": j, "plan": dataclasses.asdict(plan), "paper": paper,
            "status": status, "reason": reason, "device": str(dev), "train_seconds": seconds,
            "chain_seconds": chain_seconds,
            "test": metrics, **extra, "settings_hash": c.hash(), **provenance(), "inputs": inputs}
    state = cpu_state(model)
    save_pt({"state_dict": state, "meta": meta}, out["weights"])
    ratio = Fraction(1) if j == 0 else 1 / Fraction(c.density)
    mask_meta = {"method": method, "round": j, "seed": seed, "ratio": float(ratio), "scope": plan.criterion,
                 "target_kept": masking.target_kept(rows_mask, ratio, plan.criterion), "paper": paper,
                 "seconds": seconds, **masking.mask_summary(rows_mask), **extra,
                 "settings_hash": c.hash(), "inputs": inputs}
    rates = iterative.layer_rates_record(rows_mask)
    if rates:  # layer_output_half: the round's rates and every count off round(ideal), in the open
        mask_meta["layer_rates"] = rates
    save_pt({"masks": masks, "rows": rows_mask, "pruned_round": pruned_round, "ranked_by": ranked_by,
             "meta": mask_meta}, out["mask"])
    write_parquet(rows_mask, out["mask_table"], metadata={"method": method, "round": j, "seed": seed})
    write_parquet(rows, out["train_log"], metadata={"seed": seed, "device": str(dev), "round": j})
    if j == 0:
        # (a run that diverged before the rewind step leaves its last weights, marked failed)
        rewind_meta = {**base_meta, "step": rewind_step, "status": status, "reason": reason,
                       "plan": dataclasses.asdict(plan), "inputs": inputs}
        save_pt({"state_dict": ckpt[rewind_step] or state, "meta": rewind_meta}, out["rewind"])
    ckpt_file.remove()


def run_imp_rounds(weights_paths: list, out) -> list[dict]:
    """One row per round of a chain (from each round's weights.pt): density, ratio, test
    accuracy after its retraining, status, training time; for the report's IMP table."""
    rows = []
    for path in weights_paths:
        meta = load_pt(path)["meta"]
        density = Fraction(meta.get("density", "1"))
        test = meta.get("test") or {}
        rows.append({"dataset": meta["dataset"], "arch": meta["arch"], "method": meta["method"],
                     "seed": int(meta["seed"]), "round": int(meta["round"]), "density": float(density),
                     "ratio": float(1 / density), "top1": test.get("top1", float("nan")),
                     "top5": test.get("top5", float("nan")), "test_loss": test.get("test_loss", float("nan")),
                     "status": meta.get("status", "ok"), "train_seconds": meta.get("train_seconds", 0.0)})
    rows.sort(key=lambda r: r["round"])
    write_parquet(rows, out)
    return rows
