"""Blalock-style result tables and the report's figures, from the eval rows.

Orchestration: collect the eval rows into ``results/all.parquet`` and write every
table (``report_tables``) and figure (``report_figures``) per (dataset, arch), from the
cell statistics (``report_stats``) computed once per (dataset, arch, metric).  The
names of the files written are ``report_layout``'s.  Nothing here imports torch.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from prunelib.foundations.artifacts import atomic_path, write_text
from prunelib.config.grid import DENSE
from prunelib.foundations.paths import CELL_FILES, REPORT_CONFIG
from prunelib.report.figures import (plot_accuracy, plot_calibration, plot_compression, plot_curves,
                                     plot_density_heatmap, plot_imp_rounds, plot_jacobian_spectra, plot_variants)
# (tables' and statistics' names re-exported: this module is the reports' one entry point)
from prunelib.foundations import eval_row
from prunelib.foundations.eval_row import METRICS as ALL_METRICS
from prunelib.report.layout import (default_table_ratios, writes_checkpoints, writes_spectra, method_label, output_names,  # noqa: F401
                                    report_choices, table_metrics)
from prunelib.report.stats import ECE_DEFINITION, METRICS, cell_stats, declared, fmt_cell, layer_densities, read_verified  # noqa: F401
from prunelib.report.tables import (BEST_OF_CHECKPOINTS, NOTE, VARIANTS_NOTE, beyond_top1_table,  # noqa: F401
                                    MEASURED_NOTE,
                                    blalock_table, checkpoints_table, collapse_table, compression_table, escape_plain,
                                    imp_rounds_table, measured_devices, render, signal_propagation_table, study_table,
                                    to_html, to_markdown,
                                    variants_table, write_table_files)
from prunelib.config.settings import format_ratio


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


def merge_speedups(df: pd.DataFrame, speed: pd.DataFrame) -> pd.DataFrame:
    """``df`` with its speed-up columns (``eval_row.speedup_columns()``, ``measure_device``)
    taken from ``speed``, matched on ``eval_row.KEY``; a row of ``df`` that ``speed`` lacks
    keeps NaN (one clear error if ``speed`` has a key twice)."""
    if speed.empty:
        return df
    speed = speed.copy()
    speed["variant"] = speed["variant"].fillna("none")
    speed["ratio"] = speed["ratio"].astype(float)
    dup = speed.duplicated(list(eval_row.KEY))
    if dup.any():
        raise ValueError(f"speed-ups: cell {speed.loc[dup, list(eval_row.KEY)].iloc[0].to_dict()} measured twice")
    cols = [c for c in (*eval_row.speedup_columns(), "measure_device") if c in speed]
    kept = df.drop(columns=[c for c in cols if c in df])
    kept["ratio"] = kept["ratio"].astype(float)
    return kept.merge(speed[[*eval_row.KEY, *cols]], on=list(eval_row.KEY), how="left", validate="one_to_one")


def run(eval_paths: list[str], all_path: str, reports_dir: str, report: dict | None = None,
        config: dict | None = None, imp_rounds: list[str] | None = None, mask_tables: list[str] | None = None,
        train_logs: list[str] | None = None, speedups: str | None = None) -> list[Path]:
    """Collect eval rows into ``all_path`` and write every table and figure under
    ``reports_dir``.  ``report``: the ``report:`` settings (see ``report_choices``);
    ``config``: the resolved configuration, written to ``<reports_dir>/config.yaml`` for
    the HTML report (its ``report`` section is used when ``report`` is not given).
    ``mask_tables`` and ``train_logs``: the heat map's and the curves' files (the
    workflow's declared inputs; None = whatever lies beside the eval rows).  ``speedups``:
    the measure rule's rows (prunelib/stages/measure.py); their speed-up columns and
    ``measure_device`` replace the eval rows' (which the eval stage leaves NaN)."""
    if config is not None:
        import yaml

        report = report if report is not None else config.get("report")
        write_text("# The resolved configuration of this run (defaults < preset < config.yaml < overrides)\n"
                   + yaml.safe_dump(config, sort_keys=False), Path(reports_dir) / Path(REPORT_CONFIG).name)
    frames = [read_verified(p).assign(cell_dir=str(Path(p).parent)) for p in eval_paths]
    df = pd.concat(frames, ignore_index=True).sort_values(
        ["dataset", "arch", "method", "ratio", "seed"], kind="stable").reset_index(drop=True)
    df["variant"] = df["variant"].fillna("none") if "variant" in df.columns else "none"
    if speedups:
        df = merge_speedups(df, read_verified(speedups))
    with atomic_path(all_path) as tmp:
        df.drop(columns="cell_dir").to_parquet(tmp, index=False)
    # tables and figures name a sanity-check variant's row "method (variant)", next to the method
    allocations = df["allocation"].fillna("") if "allocation" in df.columns else [""] * len(df)
    df["method"] = [method_label(m, v, a) for m, v, a in zip(df["method"], df["variant"], allocations)]
    choices = report_choices(report, df["method"].unique(), df["ratio"].unique())
    rounds = (pd.concat([read_verified(p) for p in imp_rounds], ignore_index=True) if imp_rounds
              else pd.DataFrame())
    reports = Path(reports_dir)
    tables, figures = reports / "tables", reports / "figures"
    written = []
    stats_of = {}  # (dataset, arch, metric) -> the cell statistics, computed once
    for (dataset, arch), sub in df.groupby(["dataset", "arch"], sort=True):
        stem = f"{dataset}_{arch}"
        md_parts, html_parts = [], []
        for metric in table_metrics(choices["metric"]):
            label = ALL_METRICS[metric].title
            title = f"{label} on {dataset} / {arch}"
            stats = stats_of[(dataset, arch, metric)] = cell_stats(sub, metric)

            def blalock(style, metric=metric, stats=stats):
                return blalock_table(sub, metric, style, stats)

            md_parts.append(to_markdown(blalock("md"), title))
            html_parts.append((title, blalock("html")))
            written += write_table_files(blalock("plain"), blalock("tex"), title + ": mean ± sample std (n seeds)",
                                         tables / f"{stem}_{metric}")
        cells = pd.concat([stats_of[(dataset, arch, m)] for m in table_metrics(choices["metric"])],
                          ignore_index=True)
        with atomic_path(tables / f"{stem}_cells.csv") as tmp:
            cells.to_csv(tmp, index=False)
        comp = compression_table(sub)
        coll = collapse_table(sub)
        for name, table in (("compression", comp), ("collapse", coll)):
            with atomic_path(tables / f"{stem}_{name}.csv") as tmp:
                table.to_csv(tmp)
        comp_title = f"Compression on {dataset} / {arch}: requested r, empirical r_e, error, theoretical speed-up"
        if measured_devices(sub):  # prunelib/methods/slimming.py: dense / slimmed (or CSR) time, medians
            comp_title += (f"; measured speed-ups (dense time / pruned time) on {measured_devices(sub)}: "
                           f"{MEASURED_NOTE}")
        coll_title = f"Layer collapse on {dataset} / {arch}: layers whose mask kept no weight"
        md_parts += [to_markdown(comp, comp_title), to_markdown(coll, coll_title)]
        html_parts += [(comp_title, escape_plain(comp)), (coll_title, escape_plain(coll))]
        extra_tables = (
            (beyond_top1_table(sub), None,
             f"Beyond top-1 on {dataset} / {arch}: balanced accuracy, worst-class recall (the class most often "
             f"worst), expected calibration error ({ECE_DEFINITION}, as in the reliability diagrams), NLL; "
             "means over seeds (n)"),
            (signal_propagation_table(sub), None,
             f"Signal propagation on {dataset} / {arch}: isometry residual (sum over layers of "
             "||(C*W)(C*W)^T - I||_F) before and after approximate isometry, and the mean singular value of "
             "the input-output Jacobian (dense, pruned, pruned + AI); means over seeds (n)"),
            (checkpoints_table(sub), tables / f"{stem}_checkpoints.csv" if writes_checkpoints(config) else None,
             f"Final weights (our metric) beside the {BEST_OF_CHECKPOINTS} on {dataset} / {arch}: test top-1 "
             "in %, mean ± sample std (n seeds)"),
        )
        for table, csv, title in extra_tables:
            if csv is not None:  # (declared by the rule: written even when no cell kept checkpoints)
                with atomic_path(csv) as tmp:
                    table.to_csv(tmp)
                written.append(csv)
            if not table.empty:  # (shown only where the eval rows have their columns)
                md_parts.append(to_markdown(table, title))
                html_parts.append((title, escape_plain(table)))
        write_text(NOTE + "\n\n" + "\n".join(md_parts), tables / f"{stem}.md")
        write_text(to_html(html_parts, NOTE), tables / f"{stem}.html")
        written += [tables / f"{stem}.md", tables / f"{stem}.html", tables / f"{stem}_cells.csv"]

        plot_accuracy(sub, f"{dataset} / {arch}", figures / f"{stem}_accuracy.png")
        plot_compression(sub, f"{dataset} / {arch}", figures / f"{stem}_compression.png")
        hr = choices["heatmap_ratio"]
        dens = layer_densities(sub, hr, mask_tables)
        heat = figures / f"{stem}_density_r{format_ratio(hr)}.png"
        if dens.empty:  # the chosen ratio is not in this run: say so rather than fail
            dens = pd.DataFrame({"(no cell at this ratio)": [math.nan]}, index=["—"])
        plot_density_heatmap(dens, f"{dataset} / {arch}", hr, heat)
        cr = choices["curves"]["ratio"]
        logs = []
        for _, row in sub[((sub["ratio"] == cr) | (sub["method"] == DENSE)) & (sub["variant"] == "none")].iterrows():
            path = declared(row["cell_dir"], CELL_FILES["train_log"], train_logs)
            if path is not None:
                logs.append(read_verified(path).assign(seed=row["seed"], method=row["method"]))
        plot_curves(pd.concat(logs, ignore_index=True) if logs else pd.DataFrame(),
                    f"{dataset} / {arch}: training curves of every method at r = {format_ratio(cr)} "
                    "(dense: r = 1), one line per seed", figures / f"{stem}_curves.png")
        plot_calibration(sub, f"{dataset} / {arch}: reliability diagrams of every method", choices["heatmap_ratio"],
                         figures / f"{stem}_calibration.png")
        written += [figures / f"{stem}_{k}.png" for k in ("accuracy", "compression", "curves", "calibration")]
        written.append(heat)
        if writes_spectra(config):  # (declared by the rule: written even when no row has spectra)
            plot_jacobian_spectra(sub, f"{dataset} / {arch}: layer-wise singular values at the start of training",
                                  figures / f"{stem}_jacobian_spectra.png")
            written.append(figures / f"{stem}_jacobian_spectra.png")
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
        stats = pd.concat([s for (_, a, m), s in stats_of.items() if a == arch and m in METRICS], ignore_index=True)

        def study(style, sub=sub, ratios=ratios, stats=stats):
            return study_table(sub, ratios, style, stats)

        write_text(NOTE + "\n\n" + to_markdown(study("md"), title), tables / f"study_{arch}.md")
        write_text(to_html([(title, study("html"))], NOTE), tables / f"study_{arch}.html")
        written += write_table_files(study("plain"), study("tex"), title,
                                      tables / f"study_{arch}")
        written += [tables / f"study_{arch}.md", tables / f"study_{arch}.html"]
    print(f"aggregate: {len(df)} eval rows -> {all_path}", flush=True)
    for path in written:
        if path.suffix in (".md", ".png"):
            print(f"aggregate: wrote {path}", flush=True)
    return written
