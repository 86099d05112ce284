"""Blalock-style result tables and accuracy-vs-compression plots.

Blalock et al. ("What is the State of Neural Network Pruning?", MLSys 2020) ask for
every number to come with its spread and its sample size.  A cell of our tables is

    mean ± s (n),   s = sqrt( sum (x_i - mean)^2 / (n - 1) )   (sample std; '–' when n = 1)

of the final-epoch test accuracy over seeds, in percent.  Rows are methods with the
dense control first; columns are compression ratios r.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from prunelib.artifacts import atomic_path, write_text
from prunelib.config import DENSE, format_ratio, known

METRICS = {"top1": "Top-1 accuracy (%)", "top5": "Top-5 accuracy (%)"}


def method_order(methods) -> list[str]:
    order = [DENSE] + known("methods")
    return sorted(set(methods), key=lambda m: (order.index(m) if m in order else len(order), m))


def fmt_cell(values) -> str:
    values = [100.0 * v for v in values if v is not None and not math.isnan(v)]
    n = len(values)
    if n == 0:
        return ""
    mean = sum(values) / n
    if n == 1:
        return f"{mean:.2f} ± – (1)"
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return f"{mean:.2f} ± {std:.2f} ({n})"


def blalock_table(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Rows = methods (dense first), columns = ratios, cells = 'mean ± std (n)'."""
    ratios = sorted(df["ratio"].unique())
    rows = {}
    for method in method_order(df["method"].unique()):
        sub = df[df["method"] == method]
        rows[method] = {f"r={format_ratio(r)}": fmt_cell(sub[sub["ratio"] == r][metric].tolist()) or "—"
                        for r in ratios}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "method"
    return table


def to_markdown(table: pd.DataFrame, title: str) -> str:
    header = [table.index.name or ""] + list(table.columns)
    lines = [f"### {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for idx, row in table.iterrows():
        lines.append("| " + " | ".join([str(idx)] + [str(v) for v in row]) + " |")
    return "\n".join(lines) + "\n"


def _tex_escape(text: str) -> str:
    return (str(text).replace("\\", r"\textbackslash{}").replace("_", r"\_").replace("%", r"\%")
            .replace("&", r"\&").replace("±", r"$\pm$").replace("–", "--").replace("—", "---"))


def to_latex(table: pd.DataFrame, caption: str) -> str:
    cols = "l" + "r" * len(table.columns)
    head = " & ".join(_tex_escape(c) for c in [table.index.name or ""] + list(table.columns))
    body = [" & ".join(_tex_escape(v) for v in [idx] + list(row)) + r" \\" for idx, row in table.iterrows()]
    return "\n".join([r"\begin{table}[t]", r"\centering", rf"\caption{{{_tex_escape(caption)}}}",
                      rf"\begin{{tabular}}{{{cols}}}", r"\toprule", head + r" \\", r"\midrule", *body,
                      r"\bottomrule", r"\end{tabular}", r"\end{table}"]) + "\n"


def plot_accuracy(df: pd.DataFrame, title: str, out_png: Path) -> None:
    """Top-1 and top-5 vs r (log2 axis): one line per method, a ±1 std band, dense as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    pruned = df[df["method"] != DENSE].copy()
    dense = df[df["method"] == DENSE]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharex=True)
    order = [m for m in method_order(pruned["method"].unique())]
    for ax, metric in zip(axes, METRICS):
        plot_df = pruned.assign(acc=100 * pruned[metric])
        if len(plot_df):
            sns.lineplot(data=plot_df, x="ratio", y="acc", hue="method", hue_order=order, style="method",
                         style_order=order, markers=True, dashes=False, errorbar="sd", ax=ax)
        if len(dense):
            ax.axhline(100 * dense[metric].mean(), color="black", ls="--", lw=1, label="dense (r=1)")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("compression ratio r = 1/density (log2)")
        ax.set_ylabel(METRICS[metric])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{title}: mean ± 1 sample std over seeds, final-epoch test accuracy")
    fig.tight_layout()
    for ext in ("png", "svg"):
        with atomic_path(out_png.with_suffix(f".{ext}")) as tmp:
            fig.savefig(tmp, format=ext, dpi=120)
    plt.close(fig)


def run(eval_paths: list[str], all_path: str, reports_dir: str) -> list[Path]:
    frames = [pd.read_parquet(p) for p in eval_paths]
    df = pd.concat(frames, ignore_index=True).sort_values(
        ["dataset", "arch", "method", "ratio", "seed"], kind="stable").reset_index(drop=True)
    with atomic_path(all_path) as tmp:
        df.to_parquet(tmp, index=False)
    reports = Path(reports_dir)
    written = []
    for (dataset, arch), sub in df.groupby(["dataset", "arch"], sort=True):
        stem = f"{dataset}_{arch}"
        md_parts = []
        for metric, label in METRICS.items():
            table = blalock_table(sub, metric)
            title = f"{label} on {dataset} / {arch}"
            md_parts.append(to_markdown(table, title))
            csv_path = reports / "tables" / f"{stem}_{metric}.csv"
            with atomic_path(csv_path) as tmp:
                table.to_csv(tmp)
            tex_path = reports / "tables" / f"{stem}_{metric}.tex"
            write_text(to_latex(table, title + ": mean ± sample std (n seeds)"), tex_path)
            written += [csv_path, tex_path]
        md_path = reports / "tables" / f"{stem}.md"
        note = ("Cells: mean ± sample std (n seeds) of final-epoch test accuracy in %; "
                "rows: methods with the dense control first; columns: compression ratio r = 1/density.\n\n")
        write_text(note + "\n".join(md_parts), md_path)
        fig_path = reports / "figures" / f"{stem}_accuracy.png"
        plot_accuracy(sub, f"{dataset} / {arch}", fig_path)
        written += [md_path, fig_path]
    print(f"aggregate: {len(df)} eval rows -> {all_path}", flush=True)
    for path in written:
        if path.suffix in (".md", ".png"):
            print(f"aggregate: wrote {path}", flush=True)
    return written
