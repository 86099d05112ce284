"""Statistics of the eval rows: mean ± sample std (n) per cell and the marks.

Blalock et al. ("What is the State of Neural Network Pruning?", MLSys 2020) ask for
every number to come with its spread and its sample size.  A cell of our tables is

    mean ± s (n),   s = sqrt( sum (x_i - mean)^2 / (n - 1) )   (sample std; '–' when n = 1)

of the final-epoch test accuracy over seeds, in percent.  Marks (per column, among the
pruning methods; the dense control and sanity-check variants are references, never
marked):

* **best** (bold): the method with the highest mean, only when it is separable from
  every other method: both have n >= 2 seeds and the difference of the means exceeds
  their combined standard error (a Welch-type rule),

      mean_best - mean_m > sqrt(s_best^2 / n_best + s_m^2 / n_m)   for every other m,

  and never at chance: for an accuracy metric (top-1, top-5, balanced accuracy,
  worst-class recall) a best mean at or below chance + 1/C (C classes; chance = k/C for
  top-k) marks nothing.  Ties (equal means) and single seeds are therefore never bold;
* **tied for best** (italics): where no method is separable, the highest mean and every
  method not separable from it (the rule above fails), so a reader sees the whole group
  rather than one arbitrary winner; nothing is italic at chance;
* **collapsed**: in at least one seed the method's mask kept nothing of some layer.
* **ties**: in at least one seed the seeded tie-break, not the scores, decided the fate of
  at least ``eval_row.TIED_SHARE_MARKED`` of the prunable weights (degenerate scores).

Also the per-layer densities of the heat map (from each cell's ``mask.parquet``).
Nothing here imports torch.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from prunelib.foundations.artifacts import verified_bytes
from prunelib.config.grid import DENSE
from prunelib.foundations.paths import CELL_FILES
from prunelib.foundations.eval_row import HEADLINE, TIED_SHARE_MARKED, METRICS as ALL_METRICS
from prunelib.report.layout import method_order, split_label


#: The accuracy metrics every report has (figures, study table), with their labels.
METRICS = {m: ALL_METRICS[m].label for m in HEADLINE}


SHORT = {m: info.short for m, info in ALL_METRICS.items()}


def _clean(values, scale: float = 100.0) -> list[float]:
    return [scale * float(v) for v in values if v is not None and not math.isnan(v)]


def mean_std_n(values, scale: float = 100.0) -> tuple[float, float, int]:
    """Mean, sample std (n - 1; NaN when n < 2) and n of the non-missing values, times
    ``scale`` (100: in %)."""
    values = _clean(values, scale)
    n = len(values)
    if n == 0:
        return math.nan, math.nan, 0
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else math.nan
    return mean, std, n


def fmt_cell(values) -> str:
    mean, std, n = mean_std_n(values)
    if n == 0:
        return ""
    if n == 1:
        return f"{mean:.2f} ± – (1)"
    return f"{mean:.2f} ± {std:.2f} ({n})"


#: The report's one ECE definition, wherever a figure or a table shows ECE.
ECE_DEFINITION = ("ECE per seed (15 equal-width confidence bins, Guo et al. 2017 Eq. 3; the eval row's ece), "
                  "mean over seeds")


def ece_over_seeds(sub: pd.DataFrame) -> tuple[float, float, int]:
    """ECE of one cell as the reliability diagrams and the beyond-top-1 table both show
    it (``ECE_DEFINITION``): mean, sample std and n over the ok seeds of each seed's ECE,
    in %.  Not the ECE of the bins pooled over seeds (that mixes seeds' confidences and
    is generally smaller)."""
    ok = sub[sub["status"] == "ok"] if "status" in sub.columns else sub
    return mean_std_n(ok["ece"].tolist() if "ece" in ok.columns else [])


def cell_stats(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One row per (dataset, arch, method, ratio): mean, std, n, marks (see module doc)."""
    has_collapse = "collapsed_layers" in df.columns
    has_ties = "tied_at_cut_fraction" in df.columns
    rows = []
    for (dataset, arch, method, ratio), sub in df.groupby(["dataset", "arch", "method", "ratio"], sort=True):
        # (rows from before a metric existed have no column: n = 0, shown as a dash)
        values = sub[metric].tolist() if metric in sub.columns else []
        mean, std, n = mean_std_n(values, ALL_METRICS[metric].scale)
        collapsed = int((sub["collapsed_layers"].fillna(0) > 0).sum()) if has_collapse else 0
        tied = int((sub["tied_at_cut_fraction"].fillna(0) >= TIED_SHARE_MARKED).sum()) if has_ties else 0
        # a failed cell (e.g. diverged training) has an eval row with status "failed" and no
        # accuracy: it is counted and shown, never silently dropped
        failed = int((sub["status"] != "ok").sum()) if "status" in sub.columns else 0
        rows.append({"dataset": dataset, "arch": arch, "metric": metric, "method": method,
                     "ratio": float(ratio), "mean": mean, "std": std, "n": n,
                     "seeds": len(sub), "collapsed_seeds": collapsed, "tied_seeds": tied,
                     "failed_seeds": failed})
    stats = pd.DataFrame(rows)
    return mark_best(stats) if len(stats) else stats


def is_variant(label: str) -> bool:
    return split_label(label)[1] != "none"


#: The accuracy metrics that have a chance level: metric -> k (chance = k / C for C classes).
CHANCE_K = {"top1": 1, "top5": 5, "balanced_accuracy": 1, "min_class_recall": 1}


def num_classes(dataset: str) -> int | None:
    """The number of classes of ``dataset`` (None for a dataset the catalogue does not know)."""
    from prunelib.data import datasets

    try:
        return datasets.info(dataset).num_classes
    except ValueError:
        return None


def chance_ceiling(metric: str, classes: int | None) -> float | None:
    """The mean (in %) at or below which a cell counts as at chance: 100 (k/C + 1/C) for
    an accuracy metric with chance k/C (``CHANCE_K``), capped at 100; None otherwise."""
    if metric not in CHANCE_K or not classes:
        return None
    return 100.0 * min(1.0, (CHANCE_K[metric] + 1) / classes)


def separable(mean_a: float, std_a: float, n_a: int, mean_b: float, std_b: float, n_b: int) -> bool:
    """Whether mean a beats mean b beyond their combined standard error (both n >= 2):
    mean_a - mean_b > sqrt(s_a^2 / n_a + s_b^2 / n_b).  Equal means never separate."""
    if n_a < 2 or n_b < 2:
        return False
    se = math.sqrt((0.0 if math.isnan(std_a) else std_a) ** 2 / n_a
                   + (0.0 if math.isnan(std_b) else std_b) ** 2 / n_b)
    return mean_a - mean_b > se


def mark_best(stats: pd.DataFrame, by=("dataset", "arch", "metric", "ratio")) -> pd.DataFrame:
    """Add ``best`` and ``tied_best`` (see the module doc): per group of ``by``, among
    non-dense, non-variant methods with n > 0.  For a metric where lower is better (ECE,
    NLL) the same with the lowest mean."""
    stats = stats.copy()
    stats["best"] = False
    stats["tied_best"] = False
    for _, group in stats.groupby(list(by), sort=False):
        # the dense control and the sanity-check variants are references, not contenders
        cand = group[(group["method"] != DENSE) & (group["n"] > 0) & ~group["method"].map(is_variant)]
        if cand.empty:
            continue
        name = group["metric"].iloc[0]
        metric = ALL_METRICS.get(name)
        sign = 1.0 if (metric.higher_is_better if metric else True) else -1.0  # compare -mean where lower is better
        ranked = cand.assign(_key=sign * cand["mean"]).sort_values("_key", ascending=False, kind="stable")
        lead = ranked.iloc[0]
        ceiling = chance_ceiling(name, num_classes(group["dataset"].iloc[0]) if "dataset" in group else None)
        if ceiling is not None and lead["mean"] <= ceiling:
            continue  # at chance: no winner worth a mark
        tied = [i for i, row in ranked.iloc[1:].iterrows()
                if not separable(lead["_key"], lead["std"], lead["n"], row["_key"], row["std"], row["n"])]
        if not tied:
            stats.loc[lead.name, "best"] = lead["n"] >= 2  # (one seed alone: nothing to separate)
        else:
            stats.loc[[lead.name, *tied], "tied_best"] = True
    return stats


def read_verified(path, **kw) -> pd.DataFrame:
    """A Parquet artifact, read only after its bytes match their recorded SHA-256."""
    import io

    return pd.read_parquet(io.BytesIO(verified_bytes(path)), **kw)


def declared(cell_dir: str, name: str, files: list | None) -> Path | None:
    """The file ``name`` of a cell folder if it is among ``files`` (the inputs the
    workflow declared), or, with ``files`` None, if it exists beside the eval row."""
    path = Path(cell_dir) / name
    if files is None:
        return path if path.exists() else None
    return path if str(path) in {str(Path(f)) for f in files} else None


def layer_densities(df: pd.DataFrame, ratio: float, mask_tables: list | None = None) -> pd.DataFrame:
    """Methods x layers: mean over seeds of kept / numel at ``ratio``, read from each eval
    row's ``mask.parquet`` (column ``cell_dir``), among ``mask_tables`` when given.
    Columns keep the network's layer order; the numel of each layer is in ``attrs['numel']``."""
    at = df[df["ratio"] == float(ratio)]
    frames = []
    for _, row in at.iterrows():
        path = declared(row["cell_dir"], CELL_FILES["mask_table"], mask_tables)
        if path is None:  # aggregate run by hand on eval rows alone
            continue
        table = read_verified(path, columns=["name", "numel", "kept"])
        frames.append(table.assign(method=row["method"], seed=row["seed"]))
    if not frames:
        return pd.DataFrame()
    masks = pd.concat(frames, ignore_index=True)
    layers = list(dict.fromkeys(masks["name"]))
    masks["density"] = masks["kept"] / masks["numel"]
    dens = masks.pivot_table(index="method", columns="name", values="density", aggfunc="mean")
    dens = dens.reindex(index=method_order(dens.index), columns=layers)
    dens.attrs["numel"] = masks.groupby("name")["numel"].first().to_dict()
    return dens
