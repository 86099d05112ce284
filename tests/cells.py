"""The suite's one copy of two things every stage test needs: resolved settings, and a
cell's chain init -> score -> mask -> train -> eval run in-process with the contracts
the workflow builds (prunelib/config/contracts.py), so that a test exercises exactly
what a job would run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prunelib import config, stages
from prunelib.catalogue import registry
from prunelib.config import contracts
from prunelib.foundations.paths import CELL_FILES, UPDATED_FILE

#: The order of the stages, and the last one ``run_cell`` may stop after.
STAGES = ("init", "score", "mask", "train", "eval")


def settings(user: dict | None = None, **sections) -> config.Settings:
    """``config.to_settings(config.resolve(...))``: defaults < preset < ``user`` (a config
    dict) with ``sections`` merged over it (``settings(train={"epochs": 1})``)."""
    return config.to_settings(config.resolve(config.deep_merge(user or {}, sections)))


@dataclass(frozen=True)
class CellRun:
    """Where a ``run_cell`` wrote: the cell folder and each file by role."""

    folder: Path

    @property
    def init(self) -> Path:
        return self.folder / "init.pt"

    @property
    def init_table(self) -> Path:
        return self.folder / "init.parquet"

    @property
    def scores(self) -> Path:
        return self.folder / "scores.pt"

    def __getattr__(self, role: str) -> Path:  # mask, mask_table, final, train_log, eval
        if role in CELL_FILES:
            return self.folder / CELL_FILES[role]
        raise AttributeError(role)

    def __truediv__(self, name) -> Path:
        return self.folder / name


def run_cell(root, data_pt, s: config.Settings, arch: str, method: str, ratio, seed: int = 0,
             dataset: str = "mnist", variant: str = "none", until: str = "eval", folder=None) -> CellRun:
    """Run one cell's stages in ``folder`` (default ``root/<arch>/seed<seed>/<method>/r<ratio>[-variant]``)
    up to and including ``until``, each with the contract the workflow would give its job.
    Chain (IMP) methods are not cells of their own here: ``stages.run_imp_round`` runs them."""
    how = registry.method(method).pruning
    if how.chain:
        raise ValueError(f"run_cell: {method} is an IMP chain; run its rounds with stages.run_imp_round")
    ratio = float(ratio)
    suffix = "" if variant == "none" else f"-{variant}"
    cell = CellRun(Path(folder) if folder is not None else
                   Path(root) / arch / f"seed{seed}" / method / f"r{config.format_ratio(ratio)}{suffix}")
    stop = STAGES.index(until)
    stages.run_init(contracts.init_contract(s, arch, dataset, seed, s.init.scheme_for(method)), cell.init,
                    cell.init_table)
    if how.scored and stop >= STAGES.index("score"):
        stages.run_score(contracts.score_contract(s, method, seed, arch, dataset), cell.init, data_pt, cell.scores)
    # a method that updates the weights it keeps: its mask job also writes them (updated.pt),
    # and the cell trains from them (a variant from the init), as workflow/rules/common.smk
    updated = cell / UPDATED_FILE if how.updates_weights else None
    if stop >= STAGES.index("mask"):
        stages.run_mask(contracts.mask_contract(s, method, ratio, seed, variant, arch, dataset), cell.init,
                        cell.scores, cell.mask, cell.mask_table,
                        **({"data_path": data_pt, "out_weights": updated} if updated else {}))
    if stop >= STAGES.index("train"):
        start = updated if updated and variant == "none" else cell.init
        stages.run_train(contracts.train_contract(s, method, ratio, seed, dataset, variant, arch), start,
                         cell.mask, data_pt, cell.final, cell.train_log)
    if stop >= STAGES.index("eval"):
        stages.run_eval(contracts.eval_contract(s, arch, dataset, method, ratio, seed, variant), cell.final,
                        cell.mask, data_pt, cell.eval)
    return cell


#: Timing settings for tests: one or two repeats, no warm-up (what is timed is not asserted).
FAST_TIMING = dict(min_repeats=1, max_repeats=2, min_sample_seconds=0.0, warmup=0)


def measure_cell(cell: CellRun, data_pt, s: config.Settings, out) -> dict:
    """The cell's row of the measure stage (prunelib/stages/measure.py), which times the
    speed-ups the eval row leaves NaN, with ``FAST_TIMING``."""
    from prunelib.methods import slimming

    c = contracts.replace(contracts.measure_contract(s), timing=slimming.Timing(**FAST_TIMING))
    (row,) = stages.run_measure(c, [str(cell.eval)], [str(data_pt)], out)
    return row
