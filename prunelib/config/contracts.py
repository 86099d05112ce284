"""What each stage's output depends on, besides its input files.

Each dict is passed to its stage as JSON and is a Snakemake ``params:`` value, so a
change reruns exactly that stage and everything downstream of it.  A job that uses a
plugin's method, network or dataset carries the plugin's path and SHA-256 (the job
imports it first), so editing a plugin reruns exactly its jobs.  No torch import.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from prunelib.catalogue import registry
from prunelib.config.grid import imp_densities, imp_round_of
from prunelib.config.settings import Settings, jsonable


def settings_hash(obj: Any) -> str:
    """First 12 hex digits of the SHA-256 of canonical JSON."""
    blob = json.dumps(jsonable(obj), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


# --- per-stage settings: what each stage's output depends on (besides its inputs) ---
# Each dict is passed to its stage as JSON and is a Snakemake `params:` value, so a
# change reruns exactly that stage and everything downstream of it.

def _with_plugins(out: dict, *entries) -> dict:
    """``out`` plus the plugins its entries came from (only when there are any, so that
    built-in jobs' settings, and hashes, do not depend on plugins existing)."""
    records = registry.plugin_records(*entries)
    if records:
        out["plugins"] = records
    return out


def _compute(s: Settings) -> dict:
    """Where a stage computes: the device and, when not 1, the CPU threads (torch's CPU
    kernels reduce in a thread-count-dependent order, so 2 threads give results that
    differ from 1 thread's in the last bits: a changed ``threads`` must rerun the jobs)."""
    return {"device": s.device, **({"threads": int(s.threads)} if int(s.threads) != 1 else {})}


def _network(arch: str, dataset: str) -> tuple:
    return registry.arch(arch), registry.dataset(dataset)


def init_settings(s: Settings, arch: str, dataset: str, seed: int, scheme: str) -> dict:
    out = {"arch": arch, "dataset": dataset, "seed": int(seed), "init_scheme": scheme,
           "prune": dataclasses.asdict(s.prune)}
    if s.model.options_for(arch):  # only networks with options carry them (others' hashes unchanged)
        out["model"] = s.model.options_for(arch)
    return _with_plugins(out, *_network(arch, dataset), registry.get("init scheme", scheme))


def data_settings(dataset: str) -> dict:
    """What a prepared dataset depends on besides the raw files: its loader's plugin."""
    return _with_plugins({"dataset": dataset}, registry.dataset(dataset))


def imp_spec(s: Settings, method: str) -> dict:
    """The generalised-IMP parameters of ``method`` (preset < ``iterative.per_method``),
    with fractions still unresolved (T depends on the data; see iterative.resolve_plan)."""
    it = s.iterative
    spec = dict(registry.method(method).imp)
    spec.update(it.per_method.get(method, {}))
    rewind = spec["rewind_weights_to"]
    if isinstance(rewind, str):
        spec["rewind_weights_to"] = {"fraction": getattr(it, rewind)}
    return {"round_factor": it.round_factor, "criterion": it.criterion, "train_steps": it.train_steps, **spec}


def imp_round_settings(s: Settings, method: str, seed: int, dataset: str, round_: int,
                       arch: str | None = None) -> dict:
    """What round ``round_`` of ``method``'s chain depends on besides its inputs (round 0
    is the dense training; round j >= 1 prunes to ``density`` and retrains)."""
    out = {"method": method, "seed": int(seed), "round": int(round_), "imp": imp_spec(s, method),
           "train": train_settings(s, seed, dataset)["train"], **_compute(s)}
    if round_ > 0:
        d = imp_densities(s.grid.ratios, s.iterative.round_factor)[round_ - 1]
        out["density"] = f"{d.numerator}/{d.denominator}"
    return _with_plugins(out, *(_network(arch, dataset) if arch else ()))


def variant_settings(variant: str, seed: int) -> dict | None:
    """The sanity-check transformation of a cell (None for ``none``)."""
    return None if variant == "none" else {"variant": variant, "seed": int(seed)}


def score_settings(s: Settings, method: str, seed: int, arch: str | None = None,
                   dataset: str | None = None) -> dict:
    """Only what this method's scores depend on, so other methods' knobs never rerun it
    (``arch`` and ``dataset`` only add the plugins they come from, if any)."""
    out = {"method": method, "seed": int(seed), "data": s.score.data_for(method),
           "knobs": s.score.knobs_for(method), **_compute(s)}
    net = _network(arch, dataset) if arch else ()
    return _with_plugins(out, registry.method(method), *net)


def mask_settings(s: Settings, method: str, ratio: float, seed: int, variant: str = "none",
                  arch: str | None = None, dataset: str | None = None) -> dict:
    entry = registry.method(method)
    out = {"method": method, "ratio": float(ratio), "seed": int(seed)}
    if entry.rescores:  # these re-score while pruning
        out.update({"knobs": s.score.knobs_for(method), **_compute(s)})
    if entry.kind == "iterative":  # the mask is a round of the chain
        out.update({"imp_round": imp_round_of(s.grid.ratios, s.iterative.round_factor, ratio),
                    "criterion": s.iterative.criterion})
    if variant != "none":
        out["variant"] = variant_settings(variant, seed)
    net = _network(arch, dataset) if arch else ()
    return _with_plugins(out, entry, *net)


def train_settings(s: Settings, seed: int, dataset: str | None = None) -> dict:
    """With ``dataset``: the train settings as they apply to it (its ``epochs_per_dataset``
    entry as ``epochs``, ``augment: auto`` resolved), so changing one dataset's epochs
    reruns only that dataset's train jobs.  Without it, the whole mapping (the train
    stage resolves it; any change then reruns every train job)."""
    train = s.train.for_dataset(dataset) if dataset is not None else s.train
    out = jsonable(dataclasses.asdict(train))
    for key, unset in (("epochs_per_dataset", {}), ("steps", None), ("milestone_unit", "epochs")):
        if out[key] == unset:  # (absent when unset: existing hashes unchanged)
            del out[key]
    del out["checkpoint_minutes"]  # no result depends on it (jobs get it from the environment)
    return {"seed": int(seed), "train": out, **_compute(s)}


def cell_train_settings(s: Settings, method: str, ratio: float, seed: int, dataset: str,
                        variant: str = "none", arch: str | None = None) -> dict:
    """The train stage's settings for one cell: plain training for foresight methods and
    the dense control; for an IMP method, its chain round's result (variant none) or a
    retraining of the variant with the round's schedule."""
    out = train_settings(s, seed, dataset)
    if s.init.after_pruning != "keep" and registry.method(method).kind != "iterative":
        out["after_pruning"] = s.init.after_pruning  # (absent when keep: existing hashes unchanged)
    if s.eval.every_steps and registry.method(method).kind != "iterative":
        out["test_checkpoints"] = {"every_steps": s.eval.every_steps, "keep_last": s.eval.keep_last}
    if registry.method(method).kind == "iterative":
        j = imp_round_of(s.grid.ratios, s.iterative.round_factor, ratio)
        out["imp"] = imp_round_settings(s, method, seed, dataset, j, arch)
        out["mode"] = "imp_result" if variant == "none" else "imp_retrain"
    if variant != "none":
        out["variant"] = variant_settings(variant, seed)
    return _with_plugins(out, *(_network(arch, dataset) if arch else ()))


def eval_settings(s: Settings, arch: str, dataset: str, method: str, ratio: float, seed: int,
                  variant: str = "none") -> dict:
    """Eval settings carry the hash of everything upstream (the cell's provenance)."""
    kind = registry.method(method).kind
    upstream = {
        "init": init_settings(s, arch, dataset, seed, s.init.scheme_for(method)),
        "score": score_settings(s, method, seed, arch, dataset) if kind == "foresight" else None,
        "mask": mask_settings(s, method, ratio, seed, variant, arch, dataset),
        "train": cell_train_settings(s, method, ratio, seed, dataset, variant, arch),
    }
    if kind == "iterative":  # every round of the chain up to this cell's
        j = imp_round_of(s.grid.ratios, s.iterative.round_factor, ratio)
        upstream["chain"] = [imp_round_settings(s, method, seed, dataset, i, arch) for i in range(j + 1)]
    out = {"method": method, "ratio": float(ratio), "seed": int(seed),
           "eval_batch_size": s.train.eval_batch_size, **_compute(s),
           "cell_hash": settings_hash(upstream)}
    if variant != "none":
        out["variant"] = variant
    return _with_plugins(out, *_network(arch, dataset))
