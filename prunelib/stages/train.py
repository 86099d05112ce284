"""The train stage: a cell's masked network trained from where its ``Pruning`` says
(the init, kept or redrawn, or its chain round's weights), with its sanity-check
variant applied to the starting weights."""

from __future__ import annotations

import dataclasses
import time

import torch

from prunelib.config.contracts import TrainContract
from prunelib.config.settings import TrainSettings
from prunelib.data import datasets
from prunelib.foundations.artifacts import input_record, load_pt, read_parquet_rows, save_pt, write_parquet
from prunelib.foundations.seeding import seed_everything
from prunelib.methods import eigendamage, iterative, variants
from prunelib.nets import init_schemes, isometry
from prunelib.stages.common import build_model, cpu_state, load_model, provenance
from prunelib.train import resume
from prunelib.train.loop import (TrainingDiverged, progress_printer, resolve_device, run_steps, steps_per_epoch,
                                 train, training_examples)


def fresh_init_state(meta: dict, seed: int, stream: str) -> dict:
    """Newly initialised weights of the network ``meta`` describes (an init artifact's
    meta), drawn from the named stream with its init scheme."""
    seed_everything(seed, stream)
    model = build_model(meta["arch"], meta["dataset"], meta.get("model"))
    init_schemes.apply(model, meta["init_scheme"])
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def redrawn_state(meta: dict, seed: int) -> dict:
    """``init.after_pruning: redraw``: a fresh draw of the init artifact's scheme (stream
    ``init:after_pruning``) with the biases of Conv and Linear layers zero, as the SNIP
    code's ``weights_ap`` (``initializer_w_ap = vs``, ``initializer_b_ap = zeros``).
    Training masks it like any starting point."""
    state = fresh_init_state(meta, seed, "init:after_pruning")
    model = build_model(meta["arch"], meta["dataset"], meta.get("model"))
    for name, module in model.named_modules():
        if isinstance(module, (torch.nn.Linear, torch.nn.modules.conv._ConvNd)) and module.bias is not None:
            state[f"{name}.bias" if name else "bias"].zero_()
    return state


def progress_label(meta: dict, seed: int, label: str) -> str:
    return label or f"{meta['dataset']}/{meta['arch']} seed{seed}"


def run_train(c: TrainContract, init_path, mask_path, data_path, out_weights, out_log, label: str = "",
              reuse_log=None) -> None:
    """``init_path`` holds the weights training starts from: the init artifact, or for an
    IMP cell the chain's rewind point or previous round (``mode: imp_retrain``), or the
    round's trained weights with their log ``reuse_log`` (``mode: imp_result``, which
    trains nothing: the chain already did)."""
    model, init_meta = load_model(init_path)
    mask_blob = load_pt(mask_path)
    masks = mask_blob["masks"]
    inputs = {"init": input_record(init_path), "mask": input_record(mask_path)}
    if c.mode == "imp_result":
        rows = read_parquet_rows(reuse_log)
        inputs["log"] = input_record(reuse_log)
        # the cell cost the whole chain up to its round (rounds before a chain_seconds record: this one)
        meta = {**init_meta, "mask": mask_blob["meta"], "settings_hash": c.hash(),
                "train_seconds": init_meta.get("chain_seconds", init_meta.get("train_seconds", 0.0)),
                "reused_from": str(init_path), **provenance(), "inputs": inputs}
        save_pt({"state_dict": cpu_state(model), "meta": meta}, out_weights)
        write_parquet(rows, out_log, metadata={"seed": c.seed, "device": init_meta.get("device", "")})
        return
    train_s = c.train  # (resolved for the cell's dataset by the contract)
    data = datasets.load_prepared(data_path)
    inputs["data"] = input_record(data_path)
    dev = resolve_device(c.device)
    extra = {}
    updated = "pruned_by" in init_meta  # (the updated weights of a method that updates what it keeps)
    if "network" in mask_blob:
        # a method that changed the network (EigenDamage): training starts from the network
        # its mask stage built (init.after_pruning does not apply: the built weights are the
        # init's, rotated; recorded as such)
        net = mask_blob["network"]
        model = eigendamage.skeleton(model, net["spec"])
        model.load_state_dict(net["state_dict"])
        init_meta = {**init_meta, "eigendamage_spec": net["spec"]}
        extra["after_pruning"] = "built network (init.after_pruning not applied)"
    elif c.after_pruning == "redraw":
        # a fresh draw: for an updating method (OBS, ...) the update is thrown away with
        # the rest of the pruned network's values; only its mask survives
        model.load_state_dict(redrawn_state(init_meta, c.seed))
        extra["after_pruning"] = "redraw"
        if updated:
            extra["update_discarded"] = True
    elif updated:
        extra["started_from"] = "updated"
    extra.update(signal_propagation(c, model, masks, data, init_meta["dataset"]))
    if c.variant is not None:
        v = c.variant
        state = dict(model.state_dict())
        extra["variant"] = variants.transform_weights(
            v.variant, state, masks, v.seed,
            lambda: fresh_init_state(init_meta.get("init", init_meta), v.seed, "variant:reinit"))
    name = progress_label(init_meta, c.seed, label)
    progress = progress_printer(name)
    status, reason = "ok", ""
    # a killed job's rerun resumes here (prunelib/train/resume.py); the file goes once outputs are written
    ckpt_file = resume.for_job(out_weights, c, inputs).catch_signals()
    ckpt_steps = kept_checkpoint_steps(c, train_s, data)
    test_ckpts = {k: None for k in ckpt_steps}
    try:
        if c.mode == "imp_retrain":
            spe = steps_per_epoch(training_examples(data, train_s, c.seed), train_s.batch_size)
            plan = iterative.resolve_plan(c.imp.imp, spe, train_s.epochs, train_s.steps)
            rows = run_steps(model, masks, data, init_meta["dataset"], train_s, c.seed, dev,
                             plan.round_positions(), iterative.round_lr(train_s, plan, spe), progress,
                             resume=ckpt_file)
            extra["imp_plan"] = dataclasses.asdict(plan)
        else:
            rows = train(model, masks, data, init_meta["dataset"], train_s, c.seed, dev, progress, label=name,
                         resume=ckpt_file, checkpoints=test_ckpts)
    except TrainingDiverged as exc:
        # A diverged cell is a result, not a crash: it is recorded as failed with its reason
        # and the grid goes on; eval and the tables show it as failed.
        status, reason, rows = "failed", str(exc), exc.rows
        progress(f"FAILED: {reason}")
    finally:
        ckpt_file.release_signals()
    meta = {**init_meta, "mask": mask_blob["meta"], "device": str(dev), "status": status, "reason": reason,
            "train_seconds": sum(r["seconds"] for r in rows), **extra,
            "settings_hash": c.hash(), **provenance(), "inputs": inputs}
    blob = {"state_dict": cpu_state(model), "meta": meta}
    if ckpt_steps:  # weights for the eval stage's best-of-checkpoints metric (eval.every_steps)
        blob["test_checkpoints"] = {k: v for k, v in test_ckpts.items() if v is not None}
    save_pt(blob, out_weights)
    write_parquet(rows, out_log, metadata={"seed": c.seed, "device": str(dev)})
    ckpt_file.remove()


def kept_checkpoint_steps(c: TrainContract, train_s: TrainSettings, data: dict) -> list[int]:
    """The steps after which a train job keeps its weights for the test evaluations of
    ``eval.every_steps`` / ``eval.keep_last`` (none unless the cell's contract asks)."""
    if c.test_checkpoints is None:
        return []
    total = train_s.total_steps(steps_per_epoch(training_examples(data, train_s, c.seed), train_s.batch_size))
    return c.test_checkpoints.checkpoint_steps(total)


def signal_propagation(c: TrainContract, model, masks: dict, data: dict, dataset: str) -> dict:
    """``init.after_pruning: approximate_isometry`` (AI on ``model`` in place, its residuals
    per layer before and after under ``isometry``) and ``init.jacobian_spectrum`` (the
    Jacobian singular values, ``jacobian_spectrum``: ``dense`` = the starting weights
    unmasked, ``pruned`` = masked, ``pruned_ai`` = after AI), as the SPP code checks them
    after init, after pruning and after AI (``spp/main.py``, ``--check_jsv``).  The meta
    entries the eval row reads; nothing when neither is set."""
    out = {}
    x = None
    if c.jacobian_examples:
        x = datasets.to_float(data["train_x"][: int(c.jacobian_examples)], dataset)
        out["jacobian_spectrum"] = {"dense": isometry.spectrum(model, None, x, c.jacobian_layers),
                                    "pruned": isometry.spectrum(model, masks, x, c.jacobian_layers)}
    pruned = any(not bool(m.all()) for m in masks.values())
    if c.after_pruning == "approximate_isometry" and not pruned:
        # nothing pruned (the dense control): AI restores nothing, and the code's norm
        # objective would only jitter an exact isometry by about lr per layer
        out["isometry"] = {n: {"before": r, "after": r} for n, r in isometry.residuals(model, masks).items()}
        out["after_pruning"] = "approximate_isometry"
        if x is not None:
            out["jacobian_spectrum"]["pruned_ai"] = out["jacobian_spectrum"]["pruned"]
    elif c.after_pruning == "approximate_isometry":
        spec = c.isometry
        start = time.perf_counter()
        out["isometry"] = isometry.approximate_isometry(model, masks, spec.steps, spec.lr, spec.power)
        out["isometry_seconds"] = time.perf_counter() - start
        out["after_pruning"] = "approximate_isometry"
        if x is not None:
            out["jacobian_spectrum"]["pruned_ai"] = isometry.spectrum(model, masks, x, c.jacobian_layers)
    elif x is not None:  # the diagnostic without AI: the residuals as they are
        out["isometry"] = {n: {"before": r, "after": r} for n, r in isometry.residuals(model, masks).items()}
    return out
