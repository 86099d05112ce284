"""The eval row's columns, named once: its metrics (name, label, direction, scale,
format), which columns vary between reruns, and its lineage.

The eval stage writes these columns (prunelib/stages/eval.py); the tables, figures,
HTML report (prunelib/report/) and the audits (prunelib/audit/) read them from here, and
the config schema's ``report.metric`` allows exactly the metrics below.  Adding a metric
is one ``Metric`` here and its value in the eval row.  No torch import.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    #: The eval-row column.
    column: str
    #: Table titles and axis labels.
    label: str
    #: Column headers of compact tables.
    short: str
    #: Multiplier of the stored value when shown (100: a fraction shown in %).
    scale: float
    higher_is_better: bool

    @property
    def digits(self) -> int:
        """Decimals shown: 2 for percentages, 3 for plain numbers."""
        return 2 if self.scale == 100 else 3

    @property
    def title(self) -> str:
        return self.label + ("" if self.higher_is_better else " (lower is better)")


#: Every metric a table can rank by (``report.metric``); prunelib/train/metrics.py
#: computes the ones beyond top-1 and top-5.
METRICS = {m.column: m for m in (
    Metric("top1", "Top-1 accuracy (%)", "top-1", 100, True),
    Metric("top5", "Top-5 accuracy (%)", "top-5", 100, True),
    Metric("balanced_accuracy", "Balanced accuracy (%)", "bal. acc.", 100, True),
    Metric("min_class_recall", "Worst-class recall (%)", "worst recall", 100, True),
    Metric("ece", "Expected calibration error, 15 bins (%)", "ECE", 100, False),
    Metric("nll", "Test negative log-likelihood", "NLL", 1, False),
)}
#: The metrics every table and the accuracy figure show (``report.metric`` heads them
#: and may add one of the others).
HEADLINE = ("top1", "top5")

#: ``tied_at_cut_fraction``: the share of the prunable weights whose fate the seeded
#: tie-break drew, not the scores; from this share on a cell is marked in the tables (as
#: a collapsed layer is): its mask is partly random.
TIED_SHARE_MARKED = 0.01

#: The columns of a row whose model could not be evaluated (a failed cell), beyond
#: top-1, top-5 and the test loss.
MISSING_METRICS = {"balanced_accuracy": float("nan"), "min_class_recall": float("nan"), "min_recall_class": -1,
                   "ece": float("nan"), "nll": float("nan"), "calibration_bins": "[]"}

#: What identifies a row.
KEY = ("dataset", "arch", "method", "ratio", "seed", "variant")
#: Measured speed-ups, dense time / pruned time (prunelib/methods/slimming.py): the median
#: over repeats.  Each has two companions: ``<column>_iqr``, the interquartile range of the
#: repeats' ratios, and ``<column>_repeats``, how many repeats were taken.  Taken by the
#: ``measure`` stage (prunelib/stages/measure.py), alone on the machine, and merged into
#: the rows by ``aggregate``; NaN in a cell's own eval.parquet.
MEASURED_SPEEDUPS = ("measured_speedup_infer_b1", "measured_speedup_infer_b256", "measured_speedup_train",
                     "measured_speedup_infer_sparse")
SPREAD_SUFFIX, REPEATS_SUFFIX = "_iqr", "_repeats"


def speedup_columns() -> tuple[str, ...]:
    """Every measured speed-up column with its spread and repeat count."""
    return tuple(c + sfx for c in MEASURED_SPEEDUPS for sfx in ("", SPREAD_SUFFIX, REPEATS_SUFFIX))


def seeds_disagree(medians, iqrs) -> bool:
    """Whether the seeds of one cell disagree beyond their measurement spread: some two
    seeds a, b with |median_a - median_b| > IQR_a + IQR_b, i.e. their bands median ± IQR
    do not overlap.  (Different seeds prune different weights, so a real difference is
    possible; the mark says that the noise of the measurement does not explain it.)
    NaN entries are ignored."""
    pairs = [(float(m), float(q)) for m, q in zip(medians, iqrs) if m == m and q == q]
    return any(abs(ma - mb) > qa + qb for i, (ma, qa) in enumerate(pairs) for mb, qb in pairs[i + 1:])


#: Columns that measure time (and speed); everything else is identical between reruns
#: on CPU but the lineage digests of artifacts whose meta records timings.
TIMING_COLUMNS = ("train_seconds", "score_seconds", "eval_seconds", *speedup_columns())
#: The row's lineage: the SHA-256 of the artifacts the cell was made from.
LINEAGE_COLUMNS = ("data_sha256", "init_sha256", "scores_sha256", "mask_sha256", "final_sha256")
RERUN_VARYING_COLUMNS = TIMING_COLUMNS + LINEAGE_COLUMNS
PROVENANCE = ("prunelib_version", "torch_version", "device", "settings_hash", "measure_device", *LINEAGE_COLUMNS)

#: The points at which ``init.jacobian_spectrum`` measures the network training starts
#: from (prunelib/stages/train.py, ``signal_propagation``).
SPECTRUM_POINTS = ("dense", "pruned", "pruned_ai")


def signal_propagation_columns(train_meta: dict) -> dict:
    """The eval row's signal-propagation columns, from the train artifact's meta:
    ``after_pruning``; ``isometry_residual_before`` / ``_after`` (the sum over layers of
    ||(C*W)(C*W)^T - I||_F; null when not measured, as ``best_test_top1``) and ``isometry_residuals`` (JSON,
    per layer); ``jsv_{mean,max,min}_{dense,pruned,pruned_ai}`` (the input-output
    Jacobian's singular values, null when not measured) and ``jacobian_spectrum`` (JSON:
    per point, ``io`` and each layer's mean/std/max/min; ``{}`` when not measured)."""
    iso = train_meta.get("isometry") or {}
    spec = train_meta.get("jacobian_spectrum") or {}
    row = {"after_pruning": train_meta.get("after_pruning", "keep"),
           "isometry_residual_before": math.fsum(v["before"] for v in iso.values()) if iso else None,
           "isometry_residual_after": math.fsum(v["after"] for v in iso.values()) if iso else None,
           "isometry_residuals": json.dumps(iso, sort_keys=True),
           "jacobian_spectrum": json.dumps(spec, sort_keys=True)}
    for point in SPECTRUM_POINTS:
        io = spec.get(point, {}).get("io", {})
        for stat in ("mean", "max", "min"):
            row[f"jsv_{stat}_{point}"] = float(io[stat]) if stat in io else None
    return row
