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
from prunelib.report.stats import METRICS
from prunelib.config.settings import format_ratio


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out_png: Path) -> None:
    for ext in ("png", "svg"):
        with atomic_path(out_png.with_suffix(f".{ext}")) as tmp:
            fig.savefig(tmp, format=ext, dpi=120)
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


def plot_accuracy(df: pd.DataFrame, title: str, out_png: Path) -> None:
    """Top-1 and top-5 vs r (log2 axis): one line per method, a ±1 std band, dense as a
    dashed line, chance (1/C for top-1, 5/C for top-5, C classes) as a dotted line."""
    import seaborn as sns

    plt = _pyplot()
    pruned = df[df["method"] != DENSE].copy()
    dense = df[df["method"] == DENSE]
    classes = _num_classes(df["dataset"].iloc[0])
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), sharex=True)
    order = [m for m in method_order(pruned["method"].unique())]
    for ax, metric in zip(axes, METRICS):
        plot_df = pruned.assign(acc=100 * pruned[metric])
        if len(plot_df):
            sns.lineplot(data=plot_df, x="ratio", y="acc", hue="method", hue_order=order, style="method",
                         style_order=order, markers=True, dashes=False, errorbar="sd", ax=ax)
        if len(dense):
            ax.axhline(100 * dense[metric].mean(), color="black", ls="--", lw=1, label="dense (r=1)")
        if classes:
            k = 1 if metric == "top1" else 5
            ax.axhline(100 * min(1.0, k / classes), color="grey", ls=":", lw=1.2,
                       label=f"chance ({k}/{classes})")
        _ratio_axis(ax, pruned["ratio"] if len(pruned) else df["ratio"])
        ax.set_xlabel("compression ratio r = 1/density (log2)")
        ax.set_ylabel(METRICS[metric])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{title}: mean ± 1 sample std over seeds, final-epoch test accuracy")
    fig.tight_layout()
    _save(fig, out_png)


def plot_calibration(df: pd.DataFrame, title: str, method: str, ratio: float, out_png: Path) -> None:
    """Reliability diagrams of the dense control and of ``method`` at ``ratio``: accuracy
    per confidence bin (bars) against the diagonal, bins pooled over seeds (the eval
    rows' ``calibration_bins``); the panel title gives the pooled ECE."""
    import json

    from prunelib.train.metrics import N_BINS, ece_from_bins

    plt = _pyplot()
    cells = [("dense (r = 1)", df[df["method"] == DENSE]),
             (f"{method} (r = {format_ratio(ratio)})", df[(df["method"] == method) & (df["ratio"] == ratio)])]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.4), sharey=True)
    edges = [m / N_BINS for m in range(N_BINS + 1)]
    for ax, (label, sub) in zip(axes, cells):
        pooled = [[0, 0.0, 0] for _ in range(N_BINS)]
        for text in (sub["calibration_bins"] if "calibration_bins" in sub else []):
            for acc, b in zip(pooled, json.loads(text or "[]")):
                acc[0] += b[0]
                acc[1] += b[1]
                acc[2] += b[2]
        ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=1)
        if any(c for c, _, _ in pooled):
            acc = [h / c if c else 0.0 for c, _, h in pooled]
            ax.bar(edges[:-1], acc, width=1 / N_BINS, align="edge", edgecolor="black", alpha=0.7,
                   label="accuracy")
            ax.set_title(f"{label}: ECE {100 * ece_from_bins(pooled):.2f}% ({len(sub)} seeds)")
        else:
            ax.set_title(f"{label}: no calibration data")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence (max softmax probability)")
    axes[0].set_ylabel("accuracy in the bin")
    fig.suptitle(title)
    fig.tight_layout()
    _save(fig, out_png)


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


def plot_compression(df: pd.DataFrame, title: str, out_png: Path) -> None:
    """Left: compression error (r_e - r)/r in % vs r, one line per method.
    Middle: theoretical speed-up (dense / kept MACs) vs r, with speed-up = r dashed.
    Right, where the rows have measurements (prunelib/methods/slimming.py): measured vs
    theoretical speed-up, one point per cell and kind (slimmed network at batch 1, 256,
    training step; CSR Linear layers), the diagonal dashed, the device in the title."""
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
    ax = axes[0, 0]
    if len(pruned):
        sns.lineplot(data=pruned.assign(err=100 * pruned["compression_error"]), x="ratio", y="err",
                     hue="method", hue_order=order, style="method", style_order=order, markers=True,
                     dashes=False, errorbar=("pi", 100), ax=ax)
    ax.axhline(0, color="black", lw=0.8)
    _ratio_axis(ax, pruned["ratio"] if len(pruned) else df["ratio"])
    ax.set_xlabel("requested compression ratio r (log2)")
    ax.set_ylabel("compression error (r_e − r) / r (%)")
    ax.set_title("empirical vs requested compression (band: min–max over seeds)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if has_speed:
        ax = axes[0, 1]
        sns.lineplot(data=pruned, x="ratio", y="speedup", hue="method", hue_order=order, style="method",
                     style_order=order, markers=True, dashes=False, errorbar=("pi", 100), ax=ax)
        rs = sorted(pruned["ratio"].unique())
        ax.plot(rs, rs, color="black", ls="--", lw=1, label="speed-up = r")
        _ratio_axis(ax, rs)
        ax.set_yscale("log", base=2)
        ax.set_xlabel("requested compression ratio r (log2)")
        ax.set_ylabel("theoretical speed-up: dense MACs / kept MACs (log2)")
        ax.set_title("theoretical speed-up (Blalock et al. 2020)", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if measured is not None:
        ax = axes[0, 2]
        sns.scatterplot(data=measured, x="speedup", y="measured", hue="method", hue_order=order,
                        style="kind", s=45, ax=ax)
        hi = max(float(measured["speedup"].max()), float(measured["measured"].max()), 1.0)
        lo = min(float(measured["speedup"].min()), float(measured["measured"].min()), 1.0)
        ax.plot([lo, hi], [lo, hi], color="black", ls="--", lw=1, label="measured = theoretical")
        ax.axhline(1, color="grey", lw=0.8)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log", base=2)
        ax.set_xlabel("theoretical speed-up (MACs, log2)")
        ax.set_ylabel("measured speed-up: dense time / pruned time (log2)")
        devices = ", ".join(sorted(set(pruned["measure_device"].dropna()))) if "measure_device" in pruned else ""
        ax.set_title(f"theoretical vs measured{f' ({devices})' if devices else ''}", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"{title}: compression")
    fig.tight_layout()
    _save(fig, out_png)


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
    """Training loss and training top-1 per epoch of one cell, one line per seed."""
    import seaborn as sns

    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    if len(logs):
        logs = logs.assign(top1=100 * logs["train_top1"], seed=logs["seed"].astype(str))
        for ax, (col, label) in zip(axes, [("train_loss", "training loss (epoch mean)"),
                                           ("top1", "training top-1 (%)")]):
            sns.lineplot(data=logs, x="epoch", y=col, hue="seed", marker="o", ax=ax)
            ax.set_xlabel("epoch")
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
            epochs = sorted(logs["epoch"].unique())
            ax.set_xticks(epochs if len(epochs) <= 12 else epochs[:: math.ceil(len(epochs) / 12)])
    else:
        for ax in axes:
            ax.text(0.5, 0.5, "no training log for this cell", ha="center", va="center", transform=ax.transAxes)
    fig.suptitle(title)
    fig.tight_layout()
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
                     style_order=order, markers=True, dashes=False, errorbar="sd", ax=ax)
    ax.set_xscale("log")
    lowest = float(data["remaining"].min()) if not data.empty else 1.0
    ticks = [100 / 2 ** k for k in range(0, 20) if 100 / 2 ** k >= lowest * 0.99]
    ax.set_xticks(ticks, [f"{x:.3g}" for x in ticks])
    ax.minorticks_off()
    ax.invert_xaxis()
    ax.set_xlabel("weights remaining (%)")
    ax.set_ylabel("test top-1 after the round (%)")
    ax.set_title(title)
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
        ax.legend(fontsize=7, frameon=False)
    fig.suptitle(title)
    fig.tight_layout()
    _save(fig, out_png)
