"""The report's figures (PNG and SVG): accuracy and compression vs r, the per-layer
density heat map, training curves, sanity checks, IMP round by round.  Nothing here
imports torch; matplotlib and seaborn are imported on first use."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from prunelib.data import datasets

from prunelib.catalogue import registry
from prunelib.foundations.artifacts import atomic_path
from prunelib.config.grid import DENSE
from prunelib.report.layout import method_order, split_label
from prunelib.report.stats import ECE_DEFINITION, METRICS, SHORT, ece_over_seeds
from prunelib.config.settings import format_ratio


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out_png: Path) -> None:
    for ext in ("png", "svg"):
        with atomic_path(out_png.with_suffix(f".{ext}")) as tmp:
            # (tight: the legends and notes sit outside the axes, beyond the figure's edge)
            fig.savefig(tmp, format=ext, dpi=120, bbox_inches="tight")
    _pyplot().close(fig)


def _num_classes(dataset: str) -> int | None:
    try:
        return datasets.info(dataset).num_classes
    except ValueError:
        return None


def _ratio_axis(ax, ratios) -> None:
    """log2 x axis labelled with the grid's ratios as plain numbers (4, 16, 64)."""
    ratios = sorted({float(r) for r in ratios})
    ax.set_xscale("log", base=2)
    ax.set_xticks(ratios, [format_ratio(r) for r in ratios])
    ax.minorticks_off()


def legend_outside(fig, axes, title: str | None = None) -> None:
    """One legend for ``axes``, right of the figure, never over data: every axes'
    entries, deduplicated by label (seaborn's ``method`` heading dropped), the axes' own
    legends removed."""
    handles, labels = [], []
    for ax in axes:
        for h, label in zip(*ax.get_legend_handles_labels()):
            if label not in labels and label != "method":
                handles.append(h)
                labels.append(label)
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    if handles:
        fig.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.0, 0.93), fontsize=8, frameon=False,
                   title=title)


def coinciding(data: pd.DataFrame, value: str, decimals: int = 2, unit: str = "%") -> list[str]:
    """Which methods' means over seeds coincide (equal when rounded to ``decimals``), so
    that their lines or points lie on each other: whole lines first ("a = b at every r"),
    then single points ("r = 64: a, b, c at 11.35%"; "every method" when all of them, at
    least three, meet there) not already covered by a whole line.
    ``data``: columns method, ratio and ``value``."""
    means = data.groupby(["method", "ratio"])[value].mean().round(decimals).unstack("ratio")
    order = method_order(means.index)
    means = means.reindex(order)
    notes, lines = [], []
    seen = set()
    for m in order:
        if m in seen:
            continue
        twins = [o for o in order if o != m and o not in seen
                 and means.loc[o].notna().equals(means.loc[m].notna())
                 and (means.loc[o].dropna() == means.loc[m].dropna()).all()]
        if twins:
            group = [m, *twins]
            seen.update(group)
            lines.append(set(group))
            notes.append(f"{' = '.join(group)} at every r")
    for r in means.columns:
        col = means[r].dropna()
        for v, group in col.groupby(col):
            names = [m for m in order if m in set(group.index)]
            if len(names) > 1 and not any(set(names) <= line for line in lines):
                who = "every method" if len(names) == len(order) > 2 else ", ".join(names)
                notes.append(f"r = {format_ratio(r)}: {who} at {v:.{decimals}f}{unit}")
    return notes


def _note(fig, lines: list[str], what: str) -> None:
    """Print the coinciding methods under the figure (what a reader cannot see)."""
    whole = [line for line in lines if line.endswith("at every r")]
    points = [line for line in lines if not line.endswith("at every r")]
    parts = ([f"Lines drawn on each other ({what} with equal means at every r): " + "; ".join(whole)] if whole else []) + \
        (["Points drawn on each other (equal means): " + "; ".join(points)] if points else [])
    if parts:
        fig.text(0.01, -0.01, "\n".join(parts), ha="left", va="top", fontsize=8, wrap=True)


def plot_accuracy(df: pd.DataFrame, title: str, out_png: Path) -> list[str]:
    """Top-1 and top-5 vs r (log2 axis): one line per method (its own marker and dash
    pattern), a ±1 std band, dense as a dashed line, chance (1/C for top-1, 5/C for top-5,
    C classes) as a dotted line; one legend right of the panels; under them, the methods
    whose means coincide (``coinciding``), which is returned."""
    import seaborn as sns

    plt = _pyplot()
    pruned = df[df["method"] != DENSE].copy()
    dense = df[df["method"] == DENSE]
    classes = _num_classes(df["dataset"].iloc[0])
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), sharex=True)
    order = [m for m in method_order(pruned["method"].unique())]
    notes = []
    for ax, metric in zip(axes, METRICS):
        plot_df = pruned.assign(acc=100 * pruned[metric])
        if len(plot_df):
            sns.lineplot(data=plot_df, x="ratio", y="acc", hue="method", hue_order=order, style="method",
                         style_order=order, markers=True, dashes=True, errorbar="sd", ax=ax)
            notes += [f"{SHORT[metric]}, {n}" for n in coinciding(plot_df, "acc")]
        if len(dense):
            ax.axhline(100 * dense[metric].mean(), color="black", ls="--", lw=1, label="dense (r=1)")
        if classes:
            k = 1 if metric == "top1" else 5
            ax.axhline(100 * min(1.0, k / classes), color="grey", ls=":", lw=1.2,
                       label=f"chance ({k}/{classes}, top-{k})")
        _ratio_axis(ax, pruned["ratio"] if len(pruned) else df["ratio"])
        ax.set_xlabel("compression ratio r = 1/density (log2)")
        ax.set_ylabel(METRICS[metric])
        ax.grid(alpha=0.3)
    fig.suptitle(f"{title}: mean ± 1 sample std over seeds, final-epoch test accuracy")
    fig.tight_layout()
    legend_outside(fig, axes)
    _note(fig, notes, "methods")
    _save(fig, out_png)
    return notes


def _grid(plt, n: int, ncols: int = 5, panel=(3.2, 3.0), rows_per: int = 1):
    """Small multiples: ``n`` panels, at most ``ncols`` a row (``rows_per`` rows each);
    returns the figure and the axes array; panels beyond ``n`` are switched off."""
    ncols = max(1, min(n, ncols))
    blocks = max(1, math.ceil(n / ncols))
    fig, axes = plt.subplots(blocks * rows_per, ncols, figsize=(panel[0] * ncols + 1.5, panel[1] * blocks * rows_per),
                             squeeze=False)
    for i in range(n, blocks * ncols):
        for k in range(rows_per):
            axes[(i // ncols) * rows_per + k][i % ncols].set_axis_off()
    return fig, axes


def calibration_data(df: pd.DataFrame, ratio: float) -> list[dict]:
    """What the reliability diagrams draw, one entry per panel: the dense control (r = 1)
    and every pruning method at ``ratio``.  ``accuracy``: per confidence bin, the bins
    pooled over seeds (the eval rows' ``calibration_bins``: count, sum of confidences,
    number correct), None for an empty bin; ``count``: the bins' counts;
    ``ece``, ``ece_std``, ``n``: the ECE as the beyond-top-1 table gives it
    (``stats.ece_over_seeds``: per seed, mean over seeds, in %)."""
    import json

    cells = [(DENSE, 1.0)] + [(m, float(ratio)) for m in method_order(df["method"].unique()) if m != DENSE]
    out = []
    for method, r in cells:
        sub = df[(df["method"] == method) & (df["ratio"] == r)]
        if sub.empty:
            continue
        ok = sub[sub["status"] == "ok"] if "status" in sub else sub
        pooled: list[list] = []
        for text in (ok["calibration_bins"] if "calibration_bins" in ok else []):
            for i, b in enumerate(json.loads(text or "[]")):
                if i == len(pooled):
                    pooled.append([0, 0.0, 0])
                for k in range(3):
                    pooled[i][k] += b[k]
        mean, std, n = ece_over_seeds(sub)
        out.append({"method": method, "ratio": r, "label": f"{method} (r = {format_ratio(r)})",
                    "accuracy": [h / c if c else None for c, _, h in pooled], "count": [c for c, _, _ in pooled],
                    "ece": mean, "ece_std": std, "n": n, "seeds": len(sub)})
    return out


def plot_calibration(df: pd.DataFrame, title: str, ratio: float, out_png: Path) -> list[dict]:
    """Reliability diagrams, small multiples: the dense control and every pruning method
    at ``ratio`` (``calibration_data``, which is returned): accuracy per confidence bin
    (bars, bins pooled over seeds) against the diagonal; each panel's title gives the
    ECE as the tables do (``stats.ECE_DEFINITION``)."""
    plt = _pyplot()
    data = calibration_data(df, ratio)
    fig, axes = _grid(plt, max(1, len(data)))
    for i, cell in enumerate(data):
        ax = axes[i // axes.shape[1]][i % axes.shape[1]]
        ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=1, label="perfect calibration")
        width = 1 / max(1, len(cell["accuracy"]))
        if any(cell["count"]):
            xs = [j * width for j, a in enumerate(cell["accuracy"]) if a is not None]
            ax.bar(xs, [a for a in cell["accuracy"] if a is not None], width=width, align="edge",
                   edgecolor="black", alpha=0.7, label="accuracy in the bin (seeds pooled)")
            std = "–" if cell["n"] < 2 else f"{cell['ece_std']:.2f}"
            ax.set_title(f"{cell['label']}\nECE {cell['ece']:.2f} ± {std}% (n = {cell['n']})", fontsize=9)
        else:
            ax.set_title(f"{cell['label']}\nno calibration data", fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_aspect("equal")
        ax.set_xlabel("confidence (max softmax)", fontsize=8)
        ax.set_ylabel("accuracy in the bin" if i % axes.shape[1] == 0 else "", fontsize=8)
    if not data:
        axes[0][0].text(0.5, 0.5, "no eval rows", ha="center", va="center")
    fig.suptitle(f"{title} at r = {format_ratio(ratio)}; ECE: {ECE_DEFINITION}", fontsize=10)
    fig.tight_layout()
    legend_outside(fig, [ax for row in axes for ax in row])
    _save(fig, out_png)
    return data


#: Measured speed-ups (prunelib/methods/slimming.py) and their legend names.
MEASURED_KINDS = {"measured_speedup_infer_b1": "slimmed, infer b1",
                  "measured_speedup_infer_b256": "slimmed, infer b256",
                  "measured_speedup_train": "slimmed, train step", "measured_speedup_infer_sparse": "CSR, infer b256"}


def _measured_long(df: pd.DataFrame) -> pd.DataFrame | None:
    """One row per (eval row, measured kind) with a value: method, theoretical speed-up,
    measured speed-up, kind; None when ``df`` has no measurement."""
    parts = [pd.DataFrame({"method": df["method"], "speedup": df["speedup"], "measured": df[c], "kind": name})
             for c, name in MEASURED_KINDS.items() if c in df]
    if not parts:
        return None
    long = pd.concat(parts, ignore_index=True).dropna(subset=["measured", "speedup"])
    long = long[(long["measured"] > 0) & (long["speedup"] > 0) & (long["speedup"] < float("inf"))]
    return long if len(long) else None


def plot_compression(df: pd.DataFrame, title: str, out_png: Path) -> list[str]:
    """Left: compression error (r_e - r)/r in % vs r, one line per method.
    Middle: theoretical speed-up (dense / kept MACs) vs r, with speed-up = r dashed.
    Right, where the rows have measurements (prunelib/methods/slimming.py): measured vs
    theoretical speed-up, one point per cell and kind (slimmed network at batch 1, 256,
    training step; CSR Linear layers), the diagonal dashed, the device in the title.
    Each method has its own marker and dash pattern; one legend right of the panels;
    under them, the methods whose values coincide (``coinciding``), which is returned."""
    import seaborn as sns

    plt = _pyplot()
    pruned = df[df["method"] != DENSE].copy()
    if "compression_error" not in pruned:  # eval rows from before the column existed
        pruned["compression_error"] = math.nan
    order = method_order(pruned["method"].unique())
    has_speed = "speedup" in pruned and pruned["speedup"].notna().any()
    measured = _measured_long(pruned) if has_speed else None
    n_axes = 1 + has_speed + (measured is not None)
    fig, axes = plt.subplots(1, n_axes, figsize=(6 * n_axes, 4.6), squeeze=False)
    notes = []
    ax = axes[0, 0]
    if len(pruned):
        errs = pruned.assign(err=100 * pruned["compression_error"])
        sns.lineplot(data=errs, x="ratio", y="err", hue="method", hue_order=order, style="method",
                     style_order=order, markers=True, dashes=True, errorbar=("pi", 100), ax=ax)
        notes += [f"compression error, {n}" for n in coinciding(errs.dropna(subset=["err"]), "err", 3)]
    ax.axhline(0, color="black", lw=0.8)
    _ratio_axis(ax, pruned["ratio"] if len(pruned) else df["ratio"])
    ax.set_xlabel("requested compression ratio r (log2)")
    ax.set_ylabel("compression error (r_e − r) / r (%)")
    ax.set_title("empirical vs requested compression (band: min–max over seeds)", fontsize=10)
    ax.grid(alpha=0.3)
    if has_speed:
        ax = axes[0, 1]
        sns.lineplot(data=pruned, x="ratio", y="speedup", hue="method", hue_order=order, style="method",
                     style_order=order, markers=True, dashes=True, errorbar=("pi", 100), ax=ax)
        notes += [f"theoretical speed-up, {n}" for n in coinciding(pruned.dropna(subset=["speedup"]), "speedup", 2, "×")]
        rs = sorted(pruned["ratio"].unique())
        ax.plot(rs, rs, color="black", ls="--", lw=1, label="speed-up = r")
        _ratio_axis(ax, rs)
        ax.set_yscale("log", base=2)
        ax.set_xlabel("requested compression ratio r (log2)")
        ax.set_ylabel("theoretical speed-up: dense MACs / kept MACs (log2)")
        ax.set_title("theoretical speed-up (Blalock et al. 2020)", fontsize=10)
        ax.grid(alpha=0.3)
    if measured is not None:
        ax = axes[0, 2]
        sns.scatterplot(data=measured, x="speedup", y="measured", hue="method", hue_order=order,
                        style="kind", s=45, ax=ax)
        hi = max(float(measured["speedup"].max()), float(measured["measured"].max()), 1.0)
        lo = min(float(measured["speedup"].min()), float(measured["measured"].min()), 1.0)
        ax.plot([lo, hi], [lo, hi], color="black", ls=":", lw=1.2, label="measured = theoretical")
        ax.axhline(1, color="grey", lw=0.8)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log", base=2)
        ax.set_xlabel("theoretical speed-up (MACs, log2)")
        ax.set_ylabel("measured speed-up: dense time / pruned time (log2)")
        devices = ", ".join(sorted(set(pruned["measure_device"].dropna()))) if "measure_device" in pruned else ""
        ax.set_title(f"theoretical vs measured{f' ({devices})' if devices else ''}", fontsize=9)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{title}: compression")
    fig.tight_layout()
    legend_outside(fig, axes[0])
    _note(fig, notes, "methods")
    _save(fig, out_png)
    return notes


def plot_density_heatmap(dens: pd.DataFrame, title: str, ratio: float, out_png: Path) -> None:
    """Heat map of per-layer density (log colour scale); collapsed layers (density 0) grey."""
    import numpy as np
    import seaborn as sns
    from matplotlib.colors import LogNorm

    plt = _pyplot()
    values = dens.to_numpy(dtype=float)
    positive = values[values > 0]
    vmin = max(min(positive.min(), 1.0 / float(ratio)) / 2, 1e-5) if positive.size else 1e-3
    annot = np.vectorize(lambda v: "0 (collapsed)" if v == 0 else f"{100 * v:.2g}%")(values)
    label_width = 0.09 * max(len(str(m)) for m in dens.index)
    fig, ax = plt.subplots(figsize=(max(7.5, 3.0 + label_width + 1.6 * dens.shape[1]), 1.8 + 0.45 * dens.shape[0]))
    ax.set_facecolor("#bbbbbb")
    sns.heatmap(dens, mask=values == 0, annot=annot, fmt="", cmap="viridis", norm=LogNorm(vmin=vmin, vmax=1),
                cbar_kws={"label": "density kept / numel (log)"}, linewidths=0.5, ax=ax)
    numel = dens.attrs.get("numel", {})
    ax.set_xticklabels([f"{c}\n({numel[c]:,})" if c in numel else c for c in dens.columns], rotation=0, fontsize=8)
    ax.set_yticklabels(ax.get_yticklabels(), rotation=0)
    ax.set_xlabel("layer (number of weights)")
    ax.set_ylabel("method")
    ax.set_title(f"{title}: per-layer density at r = {format_ratio(ratio)}\n"
                 f"(overall {100 / float(ratio):.2g}%; mean over seeds; grey = collapsed)", fontsize=10)
    fig.tight_layout()
    _save(fig, out_png)


def plot_curves(logs: pd.DataFrame, title: str, out_png: Path) -> None:
    """Training curves, small multiples: per method (the dense control first) a column
    of two panels, training loss (epoch mean) above training top-1, one line per seed
    (colour and marker per seed); each metric's panels share their y axis.  ``logs``:
    the train logs, with columns method, seed, epoch, train_loss, train_top1."""
    plt = _pyplot()
    methods = method_order(logs["method"].unique()) if len(logs) else []
    fig, axes = _grid(plt, max(1, len(methods)), panel=(3.0, 2.4), rows_per=2)
    ncols = axes.shape[1]
    if not methods:
        axes[0][0].text(0.5, 0.5, "no training log for this cell", ha="center", va="center",
                        transform=axes[0][0].transAxes)
    logs = logs.assign(top1=100 * logs["train_top1"]) if len(logs) else logs
    seeds = sorted(logs["seed"].unique()) if len(logs) else []
    markers = "osD^vP*Xh<>"
    first = {}
    for i, method in enumerate(methods):
        sub = logs[logs["method"] == method]
        for k, (col, label) in enumerate([("train_loss", "training loss"), ("top1", "training top-1 (%)")]):
            ax = axes[(i // ncols) * 2 + k][i % ncols]
            if col in first:
                ax.sharey(first[col])
            else:
                first[col] = ax
            for j, seed in enumerate(seeds):
                run = sub[sub["seed"] == seed].sort_values("epoch")
                if len(run):
                    ax.plot(run["epoch"], run[col], marker=markers[j % len(markers)], ms=4, lw=1.2,
                            color=f"C{j}", label=f"seed {seed}")
            ax.set_title(method if k == 0 else "", fontsize=9)
            ax.set_ylabel(label if i % ncols == 0 else "", fontsize=8)
            ax.set_xlabel("epoch" if k == 1 else "", fontsize=8)
            ax.grid(alpha=0.3)
            epochs = sorted(sub["epoch"].unique())
            if epochs:
                ax.set_xticks(epochs if len(epochs) <= 8 else epochs[:: math.ceil(len(epochs) / 8)])
    fig.suptitle(title)
    fig.tight_layout()
    legend_outside(fig, [ax for row in axes for ax in row])
    _save(fig, out_png)


def plot_variants(df: pd.DataFrame, title: str, out_png: Path) -> None:
    """Accuracy of each method and its variants (mean ± sample std over seeds), one panel
    per method, one group of points per ratio; the dense control's mean dashed."""
    import seaborn as sns

    plt = _pyplot()
    has = df[df["variant"] != "none"]
    methods = method_order({split_label(m)[0] for m in has["method"]})
    data = df[df["method"].map(lambda m: split_label(m)[0] in methods) & df["ratio"].isin(has["ratio"])].copy()
    data["base"] = [split_label(m)[0] for m in data["method"]]
    data["acc"] = 100 * data["top1"]
    data["r"] = [format_ratio(r) for r in data["ratio"]]
    dense = df[df["method"] == DENSE]["top1"].dropna()
    n = max(1, len(methods))
    fig, axes = plt.subplots(1, n, figsize=(max(7.0, 3.6 * n + 2.2), 4.2), squeeze=False, sharey=True)
    order = [v for v in registry.VARIANTS if v in set(data["variant"])]
    for i, (ax, m) in enumerate(zip(axes[0], methods)):
        sub = data[data["base"] == m]
        sns.pointplot(data=sub, x="r", y="acc", hue="variant", hue_order=order, errorbar="sd", dodge=0.5,
                      linestyle="none", ax=ax, order=sorted(sub["r"].unique(), key=float))
        if len(dense):
            ax.axhline(100 * dense.mean(), color="grey", linestyle="--", linewidth=1, label="dense")
        ax.set_title(m)
        ax.set_xlabel("compression ratio r")
        ax.set_ylabel("test top-1 (%)" if i == 0 else "")
        if i == n - 1:
            ax.legend(title="variant", loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
        elif ax.get_legend() is not None:
            ax.get_legend().remove()
    fig.suptitle(title)
    fig.tight_layout()
    _save(fig, out_png)


def plot_imp_rounds(rounds: pd.DataFrame, title: str, out_png: Path) -> None:
    """Test top-1 after each round vs % of weights remaining (log axis, decreasing to the
    right, as in Frankle & Carbin's figures), mean ± sample std over seeds."""
    import seaborn as sns

    plt = _pyplot()
    data = rounds[rounds["status"] == "ok"].assign(remaining=lambda d: 100 * d["density"],
                                                  acc=lambda d: 100 * d["top1"])
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if not data.empty:
        order = method_order(data["method"].unique())
        sns.lineplot(data=data, x="remaining", y="acc", hue="method", hue_order=order, style="method",
                     style_order=order, markers=True, dashes=True, errorbar="sd", ax=ax)
    ax.set_xscale("log")
    lowest = float(data["remaining"].min()) if not data.empty else 1.0
    ticks = [100 / 2 ** k for k in range(0, 20) if 100 / 2 ** k >= lowest * 0.99]
    ax.set_xticks(ticks, [f"{x:.3g}" for x in ticks])
    ax.minorticks_off()
    ax.invert_xaxis()
    ax.set_xlabel("weights remaining (%)")
    ax.set_ylabel("test top-1 after the round (%)")
    ax.set_title(title)
    fig.tight_layout()
    legend_outside(fig, [ax])
    _save(fig, out_png)


#: The points of the spectra figure, in order, with their labels.
_SPECTRUM_POINTS = {"dense": "dense", "pruned": "pruned", "pruned_ai": "pruned + AI"}


def plot_jacobian_spectra(df: pd.DataFrame, title: str, out_png: Path) -> None:
    """The layer-wise spectra of ``init.jacobian_spectrum``: one panel per pruned method
    and ratio, x = layer, the mean singular value of the layer-wise Jacobian at each point
    (dense, pruned, pruned + AI) averaged over seeds, a band from the mean minimum to the
    mean maximum: the true ``D_l (C ⊙ W_l)`` over the measured examples where the network
    is an MLP (``layer_jacobians``), else the masked weight matrix (``layers``, the linear
    part); the legend gives the input-output Jacobian's mean singular value (spp/check.py's
    measure)."""
    import json

    plt = _pyplot()
    rows = df[(df["ratio"] != 1.0)] if "jacobian_spectrum" in df.columns else df.iloc[:0]
    rows = rows[rows["jacobian_spectrum"].fillna("{}") != "{}"] if len(rows) else rows
    order = method_order(set(rows["method"])) if len(rows) else []
    panels = sorted({(m, r) for m, r in zip(rows["method"], rows["ratio"])},
                    key=lambda mr: (order.index(mr[0]), mr[1]))[:12]
    n = max(1, len(panels))
    fig, axes = plt.subplots(1, n, figsize=(max(6.0, 4.2 * n), 4.0), squeeze=False, sharey=True)
    if not panels:
        axes[0][0].text(0.5, 0.5, "no cell measured its Jacobian spectrum", ha="center", va="center")
        axes[0][0].set_axis_off()
    for ax, (method, ratio) in zip(axes[0], panels):
        specs = [json.loads(s) for s in rows[(rows["method"] == method) & (rows["ratio"] == ratio)]
                 ["jacobian_spectrum"]]
        key = "layers"
        for point, label in _SPECTRUM_POINTS.items():
            have = [s[point] for s in specs if point in s]
            if not have:
                continue
            key = "layer_jacobians" if all("layer_jacobians" in h for h in have) else "layers"
            layers = list(have[0][key])
            stat = {k: [sum(h[key][lay][k] for h in have) / len(have) for lay in layers]
                    for k in ("mean", "min", "max")}
            io = sum(h["io"]["mean"] for h in have) / len(have)
            xs = range(1, len(layers) + 1)
            ax.plot(xs, stat["mean"], marker="o", label=f"{label} (input-output mean {io:.3g})")
            ax.fill_between(xs, stat["min"], stat["max"], alpha=0.15)
        ax.axhline(1.0, color="grey", linestyle="--", linewidth=1)
        ax.set_title(f"{method}, r = {format_ratio(ratio)} ({len(specs)} seeds)")
        ax.set_xlabel("layer")
        ax.set_ylabel("singular value of D_l (C ⊙ W_l)" if key == "layer_jacobians" else "singular value of C ⊙ W")
        ax.legend(fontsize=7, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.16))  # (under the data)
    fig.suptitle(title)
    fig.tight_layout()
    _save(fig, out_png)
