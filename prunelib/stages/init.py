"""The init stage: a network drawn from its seed, and the table of its parameters."""

from __future__ import annotations

import time

from prunelib.config.contracts import InitContract
from prunelib.foundations.artifacts import save_pt, write_parquet
from prunelib.foundations.seeding import seed_everything
from prunelib.nets import init_schemes, models
from prunelib.stages.common import build_model, cpu_state, provenance


def run_init(c: InitContract, out_weights, out_table) -> None:
    start = time.perf_counter()
    seed_everything(c.seed, "init")
    model = build_model(c.arch, c.dataset, c.model)
    init_schemes.apply(model, c.init_scheme)
    prunable = models.prunable_names(model, c.prune.include_bias, c.prune.include_norm)
    meta = {"arch": c.arch, "dataset": c.dataset, "seed": c.seed, "init_scheme": c.init_scheme,
            **({"model": c.model} if c.model else {}),
            "prunable": prunable, "seconds": time.perf_counter() - start,
            "settings_hash": c.hash(), **provenance()}
    save_pt({"state_dict": cpu_state(model), "meta": meta}, out_weights)
    rows = [{"name": n, "shape": "x".join(map(str, p.shape)), "numel": p.numel(), "prunable": n in prunable}
            for n, p in model.named_parameters()]
    write_parquet(rows, out_table, metadata={"arch": c.arch, "dataset": c.dataset, "seed": c.seed,
                                             "init_scheme": c.init_scheme})
