"""Blalock-style result tables and the report's figures, from the eval rows.

Blalock et al. ("What is the State of Neural Network Pruning?", MLSys 2020) ask for
every number to come with its spread and its sample size.  A cell of our tables is

    mean ± s (n),   s = sqrt( sum (x_i - mean)^2 / (n - 1) )   (sample std; '–' when n = 1)

of the final-epoch test accuracy over seeds, in percent.  Rows are methods with the
dense control first; columns are compression ratios r.

Marks (per column, among the pruning methods; the dense control is the reference and
is never marked):

* **best**: the method with the highest mean (ties: all of them);
* **within one std of the best**: every other method m with

      mean_m >= mean_best - s_best

  i.e. the *best's* sample std sets the band, one yardstick per column however noisy
  the other methods are.  With n = 1 for the best (no std) only exact ties qualify.
  Means are compared unrounded.
* **collapsed** (†): in at least one seed the method's mask kept nothing of some layer
  (eval rows' ``collapsed_layers``), so the network's output no longer depends on its
  input through that layer; the collapse table says which layer, at which r, in how
  many seeds.

Markdown and LaTeX show best in bold, within-one-std in italics, † after the cell.  The
wide CSVs (``<dataset>_<arch>_top1.csv``) keep plain ``mean ± s (n)`` strings; the
marks, with the numbers unformatted, are in the long ``<dataset>_<arch>_cells.csv``
(one row per dataset, arch, metric, method, ratio: mean, std, n, best,
within_one_std, collapsed_seeds).

Other outputs: a study-layout table (rows = methods, columns = ratio x dataset x
{top-5, top-1}, for ``report.table_ratios``), a compression table (requested r,
empirical r_e = n_prunable / n_nonzero_prunable, error (r_e - r) / r, theoretical
speed-up = dense MACs / kept MACs), a layer-collapse table, and figures: accuracy vs r
with chance level, compression error and speed-up vs r, per-layer density heat map
(from the ``mask.parquet`` beside each eval row), training curves of one cell (from its
``train_log.parquet``).  Nothing here imports torch.
"""

from __future__ import annotations

import html
import math
from pathlib import Path

import pandas as pd

from prunelib import datasets
from prunelib.artifacts import atomic_path, verified_bytes, write_text
from prunelib.config import DENSE, VARIANTS, format_ratio
from prunelib.report_layout import (  # noqa: F401 - part of this module's interface
    caption_name,
    default_table_ratios,
    method_label,
    method_order,
    output_names,
    report_choices,
    split_label,
)

METRICS = {"top1": "Top-1 accuracy (%)", "top5": "Top-5 accuracy (%)"}
SHORT = {"top1": "top-1", "top5": "top-5"}
DAGGER = "†"


def _clean(values) -> list[float]:
    return [100.0 * float(v) for v in values if v is not None and not math.isnan(v)]


def mean_std_n(values) -> tuple[float, float, int]:
    """Mean, sample std (n - 1; NaN when n < 2) and n of the non-missing values, in %."""
    values = _clean(values)
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


# --- statistics with marks ----------------------------------------------------------------

def cell_stats(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One row per (dataset, arch, method, ratio): mean, std, n, marks (see module doc)."""
    has_collapse = "collapsed_layers" in df.columns
    rows = []
    for (dataset, arch, method, ratio), sub in df.groupby(["dataset", "arch", "method", "ratio"], sort=True):
        mean, std, n = mean_std_n(sub[metric].tolist())
        collapsed = int((sub["collapsed_layers"].fillna(0) > 0).sum()) if has_collapse else 0
        # a failed cell (e.g. diverged training) has an eval row with status "failed" and no
        # accuracy: it is counted and shown, never silently dropped
        failed = int((sub["status"] != "ok").sum()) if "status" in sub.columns else 0
        rows.append({"dataset": dataset, "arch": arch, "metric": metric, "method": method,
                     "ratio": float(ratio), "mean": mean, "std": std, "n": n,
                     "seeds": len(sub), "collapsed_seeds": collapsed, "failed_seeds": failed})
    stats = pd.DataFrame(rows)
    return mark_best(stats) if len(stats) else stats


def is_variant(label: str) -> bool:
    return split_label(label)[1] != "none"


def mark_best(stats: pd.DataFrame, by=("dataset", "arch", "metric", "ratio")) -> pd.DataFrame:
    """Add ``best`` and ``within_one_std``: per group of ``by``, among non-dense methods,
    best = highest mean; within = mean >= mean_best - s_best (s_best = 0 when n_best = 1)."""
    stats = stats.copy()
    stats["best"] = False
    stats["within_one_std"] = False
    for _, group in stats.groupby(list(by), sort=False):
        # the dense control and the sanity-check variants are references, not contenders
        cand = group[(group["method"] != DENSE) & (group["n"] > 0) & ~group["method"].map(is_variant)]
        if cand.empty:
            continue
        top = cand["mean"].max()
        best_rows = cand[cand["mean"] == top]
        band = best_rows["std"].fillna(0.0).max()
        stats.loc[best_rows.index, "best"] = True
        near = cand[(cand["mean"] >= top - band) & (cand["mean"] != top)]
        stats.loc[near.index, "within_one_std"] = True
    return stats


def render(stat: dict | pd.Series | None, style: str = "plain") -> str:
    """A cell as text: plain (no marks), csv (marks as [best] [~best] [collapsed k/n]),
    md (bold / italics / †) or tex (\\textbf / \\textit / $^\\dagger$)."""
    if stat is None:
        return "—"
    failed = int(stat.get("failed_seeds", 0) or 0)
    failed_mark = f" [failed {failed}/{stat['seeds']}]" if failed else ""
    if stat["n"] == 0:
        return failed_mark.strip() or "—"
    std = "–" if stat["n"] < 2 else f"{stat['std']:.2f}"
    text = f"{stat['mean']:.2f} ± {std} ({stat['n']})" + failed_mark
    if style == "plain":
        return text
    collapsed = stat["collapsed_seeds"] > 0
    if style == "csv":
        marks = (["[best]"] if stat["best"] else []) + (["[~best]"] if stat["within_one_std"] else [])
        marks += [f"[collapsed {stat['collapsed_seeds']}/{stat['seeds']}]"] if collapsed else []
        return " ".join([text, *marks])
    if style == "md":
        text = f"**{text}**" if stat["best"] else f"*{text}*" if stat["within_one_std"] else text
        return text + (f" {DAGGER}" if collapsed else "")
    if style == "tex":
        text = _tex_escape(text)
        text = rf"\textbf{{{text}}}" if stat["best"] else rf"\textit{{{text}}}" if stat["within_one_std"] else text
        return text + (r"$^\dagger$" if collapsed else "")
    if style == "html":
        text = html.escape(text)
        text = f"<b>{text}</b>" if stat["best"] else f"<i>{text}</i>" if stat["within_one_std"] else text
        return text + (f" <span title='a layer collapsed'>{DAGGER}</span>" if collapsed else "")
    raise ValueError(f"unknown style {style!r}")


def blalock_table(df: pd.DataFrame, metric: str, style: str = "plain") -> pd.DataFrame:
    """Rows = methods (dense first), columns = ratios, cells rendered in ``style``."""
    stats = cell_stats(df, metric)
    ratios = sorted(df["ratio"].unique())
    index = {(r["method"], r["ratio"]): r for _, r in stats.iterrows()}
    rows = {m: {f"r={format_ratio(r)}": render(index.get((m, float(r))), style) for r in ratios}
            for m in method_order(df["method"].unique())}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "method"
    return table


def study_table(df: pd.DataFrame, ratios, style: str = "plain") -> pd.DataFrame:
    """The study's layout for one arch: rows = methods, columns = r x dataset x
    {top-5, top-1}; the dense row shows its r = 1 values in every column (reference)."""
    datasets_ = sorted(df["dataset"].unique())
    stats = pd.concat([cell_stats(df, m) for m in METRICS], ignore_index=True)
    index = {(r["dataset"], r["metric"], r["method"], r["ratio"]): r for _, r in stats.iterrows()}
    rows = {}
    for method in method_order(df["method"].unique()):
        row = {}
        for r in ratios:
            for d in datasets_:
                for metric in ("top5", "top1"):
                    at = 1.0 if method == DENSE else float(r)
                    row[f"r={format_ratio(r)} {d} {SHORT[metric]}"] = render(index.get((d, metric, method, at)), style)
        rows[method] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "method"
    return table


def compression_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per method and requested r: empirical r_e (mean over seeds), compression error
    (r_e - r) / r in % (mean and max |.|), theoretical speed-up (dense / kept MACs)."""
    rows = []
    for (method, ratio), sub in df.groupby(["method", "ratio"], sort=False):
        err = 100.0 * sub["compression_error"] if "compression_error" in sub else pd.Series(dtype=float)
        speed = sub["speedup"] if "speedup" in sub else pd.Series(dtype=float)
        rows.append({"method": method, "r": format_ratio(ratio),
                     "r_e": f"{sub['empirical_ratio'].mean():.3f}" if "empirical_ratio" in sub else "n/a",
                     "error % (mean)": f"{err.mean():+.3f}" if err.notna().any() else "n/a",
                     "max abs error %": f"{err.abs().max():.3f}" if err.notna().any() else "n/a",
                     "speed-up (MACs)": f"{speed.mean():.2f}×" if speed.notna().any() else "n/a",
                     "n": len(sub)})
    order = {m: i for i, m in enumerate(method_order(df["method"].unique()))}
    rows.sort(key=lambda r: (order[r["method"]], float(r["r"])))
    return pd.DataFrame(rows).set_index("method")


def collapse_table(df: pd.DataFrame) -> pd.DataFrame:
    """Which method collapses which layer (mask keeps none of its weights) at which r,
    in how many of the seeds; one row per (method, r, layer)."""
    counts: dict[tuple, int] = {}
    seeds: dict[tuple, int] = {}
    for _, row in df.iterrows():
        seeds[(row["method"], row["ratio"])] = seeds.get((row["method"], row["ratio"]), 0) + 1
        names = row.get("collapsed_names") or ""
        for layer in filter(None, str(names).split(",")):
            key = (row["method"], row["ratio"], layer)
            counts[key] = counts.get(key, 0) + 1
    order = {m: i for i, m in enumerate(method_order(df["method"].unique()))}
    rows = [{"method": m, "r": format_ratio(r), "layer": layer, "seeds collapsed": f"{k}/{seeds[(m, r)]}"}
            for (m, r, layer), k in sorted(counts.items(), key=lambda kv: (order[kv[0][0]], kv[0][1], kv[0][2]))]
    table = pd.DataFrame(rows, columns=["method", "r", "layer", "seeds collapsed"])
    return table.set_index("method")


# --- rendering --------------------------------------------------------------------------

def to_markdown(table: pd.DataFrame, title: str) -> str:
    header = [table.index.name or ""] + list(table.columns)
    lines = [f"### {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for idx, row in table.iterrows():
        lines.append("| " + " | ".join([str(idx)] + [str(v) for v in row]) + " |")
    if table.empty:
        lines.append("| (none) |" + " |" * len(table.columns))
    return "\n".join(lines) + "\n"


def _tex_escape(text: str) -> str:
    return (str(text).replace("\\", r"\textbackslash{}").replace("_", r"\_").replace("%", r"\%")
            .replace("&", r"\&").replace("±", r"$\pm$").replace("–", "--").replace("—", "---")
            .replace("×", r"$\times$").replace(DAGGER, r"$^\dagger$"))


def to_latex(table: pd.DataFrame, caption: str, escaped: bool = False) -> str:
    """``escaped``: the cells are LaTeX already (marked cells); headers are always escaped."""
    cols = "l" + "r" * len(table.columns)
    esc = (lambda v: str(v)) if escaped else _tex_escape
    head = " & ".join(_tex_escape(c) for c in [table.index.name or ""] + list(table.columns))
    body = [" & ".join([_tex_escape(idx)] + [esc(v) for v in row]) + r" \\" for idx, row in table.iterrows()]
    return "\n".join([r"\begin{table}[t]", r"\centering", rf"\caption{{{_tex_escape(caption)}}}",
                      rf"\begin{{tabular}}{{{cols}}}", r"\toprule", head + r" \\", r"\midrule", *body,
                      r"\bottomrule", r"\end{tabular}", r"\end{table}"]) + "\n"


def to_html(sections: list[tuple[str, pd.DataFrame]], note: str) -> str:
    """A self-contained HTML page of titled tables (cells may hold <b>/<i> marks)."""
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'><style>",
             "body{font-family:sans-serif;font-size:14px;margin:1em}"
             "table{border-collapse:collapse;margin-bottom:1.5em}"
             "th,td{border:1px solid #ccc;padding:3px 8px;text-align:right;white-space:nowrap}"
             "th:first-child,td:first-child{text-align:left}th{background:#f0f0f0}",
             "</style></head><body>", f"<p>{html.escape(note)}</p>"]
    for title, table in sections:
        parts.append(f"<h3>{html.escape(title)}</h3><table><tr>")
        parts += [f"<th>{html.escape(str(c))}</th>" for c in [table.index.name or ""] + list(table.columns)]
        parts.append("</tr>")
        for idx, row in table.iterrows():
            parts.append("<tr>" + "".join(f"<td>{v}</td>" for v in [html.escape(str(idx))] + list(row)) + "</tr>")
        if table.empty:
            parts.append(f"<tr><td colspan='{len(table.columns) + 1}'>(none)</td></tr>")
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _escape_plain(table: pd.DataFrame) -> pd.DataFrame:
    return table.map(lambda v: html.escape(str(v)))


# --- figures ----------------------------------------------------------------------------

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


def plot_compression(df: pd.DataFrame, title: str, out_png: Path) -> None:
    """Left: compression error (r_e - r)/r in % vs r, one line per method.
    Right: theoretical speed-up (dense / kept MACs) vs r, with speed-up = r dashed."""
    import seaborn as sns

    plt = _pyplot()
    pruned = df[df["method"] != DENSE].copy()
    if "compression_error" not in pruned:  # eval rows from before the column existed
        pruned["compression_error"] = math.nan
    order = method_order(pruned["method"].unique())
    has_speed = "speedup" in pruned and pruned["speedup"].notna().any()
    fig, axes = plt.subplots(1, 2 if has_speed else 1, figsize=(12 if has_speed else 6.5, 4.6), squeeze=False)
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
    fig.suptitle(f"{title}: compression")
    fig.tight_layout()
    _save(fig, out_png)


def _read_verified(path, **kw) -> pd.DataFrame:
    """A Parquet artifact, read only after its bytes match their recorded SHA-256."""
    import io

    return pd.read_parquet(io.BytesIO(verified_bytes(path)), **kw)


def layer_densities(df: pd.DataFrame, ratio: float) -> pd.DataFrame:
    """Methods x layers: mean over seeds of kept / numel at ``ratio``, read from the
    ``mask.parquet`` beside each eval row (column ``cell_dir``).  Columns keep the
    network's layer order; the numel of each layer is in ``attrs['numel']``."""
    at = df[df["ratio"] == float(ratio)]
    frames = []
    for _, row in at.iterrows():
        path = Path(row["cell_dir"]) / "mask.parquet"
        if not path.exists():  # aggregate run by hand on eval rows alone
            continue
        table = _read_verified(path, columns=["name", "numel", "kept"])
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


# --- choices from the report settings ---------------------------------------------------

# --- the aggregate stage ----------------------------------------------------------------

NOTE = ("Cells: mean ± sample std (n seeds) of final-epoch test accuracy in %; rows: methods with the "
        "dense control first; columns: compression ratio r = 1/density. Per column, among pruning methods: "
        "bold = best mean; italics = mean within one sample std of the best's mean (mean ≥ best mean − "
        f"best std); {DAGGER} = a layer collapsed (mask kept none of its weights) in at least one seed.")


def _write_table_files(table_plain, table_tex, title, base: Path) -> list[Path]:
    """The wide CSV (plain cells) and the LaTeX table (marked cells) of one table."""
    csv_path = base.with_suffix(".csv")
    with atomic_path(csv_path) as tmp:
        table_plain.to_csv(tmp)
    tex_path = base.with_suffix(".tex")
    write_text(to_latex(table_tex, title, escaped=True), tex_path)
    return [csv_path, tex_path]


VARIANTS_NOTE = (
    "Cells: mean ± sample std (n seeds) of final-epoch test accuracy in %; a variant's cell adds "
    "[its mean minus the method's mean, in points]. shuffle_layer: each tensor's mask permuted "
    "(per-layer density kept); reinit: fresh initial weights; shuffle_weights: surviving initial "
    "weights permuted within each tensor; invert: the lowest-ranked weights kept. A method whose "
    "variants match it carries no information in its mask beyond what they keep.")


def _write_variants(sub: pd.DataFrame, dataset: str, arch: str, tables: Path, figures: Path) -> list[Path]:
    stem = f"{dataset}_{arch}"
    parts = []
    for metric, label in METRICS.items():
        table = variants_table(sub, metric)
        title = (f"Sanity checks on {dataset} / {arch}, {label}: each method next to its variants "
                 "([difference from the method's mean, points])")
        parts.append(to_markdown(table, title))
        if metric == "top1":
            with atomic_path(tables / f"{stem}_variants.csv") as tmp:
                table.to_csv(tmp)
    write_text(VARIANTS_NOTE + "\n\n" + "\n".join(parts), tables / f"{stem}_variants.md")
    plot_variants(sub, f"{dataset} / {arch}: sanity checks (mean ± sample std over seeds)",
                  figures / f"{stem}_variants.png")
    return [tables / f"{stem}_variants.md", tables / f"{stem}_variants.csv", figures / f"{stem}_variants.png"]


def variants_table(df: pd.DataFrame, metric: str = "top1") -> pd.DataFrame:
    """The sanity checks side by side: rows = the methods that have variants in ``df``,
    columns = ratio x variant; a variant's cell adds [its mean minus the method's mean],
    in points.  A method whose variants match it carries no information in its mask
    beyond what they keep (Frankle et al., ICLR 2021)."""
    bases = [split_label(m)[0] for m in df["method"]]
    with_variants = {b for b, v in zip(bases, df["variant"]) if v != "none"}
    methods = method_order(with_variants)
    if not methods:
        return pd.DataFrame()
    # only the ratios that have variants (the others would be a column of dashes)
    rows = df[pd.Series([b in with_variants for b in bases], index=df.index)
              & df["ratio"].isin(df[df["variant"] != "none"]["ratio"])]
    index = {(r["method"], r["ratio"]): r for _, r in cell_stats(rows, metric).iterrows()}
    variants = [v for v in VARIANTS if v in set(rows["variant"])]
    table = {}
    for ratio in sorted(rows["ratio"].unique()):
        for v in variants:
            column = table.setdefault(f"r={format_ratio(ratio)} {v}", {})
            for m in methods:
                stat, base = index.get((method_label(m, v), ratio)), index.get((m, ratio))
                text = render(stat, "plain")
                if v != "none" and stat is not None and base is not None and stat["n"] and base["n"]:
                    text += f" [{stat['mean'] - base['mean']:+.2f}]"
                column[m] = text
    out = pd.DataFrame(table).reindex(methods)
    out.index.name = "method"
    return out


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
    order = [v for v in VARIANTS if v in set(data["variant"])]
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


def imp_rounds_table(rounds: pd.DataFrame) -> pd.DataFrame:
    """One row per (IMP method, round): weights remaining, r, and test accuracy after the
    round's retraining, mean ± sample std (n seeds); failed rounds counted as in the
    Blalock tables."""
    out = []
    for (method, j), sub in rounds.groupby(["method", "round"], sort=False):
        ok = sub[sub["status"] == "ok"]
        failed = len(sub) - len(ok)
        flag = f" [failed {failed}/{len(sub)}]" if failed else ""
        out.append({"method": method, "round": int(j), "weights remaining (%)": f"{100 * sub['density'].iloc[0]:.2f}",
                    "r": format_ratio(round(float(sub["ratio"].iloc[0]), 4)),
                    "top-1": fmt_cell(ok["top1"].tolist()) + flag, "top-5": fmt_cell(ok["top5"].tolist()) + flag})
    order = {m: i for i, m in enumerate(method_order(rounds["method"].unique()))}
    out.sort(key=lambda r: (order[r["method"]], r["round"]))
    return pd.DataFrame(out).set_index("method")


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


def run(eval_paths: list[str], all_path: str, reports_dir: str, report: dict | None = None,
        config: dict | None = None, imp_rounds: list[str] | None = None) -> list[Path]:
    """Collect eval rows into ``all_path`` and write every table and figure under
    ``reports_dir``.  ``report``: the ``report:`` settings (see ``report_choices``);
    ``config``: the resolved configuration, written to ``<reports_dir>/config.yaml`` for
    the HTML report (its ``report`` section is used when ``report`` is not given)."""
    if config is not None:
        import yaml

        report = report if report is not None else config.get("report")
        write_text("# The resolved configuration of this run (defaults < preset < config.yaml < overrides)\n"
                   + yaml.safe_dump(config, sort_keys=False), Path(reports_dir) / "config.yaml")
    frames = [_read_verified(p).assign(cell_dir=str(Path(p).parent)) for p in eval_paths]
    df = pd.concat(frames, ignore_index=True).sort_values(
        ["dataset", "arch", "method", "ratio", "seed"], kind="stable").reset_index(drop=True)
    df["variant"] = df["variant"].fillna("none") if "variant" in df.columns else "none"
    with atomic_path(all_path) as tmp:
        df.drop(columns="cell_dir").to_parquet(tmp, index=False)
    # tables and figures name a sanity-check variant's row "method (variant)", next to the method
    df["method"] = [method_label(m, v) for m, v in zip(df["method"], df["variant"])]
    choices = report_choices(report, df["method"].unique(), df["ratio"].unique())
    rounds = (pd.concat([_read_verified(p) for p in imp_rounds], ignore_index=True) if imp_rounds
              else pd.DataFrame())
    reports = Path(reports_dir)
    tables, figures = reports / "tables", reports / "figures"
    written = []
    long_cells = []
    for (dataset, arch), sub in df.groupby(["dataset", "arch"], sort=True):
        stem = f"{dataset}_{arch}"
        md_parts, html_parts = [], []
        for metric, label in METRICS.items():
            title = f"{label} on {dataset} / {arch}"
            md_parts.append(to_markdown(blalock_table(sub, metric, "md"), title))
            html_parts.append((title, blalock_table(sub, metric, "html")))
            written += _write_table_files(blalock_table(sub, metric, "plain"), blalock_table(sub, metric, "tex"),
                                          title + ": mean ± sample std (n seeds)", tables / f"{stem}_{metric}")
            long_cells.append(cell_stats(sub, metric))
        cells = pd.concat(long_cells[-2:], ignore_index=True)
        with atomic_path(tables / f"{stem}_cells.csv") as tmp:
            cells.to_csv(tmp, index=False)
        comp = compression_table(sub)
        coll = collapse_table(sub)
        for name, table in (("compression", comp), ("collapse", coll)):
            with atomic_path(tables / f"{stem}_{name}.csv") as tmp:
                table.to_csv(tmp)
        comp_title = f"Compression on {dataset} / {arch}: requested r, empirical r_e, error, theoretical speed-up"
        coll_title = f"Layer collapse on {dataset} / {arch}: layers whose mask kept no weight"
        md_parts += [to_markdown(comp, comp_title), to_markdown(coll, coll_title)]
        html_parts += [(comp_title, _escape_plain(comp)), (coll_title, _escape_plain(coll))]
        write_text(NOTE + "\n\n" + "\n".join(md_parts), tables / f"{stem}.md")
        write_text(to_html(html_parts, NOTE), tables / f"{stem}.html")
        written += [tables / f"{stem}.md", tables / f"{stem}.html", tables / f"{stem}_cells.csv"]

        plot_accuracy(sub, f"{dataset} / {arch}", figures / f"{stem}_accuracy.png")
        plot_compression(sub, f"{dataset} / {arch}", figures / f"{stem}_compression.png")
        hr = choices["heatmap_ratio"]
        dens = layer_densities(sub, hr)
        heat = figures / f"{stem}_density_r{format_ratio(hr)}.png"
        if dens.empty:  # the chosen ratio is not in this run: say so rather than fail
            dens = pd.DataFrame({"(no cell at this ratio)": [math.nan]}, index=["—"])
        plot_density_heatmap(dens, f"{dataset} / {arch}", hr, heat)
        cm, cr = choices["curves"]["method"], choices["curves"]["ratio"]
        cell = sub[(sub["method"] == cm) & (sub["ratio"] == cr)]
        logs = [_read_verified(Path(c) / "train_log.parquet").assign(seed=s)
                for c, s in zip(cell["cell_dir"], cell["seed"]) if (Path(c) / "train_log.parquet").exists()]
        plot_curves(pd.concat(logs, ignore_index=True) if logs else pd.DataFrame(),
                    f"{dataset} / {arch}: training curves of {cm} at r = {format_ratio(cr)}, one line per seed",
                    figures / f"{stem}_curves.png")
        written += [figures / f"{stem}_{k}.png" for k in ("accuracy", "compression", "curves")] + [heat]
        if (sub["variant"] != "none").any():
            written += _write_variants(sub, dataset, arch, tables, figures)
        pair_rounds = rounds[(rounds["dataset"] == dataset) & (rounds["arch"] == arch)] if len(rounds) else rounds
        if len(pair_rounds):
            table = imp_rounds_table(pair_rounds)
            title = f"Iterative magnitude pruning on {dataset} / {arch}: test accuracy after every round"
            write_text(to_markdown(table, title), tables / f"{stem}_imp_rounds.md")
            with atomic_path(tables / f"{stem}_imp_rounds.csv") as tmp:
                table.to_csv(tmp)
            plot_imp_rounds(pair_rounds, f"{dataset} / {arch}: IMP, round by round (mean ± std over seeds)",
                            figures / f"{stem}_imp_rounds.png")
            written += [tables / f"{stem}_imp_rounds.md", figures / f"{stem}_imp_rounds.png"]

    for arch, sub in df.groupby("arch", sort=True):
        ratios = [r for r in choices["table_ratios"] if r in set(sub["ratio"])] or default_table_ratios(sub["ratio"])
        title = (f"{arch}: the study's layout at r = {', '.join(format_ratio(r) for r in ratios)} "
                 "(dense row: its r = 1 values)")
        write_text(NOTE + "\n\n" + to_markdown(study_table(sub, ratios, "md"), title), tables / f"study_{arch}.md")
        write_text(to_html([(title, study_table(sub, ratios, "html"))], NOTE), tables / f"study_{arch}.html")
        written += _write_table_files(study_table(sub, ratios, "plain"), study_table(sub, ratios, "tex"), title,
                                      tables / f"study_{arch}")
        written += [tables / f"study_{arch}.md", tables / f"study_{arch}.html"]
    print(f"aggregate: {len(df)} eval rows -> {all_path}", flush=True)
    for path in written:
        if path.suffix in (".md", ".png"):
            print(f"aggregate: wrote {path}", flush=True)
    return written

