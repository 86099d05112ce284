"""The five per-cell stages (init, score, mask, train, eval), as plain functions.

Each reads its inputs from disk and writes its artifacts atomically; the Snakemake
rules call them through ``python -m prunelib <stage>``, and a user can call them from
Python.  Every artifact carries a ``meta`` dict with the settings that made it and, under
``inputs``, the path and SHA-256 of every artifact it was made from (its lineage; each
read is verified against that digest first, see ``prunelib.foundations.artifacts``).
"""

from __future__ import annotations

import dataclasses
import time
from fractions import Fraction
from pathlib import Path

import torch

import prunelib
from prunelib.data import datasets
from prunelib.nets import init_schemes
from prunelib.methods import iterative
from prunelib.methods import masking
from prunelib.nets import models
from prunelib.catalogue import registry
from prunelib.train import resume
from prunelib.methods import variants
from prunelib.foundations.artifacts import input_record, load_pt, read_parquet_rows, save_pt, write_parquet
from prunelib.audit.rows import LINEAGE_COLUMNS, RERUN_VARYING_COLUMNS, TIMING_COLUMNS  # noqa: F401
from prunelib.config.settings import EvalSettings, PruneSettings, TrainSettings
from prunelib.config.contracts import settings_hash
from prunelib.train.metrics import MISSING as MISSING_METRICS
from prunelib.train.metrics import beyond_top1
from prunelib.foundations.seeding import seed_everything
from prunelib.train.loop import (TrainingDiverged, evaluate, progress_printer, resolve_device, run_steps,
                               steps_per_epoch, train, training_examples)


def _provenance() -> dict:
    return {"prunelib_version": prunelib.__version__, "torch_version": str(torch.__version__)}


def build_model(arch: str, dataset: str, options: dict | None = None) -> torch.nn.Module:
    """``arch`` shaped for ``dataset``; ``options``: ``config.ModelSettings.options_for(arch)``."""
    d = datasets.info(dataset)
    return models.build(arch, d.num_classes, d.in_channels, d.image_size, **(options or {}))


def load_model(init_path: str | Path) -> tuple[torch.nn.Module, dict]:
    """Network rebuilt from an init (or final) artifact, and the artifact's meta."""
    return model_from(load_pt(init_path))


def model_from(blob: dict) -> tuple[torch.nn.Module, dict]:
    """Network rebuilt from a loaded weights artifact ({state_dict, meta}), and its meta."""
    meta = blob["meta"]
    model = build_model(meta["arch"], meta["dataset"], meta.get("model"))
    model.load_state_dict(blob["state_dict"])
    return model, meta


# --- init -----------------------------------------------------------------------------

def run_init(settings: dict, out_weights, out_table) -> None:
    """settings: ``config.init_settings`` (arch, dataset, seed, init_scheme, prune)."""
    arch, dataset, seed, scheme = (settings[k] for k in ("arch", "dataset", "seed", "init_scheme"))
    prune = PruneSettings(**settings["prune"])
    start = time.perf_counter()
    seed_everything(seed, "init")
    model = build_model(arch, dataset, settings.get("model"))
    init_schemes.apply(model, scheme)
    prunable = models.prunable_names(model, prune.include_bias, prune.include_norm)
    meta = {"arch": arch, "dataset": dataset, "seed": seed, "init_scheme": scheme,
            **({"model": settings["model"]} if settings.get("model") else {}),
            "prunable": prunable, "seconds": time.perf_counter() - start,
            "settings_hash": settings_hash(settings), **_provenance()}
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    save_pt({"state_dict": state, "meta": meta}, out_weights)
    rows = [{"name": n, "shape": "x".join(map(str, p.shape)), "numel": p.numel(), "prunable": n in prunable}
            for n, p in model.named_parameters()]
    write_parquet(rows, out_table, metadata={"arch": arch, "dataset": dataset, "seed": seed,
                                             "init_scheme": scheme})


# --- score ----------------------------------------------------------------------------

def compute_scores(model: torch.nn.Module, prunable: list[str], method: str, data: dict | None,
                   dataset: str, seed: int, data_settings: dict, knobs: dict,
                   device: torch.device) -> tuple[dict, dict]:
    """Scores of ``method`` for the ``prunable`` parameters of ``model`` (on the CPU), and
    what was used to compute them (scoring data, method settings).  ``data_settings``:
    ``ScoreSettings.data_for(method)``; ``knobs``: ``ScoreSettings.knobs_for(method)``."""
    scorer = registry.method(method).make_scorer(knobs)
    model.to(device)
    named = dict(model.named_parameters())
    params = {n: named[n] for n in prunable}
    batches = []
    used = {}
    if scorer.needs_data:
        d = data_settings
        batches = [(x.to(device), y.to(device)) for x, y in
                   datasets.scoring_batches(data, dataset, seed, d["batch_size"], d["num_batches"],
                                            d["class_balanced"])]
        used = {**d, "n_examples": d["batch_size"] * d["num_batches"]}
    scores = {n: s.detach().cpu() for n, s in scorer.score(model, params, batches, seed).items()}
    return scores, {**used, **scorer.describe()}


def run_score(settings: dict, init_path, data_path, out) -> None:
    """settings: ``stage_settings.score_settings`` (method, seed, data, knobs, device)."""
    method, seed = settings["method"], settings["seed"]
    m = registry.method(method)
    needs_data = m.make_scorer(settings["knobs"]).needs_data
    model, meta = load_model(init_path)
    data = datasets.load_prepared(data_path) if needs_data else None
    dev = resolve_device(settings["device"])
    start = time.perf_counter()
    scores, used = compute_scores(model, meta["prunable"], method, data, meta["dataset"], seed, settings["data"],
                                  settings["knobs"], dev)
    seconds = time.perf_counter() - start
    masking.check_finite(scores, method)
    save_pt({"scores": scores,
             "meta": {"method": method, "seed": seed, "scope": m.scope, "paper": m.paper, **used,
                      "n_examples": used.get("n_examples", 0), "seconds": seconds, "device": str(dev),
                      "init": meta, "settings_hash": settings_hash(settings), **_provenance(),
                      "inputs": {"init": input_record(init_path),
                                 **({"data": input_record(data_path)} if needs_data else {})}}}, out)


# --- mask -----------------------------------------------------------------------------

@dataclasses.dataclass
class _Selected:
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


def _mask_dense(settings: dict, init_path, _scores_path) -> _Selected:
    """The dense control: every prunable weight kept."""
    blob = load_pt(init_path)
    scores = {n: torch.ones_like(blob["state_dict"][n]) for n in blob["meta"]["prunable"]}
    masks, rows = masking.select_masks(scores, settings["ratio"], "all", settings["seed"],
                                       method=settings["method"])
    return _Selected(masks, rows, None, "all", {}, inputs={"init": input_record(init_path)})


def _mask_from_scores(settings: dict, _init_path, scores_path) -> _Selected:
    """A single-pass foresight method: the top-k of its stored scores."""
    m = registry.method(settings["method"])
    blob = load_pt(scores_path)
    masks, rows = masking.select_masks(blob["scores"], settings["ratio"], m.scope, settings["seed"],
                                       method=m.name)
    return _Selected(masks, rows, blob["scores"], m.scope, {}, blob["meta"].get("seconds", 0.0),
                     {"scores": input_record(scores_path)})


def _mask_rescoring(settings: dict, init_path, scores_path) -> _Selected:
    """A method whose scores depend on the ratio (SynFlow): pruned by its scorer, which
    scores again between rounds."""
    m = registry.method(settings["method"])
    scorer = m.make_scorer(settings["knobs"])
    model, meta = load_model(init_path)
    model.to(resolve_device(settings["device"]))
    named = dict(model.named_parameters())
    params = {n: named[n] for n in meta["prunable"]}
    masks, rows, ranking = scorer.prune(model, params, settings["ratio"], m.scope, settings["seed"], method=m.name,
                                        ranking=variants.needs_ranking(settings.get("variant")))
    ranking = ranking and {n: v.cpu() for n, v in ranking.items()}  # (only a variant that reads it builds it)
    return _Selected({n: mk.cpu() for n, mk in masks.items()}, rows, ranking,
                     m.scope, scorer.describe(), load_pt(scores_path)["meta"].get("seconds", 0.0),
                     {"scores": input_record(scores_path), "init": input_record(init_path)})


def _mask_from_chain(settings: dict, _init_path, round_mask_path) -> _Selected:
    """An iterative method: the mask of the chain round that lands on the ratio (the
    chain's time is the cell's train time)."""
    blob = load_pt(round_mask_path)
    ranking = (masking.removal_ranking(blob["pruned_round"], blob["ranked_by"])
               if variants.needs_ranking(settings.get("variant")) else None)
    extra = {"imp_round": blob["meta"]["round"], "paper": blob["meta"]["paper"]}
    if "layer_rates" in blob["meta"]:
        extra["layer_rates"] = blob["meta"]["layer_rates"]
    return _Selected(blob["masks"], blob["rows"], ranking, settings["criterion"], extra,
                     inputs={"scores": input_record(round_mask_path)})


def _mask_structured(settings: dict, init_path, scores_path) -> _Selected:
    """A structured method: whole filters chosen by their summed scores, the input
    channels they fed removed with them (prunelib/methods/structured.py); the record of pruned
    filters per layer and of the deviation from the target goes into the mask's meta."""
    from prunelib.methods import structured

    m = registry.method(settings["method"])
    model, meta = load_model(init_path)
    blob = load_pt(scores_path)
    masks, rows, record = structured.select_filters(model, blob["scores"], meta["prunable"], settings["ratio"],
                                                    m.scope, settings["seed"])
    return _Selected(masks, rows, None, m.scope, {"structured": record}, blob["meta"].get("seconds", 0.0),
                     {"scores": input_record(scores_path), "init": input_record(init_path)})


def _mask_path(method: str):
    entry = registry.method(method)
    if entry.kind == "dense":
        return _mask_dense
    if entry.structured:
        return _mask_structured
    if entry.kind == "iterative":
        return _mask_from_chain
    return _mask_rescoring if entry.rescores else _mask_from_scores


def run_mask(settings: dict, init_path, scores_path, out_mask, out_table) -> None:
    """settings: ``stage_settings.mask_settings`` (method, ratio, seed; knobs and device
    for methods that re-score; imp_round for IMP; variant).  ``scores_path``: the
    method's scores, the chain round's mask.pt for IMP methods, unused for the dense
    control."""
    method, ratio, seed = settings["method"], settings["ratio"], settings["seed"]
    start = time.perf_counter()
    sel = _mask_path(method)(settings, init_path, scores_path)
    masks, rows, extra = sel.masks, sel.rows, dict(sel.extra)
    if settings.get("variant"):
        v = settings["variant"]
        masks, new_rows, record = variants.transform_mask(v["variant"], masks, v["seed"], sel.ranking,
                                                          ratio, sel.scope, method)
        rows = new_rows or _recount_rows(rows, masks)
        extra["variant"] = record
    seconds = time.perf_counter() - start
    summary = masking.mask_summary(rows)
    target = _target_kept(rows, ratio, sel.scope)
    meta = {"method": method, "ratio": float(ratio), "seed": seed, "scope": sel.scope, "target_kept": target,
            **summary, **extra, "seconds": seconds, "score_seconds": sel.score_seconds,
            "settings_hash": settings_hash(settings), **_provenance(), "inputs": sel.inputs}
    save_pt({"masks": masks, "meta": meta}, out_mask)
    write_parquet(rows, out_table, metadata={k: meta[k] for k in ("method", "ratio", "seed", "scope",
                                                                  "target_kept", "n_kept", "n_prunable")})


def _target_kept(rows: list[dict], ratio, scope: str) -> int:
    """The kept count a mask at ``ratio`` must have: round(n / r) over all prunable weights
    (global, and IMP's layer_output_half, whose layer rates meet that total exactly) or
    summed per tensor (layer)."""
    if scope == "layer":
        return sum(masking.kept_count(r["numel"], ratio) for r in rows)
    return masking.kept_count(sum(r["numel"] for r in rows), ratio)


def _recount_rows(rows: list[dict], masks: dict) -> list[dict]:
    """Audit rows of a mask transformed after selection (kept counts per tensor are
    recounted; the selection's threshold and tie records stay those of the method)."""
    out = []
    for r in rows:
        kept = int(masks[r["name"]].sum())
        out.append({**r, "kept": kept, "density": kept / r["numel"], "collapsed": kept == 0})
    return out


# --- train ----------------------------------------------------------------------------

def _train_settings(settings: dict) -> TrainSettings:
    return TrainSettings(**{k: tuple(v) if isinstance(v, list) else v for k, v in settings["train"].items()})


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


def _label(meta: dict, seed: int, label: str) -> str:
    return label or f"{meta['dataset']}/{meta['arch']} seed{seed}"


def run_train(settings: dict, init_path, mask_path, data_path, out_weights, out_log, label: str = "",
              reuse_log=None) -> None:
    """settings: ``config.cell_train_settings`` (seed, train, device; imp and mode for IMP
    cells; variant).  ``init_path`` holds the weights training starts from: the init
    artifact, or for IMP cells the chain's rewind point or previous round (``mode:
    imp_retrain``), or the round's trained weights with their log ``reuse_log``
    (``mode: imp_result``, which trains nothing: the chain already did)."""
    seed, mode = settings["seed"], settings.get("mode", "train")
    model, init_meta = load_model(init_path)
    mask_blob = load_pt(mask_path)
    masks = mask_blob["masks"]
    inputs = {"init": input_record(init_path), "mask": input_record(mask_path)}
    if mode == "imp_result":
        rows = read_parquet_rows(reuse_log)
        inputs["log"] = input_record(reuse_log)
        state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        # the cell cost the whole chain up to its round (rounds before a chain_seconds record: this one)
        meta = {**init_meta, "mask": mask_blob["meta"], "settings_hash": settings_hash(settings),
                "train_seconds": init_meta.get("chain_seconds", init_meta.get("train_seconds", 0.0)),
                "reused_from": str(init_path), **_provenance(), "inputs": inputs}
        save_pt({"state_dict": state, "meta": meta}, out_weights)
        write_parquet(rows, out_log, metadata={"seed": seed, "device": init_meta.get("device", "")})
        return
    train_s = _train_settings(settings).for_dataset(init_meta["dataset"])
    data = datasets.load_prepared(data_path)
    inputs["data"] = input_record(data_path)
    dev = resolve_device(settings["device"])
    extra = {}
    if settings.get("after_pruning") == "redraw":
        model.load_state_dict(redrawn_state(init_meta, seed))
        extra["after_pruning"] = "redraw"
    if settings.get("variant"):
        v = settings["variant"]
        state = dict(model.state_dict())
        extra["variant"] = variants.transform_weights(
            v["variant"], state, masks, v["seed"],
            lambda: fresh_init_state(init_meta.get("init", init_meta), v["seed"], "variant:reinit"))
    name = _label(init_meta, seed, label)
    progress = progress_printer(name)
    status, reason = "ok", ""
    # a killed job's rerun resumes here (prunelib.train.resume); the file goes once outputs are written
    ckpt_file = resume.for_job(out_weights, settings, inputs).catch_signals()
    ckpt_steps = kept_checkpoint_steps(settings, train_s, data, seed)
    test_ckpts = {k: None for k in ckpt_steps}
    try:
        if mode == "imp_retrain":
            spe = steps_per_epoch(training_examples(data, train_s, seed), train_s.batch_size)
            plan = iterative.resolve_plan(settings["imp"]["imp"], spe, train_s.epochs, train_s.steps)
            rows = run_steps(model, masks, data, init_meta["dataset"], train_s, seed, dev,
                             plan.round_positions(), iterative.round_lr(train_s, plan, spe), progress,
                             resume=ckpt_file)
            extra["imp_plan"] = dataclasses.asdict(plan)
        else:
            rows = train(model, masks, data, init_meta["dataset"], train_s, seed, dev, progress, label=name,
                         resume=ckpt_file, checkpoints=test_ckpts)
    except TrainingDiverged as exc:
        # A diverged cell is a result, not a crash: it is recorded as failed with its reason
        # and the grid goes on; eval and the tables show it as failed.
        status, reason, rows = "failed", str(exc), exc.rows
        progress(f"FAILED: {reason}")
    finally:
        ckpt_file.release_signals()
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    meta = {**init_meta, "mask": mask_blob["meta"], "device": str(dev), "status": status, "reason": reason,
            "train_seconds": sum(r["seconds"] for r in rows), **extra,
            "settings_hash": settings_hash(settings), **_provenance(), "inputs": inputs}
    blob = {"state_dict": state, "meta": meta}
    if ckpt_steps:  # weights for the eval stage's best-of-checkpoints metric (eval.every_steps)
        blob["test_checkpoints"] = {k: v for k, v in test_ckpts.items() if v is not None}
    save_pt(blob, out_weights)
    write_parquet(rows, out_log, metadata={"seed": seed, "device": str(dev)})
    ckpt_file.remove()


def kept_checkpoint_steps(settings: dict, train_s: TrainSettings, data: dict, seed: int) -> list[int]:
    """The steps after which a train job keeps its weights for the test evaluations of
    ``eval.every_steps`` / ``eval.keep_last`` (none unless the cell's settings ask)."""
    spec = settings.get("test_checkpoints")
    if not spec:
        return []
    total = train_s.total_steps(steps_per_epoch(training_examples(data, train_s, seed), train_s.batch_size))
    return EvalSettings(**spec).checkpoint_steps(total)


# --- iterative magnitude pruning: one round of a chain ----------------------------------

def run_imp_round(settings: dict, data_path, out: dict, init_path=None, prev_weights=None, prev_mask=None,
                  rewind_path=None, label: str = "") -> None:
    """settings: ``config.imp_round_settings``.  Round 0 trains the dense network from
    ``init_path`` for T steps and writes ``rewind.pt`` (the weights at the rewind step;
    at step 0 when the method keeps trained weights).  Round j >= 1 prunes the previous
    round's trained weights (``prev_weights``, with the chain's ranking in ``prev_mask``)
    to density d_j, resets the survivors to ``rewind_path`` (or keeps them) and retrains.
    ``out`` maps each output role (``paths.IMP_FILES``) to its path:
    weights.pt (trained), mask.pt (masks, ranking, audit rows), mask.parquet,
    train_log.parquet."""
    method, seed, j = settings["method"], settings["seed"], settings["round"]
    missing = [r for r in ("weights", "mask", "mask_table", "train_log") + (("rewind",) if j == 0 else ())
               if not out.get(r)]
    if missing:
        raise ValueError(f"imp round {j}: no output path for {', '.join(missing)}")
    start_path = init_path if j == 0 else prev_weights
    start_blob = load_pt(start_path)  # read once
    train_s = _train_settings(settings).for_dataset(start_blob["meta"]["dataset"])
    data = datasets.load_prepared(data_path)
    inputs = {"data": input_record(data_path), ("init" if j == 0 else "prev_weights"): input_record(start_path)}
    dev = resolve_device(settings["device"])
    spe = steps_per_epoch(training_examples(data, train_s, seed), train_s.batch_size)
    plan = iterative.resolve_plan(settings["imp"], spe, train_s.epochs, train_s.steps)
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
        density = Fraction(settings["density"])
        prev_failed = prev_w["meta"].get("status", "ok") != "ok"
        weights = prev_w["state_dict"]
        if prev_failed:  # its weights may be NaN: keep the chain's densities exact, train nothing
            weights = {n: torch.nan_to_num(v, nan=0.0, posinf=0.0, neginf=0.0) for n, v in weights.items()}
        output = (iterative.output_layer(model, prev["masks"]) if plan.criterion == iterative.LAYER_OUTPUT_HALF
                  else ())
        masks, rows_mask, magnitude = iterative.prune_round(weights, prev["masks"], density,
                                                            plan.criterion, seed, j, method, output)
        pruned_round, ranked_by = iterative.update_ranking(prev["pruned_round"], prev["ranked_by"], masks,
                                                           prev["masks"], magnitude, j)
        if plan.rewind_step is not None:  # reset the survivors to theta_k
            model.load_state_dict(load_pt(rewind_path)["state_dict"])
            inputs["rewind"] = input_record(rewind_path)
        positions, lr_of = plan.round_positions(), iterative.round_lr(train_s, plan, spe)
        ckpt = None
        extra["density"] = settings["density"]
        if prev_failed:
            status, reason = "failed", f"round {j - 1} failed: {prev_w['meta'].get('reason', '')}"
    name = f"{label or method} round {j}"
    progress = progress_printer(name)
    what = "dense training" if j == 0 else f"density {float(Fraction(settings['density'])):.4f}"
    progress(f"{what}: steps {positions.start}..{positions.stop} (T = {plan.train_steps})")
    rows = []
    ckpt_file = resume.for_job(out["weights"], settings, inputs)
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
            "test": metrics, **extra, "settings_hash": settings_hash(settings), **_provenance(), "inputs": inputs}
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    save_pt({"state_dict": state, "meta": meta}, out["weights"])
    ratio = Fraction(1) if j == 0 else 1 / Fraction(settings["density"])
    mask_meta = {"method": method, "round": j, "seed": seed, "ratio": float(ratio), "scope": plan.criterion,
                 "target_kept": _target_kept(rows_mask, ratio, plan.criterion), "paper": paper,
                 "seconds": seconds, **masking.mask_summary(rows_mask), **extra,
                 "settings_hash": settings_hash(settings), "inputs": inputs}
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


# --- eval -----------------------------------------------------------------------------

# (which eval-row columns vary between reruns is compare_rows's to say)


def multiply_accumulates(model: torch.nn.Module, masks: dict[str, torch.Tensor],
                         dataset: str) -> tuple[int, int]:
    """Dense and masked multiply-accumulates (MACs) of one forward pass of one example.

    Per Conv/Linear layer l, with k_l the weights the mask keeps (all of them where the
    layer's weight is not prunable) and n_l its number of weights:

        Conv:   MACs_l = out_h * out_w * k_l      (each kept weight, once per output pixel)
        Linear: MACs_l = k_l

    Dense MACs use n_l instead of k_l; the theoretical speed-up (Blalock et al. 2020) is
    sum_l dense MACs_l / sum_l masked MACs_l.  Output sizes come from forward hooks on a
    zero input of the dataset's shape, so any network of Conv and Linear layers works.
    Biases, activations and pooling are not counted (as in ShrinkBench).
    """
    d = datasets.info(dataset)
    kept_by_module = {}
    for name, module in model.named_modules():
        if isinstance(module, (torch.nn.Linear, torch.nn.modules.conv._ConvNd)):
            key = f"{name}.weight" if name else "weight"
            n = module.weight.numel()
            kept_by_module[module] = (n, int(masks[key].sum()) if key in masks else n)
    totals = [0, 0]

    def hook(module, _inputs, output):
        n, k = kept_by_module[module]
        # Conv: one MAC per kept weight per output position; Linear: per example
        positions = output[0, 0].numel() if isinstance(module, torch.nn.modules.conv._ConvNd) else 1
        totals[0] += positions * n
        totals[1] += positions * k

    handles = [m.register_forward_hook(hook) for m in kept_by_module]
    try:
        was_training = model.training
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, d.in_channels, d.image_size, d.image_size,
                              device=next(model.parameters()).device))
        model.train(was_training)
    finally:
        for h in handles:
            h.remove()
    return totals[0], totals[1]


def run_eval(settings: dict, final_path, mask_path, data_path, out) -> dict:
    """settings: ``config.eval_settings`` (method, ratio, seed, eval_batch_size, device, cell_hash)."""
    method, ratio, seed = settings["method"], float(settings["ratio"]), int(settings["seed"])
    final_blob = load_pt(final_path)
    model, meta = model_from(final_blob)
    mask_blob = load_pt(mask_path)
    masks = mask_blob["masks"]
    data = datasets.load_prepared(data_path)
    dev = resolve_device(settings["device"])
    start = time.perf_counter()
    status, reason = meta.get("status", "ok"), meta.get("reason", "")
    if status == "ok":
        logits = []
        metrics = evaluate(model, data, meta["dataset"], settings["eval_batch_size"], dev, logits=logits)
        metrics.update(beyond_top1(torch.cat(logits), data["test_y"], datasets.info(meta["dataset"]).num_classes))
    else:
        metrics = {"top1": float("nan"), "top5": float("nan"), "test_loss": float("nan"), **MISSING_METRICS}
    metrics.update(best_of_checkpoints(final_blob.get("test_checkpoints") or {}, meta, data,
                                       settings["eval_batch_size"], dev))
    eval_seconds = time.perf_counter() - start
    params = dict(model.named_parameters())
    n_prunable = sum(params[n].numel() for n in masks)
    n_nonzero_prunable = sum(int((params[n] != 0).sum()) for n in masks)
    collapsed = [n for n, m in masks.items() if not bool(m.any())]
    r_e = n_prunable / n_nonzero_prunable if n_nonzero_prunable else float("inf")
    macs_dense, macs_kept = multiply_accumulates(model, masks, meta["dataset"])
    row = {
        "arch": meta["arch"], "dataset": meta["dataset"], "method": method, "ratio": ratio,
        "seed": seed, "variant": settings.get("variant", "none"), "init_scheme": meta["init_scheme"],
        **metrics,
        "n_params": sum(p.numel() for p in params.values()),
        "n_prunable": n_prunable,
        "n_nonzero": sum(int((p != 0).sum()) for p in params.values()),
        "n_nonzero_prunable": n_nonzero_prunable,
        "n_kept": sum(int(m.sum()) for m in masks.values()),
        "empirical_ratio": r_e, "compression_error": (r_e - ratio) / ratio,
        "collapsed_layers": len(collapsed), "collapsed_names": ",".join(collapsed),
        "macs_dense": macs_dense, "macs_kept": macs_kept,
        "speedup": macs_dense / macs_kept if macs_kept else float("inf"),
        "train_seconds": meta["train_seconds"], "score_seconds": meta["mask"].get("score_seconds", 0.0),
        "eval_seconds": eval_seconds,
        "status": status, "reason": reason,
        "prunelib_version": prunelib.__version__, "torch_version": str(torch.__version__),
        "device": meta["device"], "settings_hash": settings["cell_hash"],
        **lineage_columns(meta, mask_blob["meta"], input_record(data_path), input_record(mask_path),
                          input_record(final_path)),
    }
    row.update(_measured(model, masks, mask_blob["meta"], data, meta, dev, status))
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
    return dict(zip(LINEAGE_COLUMNS, map(digest, records), strict=True))  # (data, init, scores, mask, final)


def _measured(model, masks, mask_meta, data, meta, dev, status) -> dict:
    """Measured speed-ups (prunelib/methods/slimming.py): the slimmed network of a structured
    mask against the masked one, or CSR Linear layers of an unstructured mask at >= 90%
    sparsity; NaN where they do not apply (or the cell failed)."""
    from prunelib.methods import slimming

    rec = mask_meta.get("structured")
    extra = {"granularity": "filter" if rec else "weight",
             "filter_deviation": rec["filter_deviation"] if rec else 0,
             "target_reached": rec["target_reached"] if rec else True}
    if status != "ok":
        return {**extra, **slimming.measure_missing(dev)}
    return {**extra, **slimming.measure(model, masks, data, meta["dataset"], dev, rec is not None)}


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
