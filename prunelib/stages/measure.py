"""The measure stage: every cell's measured speed-ups, timed one cell after another on a
machine that runs nothing else of the workflow.

Speed-ups timed inside each eval job shared the cores with whatever other jobs ran at the
same time, and one cell's seeds varied up to 4x (issue 27).  So the eval stage no longer
times anything; this stage, run once by the ``measure`` rule after every eval job of the
grid (workflow/rules/measure.smk: it holds all of Snakemake's cores, and on SLURM it asks
for its node exclusively), loads each cell's final weights and mask and times its
speed-ups with ``slimming.measure`` (prunelib/methods/slimming.py: dense and pruned
alternate, repeated until the spread is small or a cap is reached).  One row per cell,
keyed like the eval rows (``eval_row.KEY``); ``aggregate`` merges them into
results/all.parquet.  Failed cells get NaN.
"""

from __future__ import annotations

from pathlib import Path

from prunelib.config.contracts import MeasureContract
from prunelib.data import datasets
from prunelib.foundations import eval_row
from prunelib.foundations.artifacts import load_pt, read_parquet_rows, write_parquet
from prunelib.foundations.paths import CELL_FILES
from prunelib.methods import slimming
from prunelib.stages.common import build_model, model_from
from prunelib.train.loop import resolve_device


def run_measure(c: MeasureContract, eval_paths: list[str], data_paths: list[str], out, log=None) -> list[dict]:
    """One row per cell of ``eval_paths`` (its final weights and mask lie beside it, named
    by ``paths.CELL_FILES``): the key, the measured speed-ups with their spread and repeat
    count, and the device they were measured on.  ``data_paths``: the prepared datasets,
    found by file stem (``results/data/<dataset>.pt``)."""
    data_by_name = {Path(p).stem: p for p in data_paths}
    loaded: dict[str, dict] = {}
    dev = resolve_device(c.device)
    rows = []
    for i, path in enumerate(eval_paths):
        (cell,) = read_parquet_rows(path)
        folder = Path(path).parent
        row = {k: cell[k] for k in eval_row.KEY}
        final_blob = load_pt(folder / CELL_FILES["final"])
        model, meta = model_from(final_blob)
        mask_blob = load_pt(folder / CELL_FILES["mask"])
        if meta.get("status", "ok") != "ok":
            measured = slimming.measure_missing(dev)
        else:
            name = meta["dataset"]
            if name not in loaded:
                if name not in data_by_name:
                    raise SystemExit(f"prunelib measure: no --data file for dataset {name!r} "
                                     f"(given: {', '.join(sorted(data_by_name)) or 'none'})")
                loaded[name] = datasets.load_prepared(data_by_name[name])
            if "eigendamage" in mask_blob["meta"]:  # the network it built, against the one it folds into
                from prunelib.methods import eigendamage

                original = build_model(meta["arch"], name, meta.get("model"))
                measured = eigendamage.measure(model, original, meta["eigendamage_spec"], loaded[name], name, dev,
                                               timing=c.timing)
            else:
                measured = slimming.measure(model, mask_blob["masks"], loaded[name], name, dev,
                                            mask_blob["meta"].get("structured") is not None, timing=c.timing)
        row.update({k: measured[k] for k in eval_row.speedup_columns()})
        row["measure_device"] = measured["measure_device"]
        rows.append(row)
        if log is not None:
            shown = ", ".join(f"{k[len('measured_speedup_'):]} {row[k]:.2f}x "
                              f"(IQR {row[k + eval_row.SPREAD_SUFFIX]:.2f}, {row[k + eval_row.REPEATS_SUFFIX]} repeats)"
                              for k in eval_row.MEASURED_SPEEDUPS if row[k] == row[k])
            print(f"[{i + 1}/{len(eval_paths)}] {folder}: {shown or 'nothing to time'}", file=log, flush=True)
    write_parquet(rows, out)
    return rows
