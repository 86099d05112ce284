"""Which report files the ``aggregate`` stage writes and what they show, without pandas.

The Snakefile needs these names when it is parsed (to declare the aggregate rule's
outputs and their captions); keeping them apart from ``prunelib.report.aggregate`` spares every
Snakemake invocation, including each cluster submission, the pandas import.
"""

from __future__ import annotations

from pathlib import Path

from prunelib.catalogue import registry
from prunelib.foundations.eval_row import HEADLINE
from prunelib.config.grid import DENSE
from prunelib.config.settings import format_ratio


def table_metrics(metric: str | None = None) -> list[str]:
    """The metrics of the Blalock tables: ``metric`` (``report.metric``, default top-1)
    first, then the headline ones (prunelib/foundations/eval_row.py)."""
    first = metric or HEADLINE[0]
    return [first] + [m for m in HEADLINE if m != first]


def method_label(method: str, variant: str = "none", allocation: str = "") -> str:
    """A table row's name: the method, ``method+allocation`` under ``prune.allocation``
    (``snip+erk``), and `` (variant)`` after it for a sanity check."""
    name = f"{method}+{allocation}" if allocation else method
    return name if variant in ("none", None) else f"{name} ({variant})"


def split_label(label: str) -> tuple[str, str]:
    """(method, variant) of a ``method_label``."""
    if label.endswith(")") and " (" in label:
        method, variant = label[:-1].split(" (", 1)
        return method, variant
    return label, "none"


def method_order(methods) -> list[str]:
    """Dense first, then methods in registry order, each followed by its variants."""
    order, variants = list(registry.METHODS), list(registry.VARIANTS)  # (dense is the first entry)

    def key(label):
        m, v = split_label(label)
        base = registry.base_method(m.split("+", 1)[0])  # (snip+erk and snip@vs sort with snip)
        return (order.index(base) if base in order else len(order), m,
                variants.index(v) if v in variants else len(variants), v)

    return sorted(set(methods), key=key)


def default_table_ratios(ratios) -> list[float]:
    """r = 32 and 64 when present (the study's), else the two largest."""
    ratios = sorted({float(r) for r in ratios})
    chosen = [r for r in (32.0, 64.0) if r in ratios]
    return chosen if len(chosen) == 2 else ratios[-2:]


def report_choices(report: dict | None, methods, ratios) -> dict:
    """Resolve ``report:`` settings (``config.ReportSettings`` as a dict) against the grid:
    heat-map ratio and curves ratio default to the largest pruned ratio, curves method to
    snip (else the first method; only its r = 1 for the dense control is used: the curves
    show every method), table ratios to ``default_table_ratios``."""
    report = report or {}
    pruned_methods = [m for m in method_order(methods) if m != DENSE]
    pruned_ratios = sorted({float(r) for r in ratios if float(r) != 1.0}) or [1.0]
    curves = report.get("curves") or {}
    method = curves.get("method") or ("snip" if "snip" in pruned_methods else
                                      (pruned_methods[0] if pruned_methods else DENSE))
    c_ratio = 1.0 if method == DENSE else float(curves.get("ratio") or pruned_ratios[-1])
    return {"metric": report.get("metric") or "top1",
            "heatmap_ratio": float(report.get("heatmap_ratio") or pruned_ratios[-1]),
            "curves": {"method": method, "ratio": c_ratio},
            "table_ratios": [float(r) for r in (report.get("table_ratios") or default_table_ratios(ratios))]}


def writes_checkpoints(config: dict | None) -> bool:
    """Whether a run keeps checkpoints for the best-of-checkpoints metric
    (``eval.every_steps``): then every pair gets its checkpoints table as CSV too."""
    return bool(((config or {}).get("eval") or {}).get("every_steps"))


def writes_spectra(config: dict | None) -> bool:
    """Whether the run measures the Jacobian spectra (``init.jacobian_spectrum``), so that
    aggregate writes each pair's spectra figure."""
    return bool(((config or {}).get("init") or {}).get("jacobian_spectrum"))


def output_names(pairs, archs, report: dict | None, methods, ratios, variants=("none",),
                 imp: bool = False, checkpoints: bool = False, spectra: bool = False) -> dict[str, list[str]]:
    """Every file ``run`` writes under reports/ (relative), by kind; the rule declares
    them all.  With sanity-check variants in the grid, each pair also gets a variants
    table and figure; with iterative (IMP) methods, a table and figure of every round;
    with ``checkpoints`` (``writes_checkpoints``), its checkpoints table; with ``spectra``
    (``writes_spectra``), the Jacobian spectra figure."""
    ch = report_choices(report, methods, ratios)
    hr = format_ratio(ch["heatmap_ratio"])
    out = {"md": [], "csv": [], "html": [], "figures": []}
    with_variants = any(v != "none" for v in variants) and any(float(r) != 1.0 for r in ratios)
    for d, a in pairs:
        stem = f"tables/{d}_{a}"
        out["md"].append(f"{stem}.md")
        out["csv"] += [f"{stem}_{m}.csv" for m in table_metrics((report or {}).get("metric"))]
        out["csv"] += [f"{stem}_cells.csv", f"{stem}_compression.csv", f"{stem}_collapse.csv"]
        if checkpoints:
            out["csv"].append(f"{stem}_checkpoints.csv")
        out["html"].append(f"{stem}.html")
        out["figures"] += [f"figures/{d}_{a}_{kind}.png" for kind in
                           ("accuracy", "compression", f"density_r{hr}", "curves", "calibration")]
        if spectra:
            out["figures"].append(f"figures/{d}_{a}_jacobian_spectra.png")
        if with_variants:
            out["md"].append(f"{stem}_variants.md")
            out["csv"].append(f"{stem}_variants.csv")
            out["figures"].append(f"figures/{d}_{a}_variants.png")
        if imp and any(float(r) != 1.0 for r in ratios):
            out["md"].append(f"{stem}_imp_rounds.md")
            out["csv"].append(f"{stem}_imp_rounds.csv")
            out["figures"].append(f"figures/{d}_{a}_imp_rounds.png")
    for a in archs:
        out["md"].append(f"tables/study_{a}.md")
        out["csv"].append(f"tables/study_{a}.csv")
        out["html"].append(f"tables/study_{a}.html")
    return out


def caption_name(path) -> str:
    """The caption file (workflow/report/<name>.rst) of an output of ``run``."""
    name = Path(path).name
    if name.endswith(".png"):
        for kind in ("accuracy", "compression", "density", "curves", "variants", "imp_rounds", "calibration",
                     "jacobian_spectra"):
            if f"_{kind}" in name:
                return kind
    for kind in ("compression", "collapse", "cells", "variants", "imp_rounds", "checkpoints"):
        if name.endswith(f"_{kind}.csv"):
            return f"table_{kind}"
    return "table_study" if name.startswith("study_") else "table_accuracy"
