"""The report's tables as text: Blalock-style (Markdown, CSV, LaTeX, HTML), the
study's layout, compression, layer collapse, sanity checks and IMP rounds.

Markdown, LaTeX and HTML show a separable best in bold, the group tied for best in
italics (the rule: ``report_stats``'s module doc and ``BEST_RULE``), † after a cell
where a layer collapsed (see ``report_stats``).  The wide CSVs keep plain
``mean ± s (n)`` strings.  Each table takes the cell statistics computed once per
(dataset, arch, metric) (``report_stats.cell_stats``), or computes them when not given.
Nothing here imports torch.
"""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from prunelib.catalogue import registry
from prunelib.foundations.artifacts import atomic_path, write_text
from prunelib.config.grid import DENSE
from prunelib.foundations import eval_row
from prunelib.foundations.eval_row import METRICS as ALL_METRICS
from prunelib.report.layout import method_label, method_order, split_label
from prunelib.report.stats import METRICS, SHORT, cell_stats, ece_over_seeds, fmt_cell
from prunelib.config.settings import format_ratio


DAGGER = "†"
DOUBLE_DAGGER = "‡"


#: The rule behind the bold and italic marks, in words (prunelib/report/stats.py, ``mark_best``).
BEST_RULE = ("bold = best, marked only where separable: the highest mean beats every other pruning method "
             "by more than their combined standard error, mean_best − mean_m > √(s_best²/n_best + s_m²/n_m), "
             "with n ≥ 2 seeds for both; italics = tied for best: no method is separable, so the highest mean "
             "and every method not separable from it are in italics; no mark at chance (an accuracy at or below "
             "chance + 1/C, C classes, chance = k/C for top-k); lower is better for ECE and NLL.")

NOTE = ("Cells: mean ± sample std (n seeds) of final-epoch test accuracy in %; rows: methods with the "
        "dense control first; columns: compression ratio r = 1/density. Per column, among pruning methods: "
        f"{BEST_RULE} {DAGGER} = a layer collapsed (mask kept none of its weights) in at least one seed; "
        f"{DOUBLE_DAGGER} = in at least one seed, ties at the cut left at least 1% of the weights to the seeded "
        "tie-break draw (degenerate scores: the mask is partly random).")


VARIANTS_NOTE = (
    "Cells: mean ± sample std (n seeds) of final-epoch test accuracy in %; a variant's cell adds "
    "[its mean minus the method's mean, in points]. shuffle_layer: each tensor's mask permuted "
    "(per-layer density kept); reinit: fresh initial weights; shuffle_weights: surviving initial "
    "weights permuted within each tensor; invert: the lowest-ranked weights kept. A method whose "
    "variants match it carries no information in its mask beyond what they keep.")


def render(stat: dict | pd.Series | None, style: str = "plain") -> str:
    """A cell as text: plain (no marks), csv (marks as [best] [tied best] [collapsed k/n]),
    md (bold / italics / †), tex (\\textbf / \\textit / $^\\dagger$) or html (<b> / <i>)."""
    if stat is None:
        return "—"
    failed = int(stat.get("failed_seeds", 0) or 0)
    failed_mark = f" [failed {failed}/{stat['seeds']}]" if failed else ""
    if stat["n"] == 0:
        return failed_mark.strip() or "—"
    digits = ALL_METRICS[stat["metric"]].digits if stat.get("metric") in ALL_METRICS else 2  # % vs plain numbers
    std = "–" if stat["n"] < 2 else f"{stat['std']:.{digits}f}"
    text = f"{stat['mean']:.{digits}f} ± {std} ({stat['n']})" + failed_mark
    if style == "plain":
        return text
    collapsed = stat["collapsed_seeds"] > 0
    best, tied_best = bool(stat.get("best", False)), bool(stat.get("tied_best", False))
    tied = int(stat.get("tied_seeds", 0) or 0) > 0
    if style == "csv":
        marks = (["[best]"] if best else []) + (["[tied best]"] if tied_best else [])
        marks += [f"[collapsed {stat['collapsed_seeds']}/{stat['seeds']}]"] if collapsed else []
        marks += [f"[ties {int(stat['tied_seeds'])}/{stat['seeds']}]"] if tied else []
        return " ".join([text, *marks])
    if style == "md":
        text = f"**{text}**" if best else f"*{text}*" if tied_best else text
        return text + (f" {DAGGER}" if collapsed else "") + (f" {DOUBLE_DAGGER}" if tied else "")
    if style == "tex":
        text = _tex_escape(text)
        text = rf"\textbf{{{text}}}" if best else rf"\textit{{{text}}}" if tied_best else text
        return text + (r"$^\dagger$" if collapsed else "") + (r"$^\ddagger$" if tied else "")
    if style == "html":
        text = html.escape(text)
        text = f"<b>{text}</b>" if best else f"<i>{text}</i>" if tied_best else text
        return (text + (f" <span title='a layer collapsed'>{DAGGER}</span>" if collapsed else "")
                + (f" <span title='ties at the cut: the mask is partly random'>{DOUBLE_DAGGER}</span>"
                   if tied else ""))
    raise ValueError(f"unknown style {style!r}")


def blalock_table(df: pd.DataFrame, metric: str, style: str = "plain",
                  stats: pd.DataFrame | None = None) -> pd.DataFrame:
    """Rows = methods (dense first), columns = ratios, cells rendered in ``style``
    (``stats``: ``cell_stats(df, metric)``, when already computed)."""
    stats = cell_stats(df, metric) if stats is None else stats
    ratios = sorted(df["ratio"].unique())
    index = {(r["method"], r["ratio"]): r for _, r in stats.iterrows()}
    rows = {m: {f"r={format_ratio(r)}": render(index.get((m, float(r))), style) for r in ratios}
            for m in method_order(df["method"].unique())}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "method"
    return table


def study_table(df: pd.DataFrame, ratios, style: str = "plain", stats: pd.DataFrame | None = None) -> pd.DataFrame:
    """The study's layout for one arch: rows = methods, columns = r x dataset x
    {top-5, top-1}; the dense row shows its r = 1 values in every column (reference).
    ``stats``: the cell statistics of ``df`` for every metric, when already computed."""
    datasets_ = sorted(df["dataset"].unique())
    if stats is None:
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


#: Columns of the beyond-top-1 table: eval-row column, label, and whether it is shown in %.
BEYOND = (("balanced_accuracy", "balanced acc.", True), ("min_class_recall", "worst-class recall", True),
          ("ece", "ECE", True), ("nll", "NLL", False))


def beyond_top1_table(df: pd.DataFrame) -> pd.DataFrame:
    """Rows = methods, columns = r; a cell: balanced accuracy, worst-class recall (and
    the class most often worst), ECE (``stats.ECE_DEFINITION``, as in the reliability
    diagrams) and NLL, means over seeds (prunelib/train/metrics.py).
    Empty for eval rows made before these columns existed."""
    if not set(c for c, _, _ in BEYOND) <= set(df.columns):
        return pd.DataFrame()
    rows = {}
    for (method, ratio), sub in df.groupby(["method", "ratio"], sort=False):
        ok = sub[sub["status"] == "ok"] if "status" in sub else sub
        if ok.empty:
            text = "—"
        else:
            parts = [f"{label} {ece_over_seeds(ok)[0]:.2f}%" if col == "ece"  # (the reliability diagrams' ECE)
                     else f"{label} {100 * ok[col].mean():.2f}%" if pct else f"{label} {ok[col].mean():.3f}"
                     for col, label, pct in BEYOND]
            worst = ok["min_recall_class"].mode()
            parts[1] += f" (class {int(worst.iloc[0])})" if len(worst) else ""
            text = "; ".join(parts) + f" ({len(ok)})"
        rows.setdefault(method, {})[f"r={format_ratio(ratio)}"] = text
    table = pd.DataFrame.from_dict(rows, orient="index").reindex(method_order(rows))
    table = table[sorted(table.columns, key=lambda c: float(c[2:]))].fillna("—")
    table.index.name = "method"
    return table


#: The label of the best-of-checkpoints metric wherever a table shows it (never ranked,
#: never in bold: it is selected on the test set).
BEST_OF_CHECKPOINTS = "best of checkpoints (the paper's metric; optimistic, selected on test)"


def checkpoints_table(df: pd.DataFrame) -> pd.DataFrame:
    """Rows = methods, columns = r; a cell: our headline, the final weights' test top-1,
    then the best test top-1 over the checkpoints kept (``eval.every_steps``), each mean ±
    sample std in % (n seeds), and the steps the best occurred at.  Plain text: no best
    is marked.  Empty when no eval row evaluated checkpoints."""
    if "best_test_top1" not in df.columns or not df["best_test_top1"].notna().any():
        return pd.DataFrame()
    rows = {}
    for (method, ratio), sub in df.groupby(["method", "ratio"], sort=False):
        ok = sub[(sub["status"] == "ok") & sub["best_test_top1"].notna()] if "status" in sub else sub
        if ok.empty:
            text = "—"
        else:
            final, best = (fmt_cell(ok[c]) for c in ("top1", "best_test_top1"))
            steps = ", ".join(str(int(v)) for v in sorted(ok["best_test_step"].unique()))
            text = f"final {final}; best of checkpoints {best} at step {steps}"
        rows.setdefault(method, {})[f"r={format_ratio(ratio)}"] = text
    table = pd.DataFrame.from_dict(rows, orient="index").reindex(method_order(rows))
    table = table[sorted(table.columns, key=lambda c: float(c[2:]))].fillna("—")
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
                     **_measured_cells(df, sub),
                     "n": len(sub)})
    order = {m: i for i, m in enumerate(method_order(df["method"].unique()))}
    rows.sort(key=lambda r: (order[r["method"]], float(r["r"])))
    return pd.DataFrame(rows).set_index("method")


#: Measured speed-ups (prunelib/methods/slimming.py): eval-row column -> compression-table column.
MEASURED = {"measured_speedup_infer_b1": "measured × infer b1",
            "measured_speedup_infer_b256": "measured × infer b256",
            "measured_speedup_train": "measured × train step",
            "measured_speedup_infer_sparse": "measured × CSR infer b256"}


def _measured_cells(df: pd.DataFrame, sub: pd.DataFrame) -> dict:
    """The measured speed-ups beside the theoretical one (``measured_cell``; — where they
    do not apply), the slimmed-vs-masked check, and the device they were measured on;
    columns only where some row of ``df`` has a measurement."""
    out = {}
    if "granularity" in df:
        out["pruned"] = "/".join(sorted(set(sub["granularity"].dropna()))) or "—"
    for col, title in MEASURED.items():
        if col in df and df[col].notna().any():
            out[title] = measured_cell(sub, col)
    if "slim_max_abs_diff" in df and df["slim_max_abs_diff"].notna().any():
        d = sub["slim_max_abs_diff"]
        out["slim vs masked max |Δ|"] = f"{d.max():.1e}" if d.notna().any() else "—"
    if out and "measure_device" in df and any(c in out for c in MEASURED.values()):
        out["measured on"] = "; ".join(sorted(set(sub["measure_device"].dropna()))) or "—"
    return out


#: The mark of a cell whose seeds disagree beyond their spread (``eval_row.seeds_disagree``).
SEEDS_DISAGREE = "≠"
#: How a measured speed-up cell reads (the compression table's title carries it).
MEASURED_NOTE = ("median over seeds of each seed's median over repeats (IQR: the seeds' median interquartile "
                 f"range over repeats); {SEEDS_DISAGREE} [min–max]: the seeds disagree beyond their spread "
                 "(some two seeds' median ± IQR do not overlap)")


def measured_cell(sub: pd.DataFrame, col: str) -> str:
    """One measured speed-up over the seeds of a cell: ``median× (IQR q)``, and, when
    ``eval_row.seeds_disagree``, the mark and the seeds' range (rows from before the
    IQR was recorded: the median alone)."""
    v = sub[col].dropna() if col in sub else pd.Series(dtype=float)
    if v.empty:
        return "—"
    iqr_col = col + eval_row.SPREAD_SUFFIX
    if iqr_col not in sub or sub[iqr_col].isna().all():
        return f"{v.median():.2f}×"
    iqr = sub.loc[v.index, iqr_col]
    text = f"{v.median():.2f}× (IQR {iqr.median():.2f})"
    if eval_row.seeds_disagree(v, iqr):
        text += f" {SEEDS_DISAGREE} [{v.min():.2f}–{v.max():.2f}]"
    return text


def measured_devices(df: pd.DataFrame) -> str:
    """The devices the measured speed-ups of ``df`` were taken on ("" if none)."""
    cols = [c for c in MEASURED if c in df]
    if "measure_device" not in df or not cols:
        return ""
    has = df[cols].notna().any(axis=1)
    return "; ".join(sorted(set(df.loc[has, "measure_device"].dropna())))


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
    variants = [v for v in registry.VARIANTS if v in set(rows["variant"])]
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
    """A self-contained HTML page of titled tables (cells may hold <b>/<i> marks).  Each
    table sits in a ``div.scroll`` (overflow-x: auto): a table wider than the window
    scrolls inside the page instead of pushing it sideways."""
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'>"
             "<meta name='viewport' content='width=device-width, initial-scale=1'><style>",
             "body{font-family:sans-serif;font-size:14px;margin:1em;max-width:100%}"
             "p{max-width:70em}.scroll{overflow-x:auto;max-width:100%;margin-bottom:1.5em}"
             "table{border-collapse:collapse}"
             "th,td{border:1px solid #ccc;padding:3px 8px;text-align:right;white-space:nowrap}"
             "th:first-child,td:first-child{text-align:left}th{background:#f0f0f0}",
             "</style></head><body>", f"<p>{html.escape(note)}</p>"]
    for title, table in sections:
        parts.append(f"<h3>{html.escape(title)}</h3><div class='scroll'><table><tr>")
        parts += [f"<th>{html.escape(str(c))}</th>" for c in [table.index.name or ""] + list(table.columns)]
        parts.append("</tr>")
        for idx, row in table.iterrows():
            parts.append("<tr>" + "".join(f"<td>{v}</td>" for v in [html.escape(str(idx))] + list(row)) + "</tr>")
        if table.empty:
            parts.append(f"<tr><td colspan='{len(table.columns) + 1}'>(none)</td></tr>")
        parts.append("</table></div>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def escape_plain(table: pd.DataFrame) -> pd.DataFrame:
    return table.map(lambda v: html.escape(str(v)))


def write_table_files(table_plain, table_tex, title, base: Path) -> list[Path]:
    """The wide CSV (plain cells) and the LaTeX table (marked cells) of one table."""
    csv_path = base.with_suffix(".csv")
    with atomic_path(csv_path) as tmp:
        table_plain.to_csv(tmp)
    tex_path = base.with_suffix(".tex")
    write_text(to_latex(table_tex, title, escaped=True), tex_path)
    return [csv_path, tex_path]


#: The signal-propagation columns of the eval row (prunelib/foundations/eval_row.py) the
#: table shows, with their headers.
SIGPROP_COLUMNS = {"isometry_residual_before": "residual before AI", "isometry_residual_after": "residual after AI",
                   "jsv_mean_dense": "JSV mean, dense", "jsv_mean_pruned": "JSV mean, pruned",
                   "jsv_mean_pruned_ai": "JSV mean, pruned + AI"}


def signal_propagation_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per method and ratio: the means over seeds of the isometry residuals and of the
    input-output Jacobian's mean singular value at each point (``init.jacobian_spectrum``,
    ``init.after_pruning: approximate_isometry``), with the number of seeds; empty where no
    row measured them."""
    cols = [c for c in SIGPROP_COLUMNS if c in df.columns]
    if not cols:
        return pd.DataFrame()
    data = df[["method", "ratio", "after_pruning", *cols]].copy()
    data[cols] = data[cols].apply(pd.to_numeric, errors="coerce")
    data = data.dropna(subset=cols, how="all")
    if data.empty:
        return pd.DataFrame()
    grouped = data.groupby(["method", "ratio", "after_pruning"], sort=True)
    table = grouped[cols].mean().round(3)
    table["n"] = grouped.size().astype(int)
    table = table.rename(columns=SIGPROP_COLUMNS).reset_index()
    table["ratio"] = [format_ratio(r) for r in table["ratio"]]
    return table.set_index("method")
