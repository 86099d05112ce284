"""The 2022 foresight-pruning study's four findings, checked one by one on the part of
its protocol that runs here: the ``thesis`` preset's MNIST CNN (lenet5), 14 methods,
r = 2 .. 64, seeds 42, 43, 44 (the study ran seed 42 alone).

The section of ``docs/reproductions.md`` that this module writes is generated from the
cells on disk, whatever part of the grid has finished: every table gives n per cell,
and a finding that needs trained cells says which ratios it rests on.

* (i)  "magnitude-based methods ... perform worse than random pruning in a large
  percentage of test cases": per (method, r), the paired difference of test top-1
  against ``random`` over the seeds both have, d = top1_m - top1_random; *worse* when
  mean(d) + 2 SE(d) < 0, *better* when mean(d) - 2 SE(d) > 0, else *tie* (n < 3: the
  sign only, marked).  Reproduced when at least a quarter of the magnitude cells tested
  are worse.
* (ii) "Hessian-based methods commonly under-prune by approximately 50 %": compression
  error (r_e - r) / r, r_e = n / kept over the prunable weights, from each cell's mask
  table.  We keep exactly round(n / r) weights (``prunelib/methods/masking.py`` draws
  among the weights tied at the cut); the mask table records how many weights tied at
  the threshold (``tied_at_threshold``) and how many of them were kept
  (``tied_kept``), so the masks a ``score >= threshold`` rule (every tied weight kept)
  or a ``score > threshold`` rule (every tied weight dropped) would have made are
  counted from the same table: kept_ge = kept + tied - tied_kept, kept_gt = kept -
  tied_kept.  Our own error is 0 by construction (up to the rounding of n / r).
* (iii) "SNIP is the most consistent method, followed by GraSP, LAMP and the
  gradient-magnitude baselines": within each (r, seed) where every method has a
  trained cell, methods are ranked by test top-1 (1 = best, ties share the mean rank);
  each method's mean rank over those ratios per seed, then mean ± std over seeds.
  Reproduced when SNIP's mean rank is the lowest.
* (iv) layer collapse: from the mask tables' ``collapsed`` column (a tensor with no
  weight kept), which methods collapse which layers at which r, in how many seeds.
  The study says every method but GraSP, OBD, the global gradient baseline and SNIP
  collapses by r = 64; reproduced when the methods that collapse a layer at some r <= 64
  are exactly the others.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pandas as pd

from prunelib.config.settings import format_ratio
from prunelib.foundations import paths

ARCH, DATASET = "lenet5", "mnist"
#: Finding (i)'s threshold: "a large percentage" read as at least a quarter of the cells.
WORSE_SHARE = 0.25
FIG_ACCURACY = "study_accuracy.png"
FIG_COMPRESSION = "study_compression_error.png"
CONFIG = "results/reproductions/thesis_mnist.yaml"


def config() -> dict:
    """The thesis preset narrowed to its MNIST pair (the part of the study that runs here)."""
    return {"preset": "thesis", "grid": {"pairs": [[ARCH, DATASET]], "archs": [ARCH], "datasets": [DATASET]}}


def settings():
    from prunelib import config as cfg

    return cfg.to_settings(cfg.resolve(config()))


def command() -> str:
    return "prunelib reproductions study"


def run(cores: int, extra: list[str], ledger: str | Path | None = None) -> int:
    """Run the thesis preset's MNIST cells through Snakemake (eval files as targets),
    leaving out those whose finished rows ``ledger`` keeps (None: run them all)."""
    import yaml

    from prunelib.config import contracts
    from prunelib.report.ledger import not_kept

    s = settings()
    targets = not_kept([(p, contracts.eval_contract(s, ARCH, DATASET, method, r, seed).cell_hash)
                        for (method, r, seed), p in _cell_paths(s, "eval")], ledger, "prunelib reproductions study")
    if not targets:
        return 0
    out = Path(CONFIG)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(config(), sort_keys=False))
    cmd = [sys.executable, "-m", "snakemake", "--cores", str(cores), "--rerun-incomplete", "--keep-going",
           "--configfile", str(out), *extra, "--", *targets]
    print("prunelib reproductions study:", " ".join(cmd), flush=True)
    return subprocess.call(cmd)


def _cell_paths(s, role: str):
    out = []
    for method in ["dense", *s.grid.methods]:
        for r in ([1] if method == "dense" else [r for r in s.grid.ratios if float(r) != 1]):
            for seed in s.grid.seeds:
                f = paths.cell_files(dataset=DATASET, arch=ARCH, seed=seed, method=method, ratio=format_ratio(r))
                out.append(((method, float(r), int(seed)), f[role]))
    return out


# --------------------------------------------------------------------------- loading

def load(root, s=None) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(eval rows, mask-table rows, counts) of the study's cells under ``root`` (a folder,
    or a ``ledger.Cells``: the folder, then the kept rows).  Eval rows made with other
    settings than the preset's now (settings hash) are left out and counted, as are
    failed ones."""
    from prunelib.config import contracts
    from prunelib.report.ledger import cells_of

    cells = cells_of(root)
    s = s or settings()
    evals, masks = [], []
    counts = {"eval_expected": 0, "eval_found": 0, "stale": 0, "failed": 0, "mask_expected": 0, "mask_found": 0}
    for (method, r, seed), path in _cell_paths(s, "eval"):
        counts["eval_expected"] += 1
        expected = contracts.eval_contract(s, ARCH, DATASET, method, r, seed).cell_hash
        got = cells.rows(path, lambda rows: rows[0]["settings_hash"] == expected)
        if got is None:
            continue
        row = got[0]
        if row["settings_hash"] != expected:
            counts["stale"] += 1
            continue
        if row["status"] != "ok":
            counts["failed"] += 1
            continue
        counts["eval_found"] += 1
        evals.append({"method": method, "ratio": r, "seed": seed, "top1": row["top1"], "top5": row.get("top5")})
    for (method, r, seed), path in _cell_paths(s, "mask_table"):
        if method == "dense":
            continue
        counts["mask_expected"] += 1
        got = cells.rows(path)
        if got is None:
            continue
        counts["mask_found"] += 1
        for t in got:
            masks.append({"method": method, "ratio": r, "seed": seed, "name": t["name"], "numel": t["numel"],
                          "kept": t["kept"], "collapsed": bool(t["collapsed"]),
                          "tied": int(t.get("tied_at_threshold") or 0), "tied_kept": int(t.get("tied_kept") or 0)})
    ev = pd.DataFrame(evals, columns=["method", "ratio", "seed", "top1", "top5"])
    mk = pd.DataFrame(masks, columns=["method", "ratio", "seed", "name", "numel", "kept", "collapsed", "tied",
                                      "tied_kept"])
    return ev, mk, counts


# --------------------------------------------------------------------------- statistics

def _mean_se(values) -> tuple[float, float, int]:
    v = [float(x) for x in values]
    n = len(v)
    if n == 0:
        return math.nan, math.nan, 0
    m = sum(v) / n
    if n < 2:
        return m, math.nan, n
    sd = math.sqrt(sum((x - m) ** 2 for x in v) / (n - 1))
    return m, sd / math.sqrt(n), n


def _cell(values, scale: float = 100.0) -> str:
    v = [scale * float(x) for x in values]
    if not v:
        return "—"
    m = sum(v) / len(v)
    if len(v) == 1:
        return f"{m:.2f} (n = 1)"
    sd = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1))
    return f"{m:.2f} ± {sd:.2f} (n = {len(v)})"


# --------------------------------------------------------------------------- finding (i)

def beyond_2se(mean: float, se: float) -> int:
    """1 / -1 where a mean difference clears 2 standard errors above / below zero, else 0
    (the page's rule for a paired difference over n >= 3 seeds)."""
    return 1 if mean - 2 * se > 0 else -1 if mean + 2 * se < 0 else 0


def worse_than_random(ev: pd.DataFrame, methods, baseline: str) -> pd.DataFrame:
    """Per (method, ratio): paired top-1 difference to ``baseline`` (random pruning) over
    the shared seeds (points), n, and the class worse / better / tie (module doc)."""
    out = []
    rnd = ev[ev.method == baseline].set_index(["ratio", "seed"])["top1"]
    for method in methods:
        sub = ev[ev.method == method]
        for ratio, g in sub.groupby("ratio", sort=True):
            d = [100 * (row.top1 - rnd[(ratio, row.seed)]) for row in g.itertuples()
                 if (ratio, row.seed) in rnd.index]
            if not d:
                continue
            m, se, n = _mean_se(d)
            if n < 3:
                cls = ("worse" if m < 0 else "better" if m > 0 else "tie") + f" (n = {n} < 3: sign only)"
            else:
                cls = {-1: "worse", 1: "better", 0: "tie"}[beyond_2se(m, se)]
            out.append({"method": method, "ratio": float(ratio), "n": n, "diff": m, "se": se, "class": cls})
    return pd.DataFrame(out, columns=["method", "ratio", "n", "diff", "se", "class"])


def finding_i(table: pd.DataFrame) -> tuple[str, str]:
    """(verdict, one-line summary) of finding (i) from ``worse_than_random``'s table."""
    if table.empty:
        return "not testable yet", "no trained magnitude and random cells on disk"
    worse = int(table["class"].str.startswith("worse").sum())
    sure = int((table["class"] == "worse").sum())
    total = len(table)
    summary = (f"{worse} of {total} (method, r) cells worse than random ({sure} beyond 2 SE with n ≥ 3); "
               f"ratios tested: {', '.join(format_ratio(r) for r in sorted(table.ratio.unique()))}")
    if (table.n < 3).all():
        return "not testable yet (n < 3 everywhere)", summary
    return ("reproduced" if sure >= WORSE_SHARE * total else "corrected"), summary


# --------------------------------------------------------------------------- finding (ii)

def compression_errors(mk: pd.DataFrame) -> pd.DataFrame:
    """Per (method, ratio, seed): r_e and compression error (%) of our masks, and of the
    masks a ``>=`` rule (ties kept) and a ``>`` rule (ties dropped) would make."""
    if mk.empty:
        return pd.DataFrame(columns=["method", "ratio", "seed", "n", "kept", "err", "err_ge", "err_gt"])
    g = mk.groupby(["method", "ratio", "seed"], sort=True)[["numel", "kept", "tied", "tied_kept"]].sum().reset_index()

    def err(n, kept, r):
        return 100 * ((n / kept if kept else math.inf) - r) / r

    g["n"] = g["numel"]
    g["err"] = [err(n, k, r) for n, k, r in zip(g.numel, g.kept, g.ratio)]
    g["err_ge"] = [err(n, k + t - tk, r) for n, k, t, tk, r in zip(g.numel, g.kept, g.tied, g.tied_kept, g.ratio)]
    g["err_gt"] = [err(n, k - tk, r) for n, k, tk, r in zip(g.numel, g.kept, g.tied_kept, g.ratio)]
    return g[["method", "ratio", "seed", "n", "kept", "err", "err_ge", "err_gt"]]


def finding_ii(ce: pd.DataFrame, stated: dict) -> tuple[str, str]:
    """``stated``: the study's under-pruning range (%) per Hessian-based method."""
    if ce.empty:
        return "not testable yet", "no mask tables on disk"
    worst = float(ce["err"].abs().max())
    hess = ce[ce.method.isin(list(stated))]
    parts = [f"our masks: largest |compression error| {worst:.3f} % (the rounding of n / r)"]
    if not hess.empty:
        by = hess.groupby(["method", "ratio"])["err_ge"].mean()
        low = by.idxmin()
        parts.append(f"a `>=` threshold (ties kept) on the same scores: {by.min():+.1f} % at worst "
                     f"({low[0]}, r = {format_ratio(low[1])}); study: "
                     + ", ".join(f"{m} −{a}…−{b} %" for m, (a, b) in stated.items()))
        reproduced_by_ties = by.min() <= -min(a for a, _ in stated.values())
        parts.append("ties at the cut reproduce the study's size of under-pruning" if reproduced_by_ties
                     else "ties at the cut explain only part of it on our scores")
    return ("corrected" if worst < 1 else "not reproduced: we do not prune exactly"), "; ".join(parts)


# --------------------------------------------------------------------------- finding (iii)

def ranks(ev: pd.DataFrame, methods) -> tuple[pd.DataFrame, list[float]]:
    """(per method: mean rank over ratios per seed, then mean, std, n over seeds, and
    the per-ratio mean rank; the ratios used).  Only (ratio, seed) groups where every
    method of ``methods`` has a trained cell are ranked."""
    sub = ev[ev.method.isin(methods)]
    groups = []
    for (ratio, seed), g in sub.groupby(["ratio", "seed"], sort=True):
        if set(g.method) >= set(methods):
            g = g.assign(rank=g["top1"].rank(ascending=False, method="average"))
            groups.append(g)
    if not groups:
        return pd.DataFrame(columns=["method", "mean", "std", "n"]), []
    allr = pd.concat(groups)
    per_seed = allr.groupby(["method", "seed"])["rank"].mean().reset_index()
    out = []
    for method, g in per_seed.groupby("method"):
        v = list(g["rank"])
        m = sum(v) / len(v)
        sd = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else math.nan
        row = {"method": method, "mean": m, "std": sd, "n": len(v)}
        for ratio, gr in allr[allr.method == method].groupby("ratio"):
            row[f"r{format_ratio(ratio)}"] = gr["rank"].mean()
        out.append(row)
    return pd.DataFrame(out).sort_values(["mean", "method"]).reset_index(drop=True), sorted(allr.ratio.unique())


def finding_iii(rk: pd.DataFrame, stated: dict) -> tuple[str, str]:
    if rk.empty:
        return "not testable yet", "no ratio where every method has a trained cell"
    order = list(rk.method)
    summary = (f"our order: {', '.join(order[:6])}, …; study: {stated['most_consistent']} first "
               f"(on MNIST its top 4: {', '.join(stated['mnist_top4'])})")
    if (rk.n < 3).all():
        return "not testable yet (n < 3 seeds)", summary
    return ("reproduced" if order[0] == stated["most_consistent"] else "corrected"), summary


# --------------------------------------------------------------------------- finding (iv)

def collapses(mk: pd.DataFrame) -> pd.DataFrame:
    """Per (method, ratio, layer) that collapsed in at least one seed: seeds collapsed / seeds."""
    if mk.empty:
        return pd.DataFrame(columns=["method", "ratio", "name", "collapsed", "seeds"])
    g = mk.groupby(["method", "ratio", "name"], sort=True).agg(collapsed=("collapsed", "sum"),
                                                              seeds=("seed", "nunique")).reset_index()
    return g[g.collapsed > 0].reset_index(drop=True)


#: Top-1 at or below the share of MNIST's most frequent test class (digit 1: 1,135 of 10,000)
#: is no better than a constant answer: "at chance".
CHANCE_TOP1 = 0.1135


def at_chance(ev: pd.DataFrame) -> pd.DataFrame:
    """Per (method, ratio) with a trained seed at chance: seeds at chance / seeds."""
    if ev.empty:
        return pd.DataFrame(columns=["method", "ratio", "at_chance", "seeds"])
    g = ev[ev.method != "dense"].assign(chance=lambda d: d.top1 <= CHANCE_TOP1)
    g = g.groupby(["method", "ratio"], sort=True).agg(at_chance=("chance", "sum"), seeds=("seed", "nunique"))
    return g[g.at_chance > 0].reset_index()


def finding_iv(col: pd.DataFrame, mk: pd.DataFrame, stated: dict, methods) -> tuple[str, str]:
    if mk.empty:
        return "not testable yet", "no mask tables on disk"
    tested = sorted(set(mk[mk.ratio <= 64].method))
    ours = sorted(set(col[col.ratio <= 64].method))
    theirs = sorted(set(methods) - set(stated["survive_r64"]))
    summary = (f"methods with a collapsed layer at some r ≤ 64 here: {', '.join(ours) or 'none'}; "
               f"study: every method but {', '.join(stated['survive_r64'])}")
    if set(tested) != set(methods) or 64.0 not in set(mk.ratio):
        return "not testable yet (mask tables missing)", summary
    return ("reproduced" if ours == theirs else "corrected"), summary


def provisional(verdict: str, counts: dict) -> str:
    """A verdict drawn from part of the mask tables says so."""
    if verdict.startswith("not testable") or counts["mask_found"] >= counts["mask_expected"]:
        return verdict
    return f"{verdict}, provisional ({counts['mask_found']} of {counts['mask_expected']} mask tables)"


# --------------------------------------------------------------------------- figures

STYLES = [(m, ls) for ls in ("-", "--", ":", "-.") for m in ("o", "s", "^", "v", "D", "P", "X")]


def _save_png(fig, out_png: Path) -> None:
    """The page's figures are PNG only (an SVG beside each would double the docs' size)."""
    from prunelib.foundations.artifacts import atomic_path
    from prunelib.report.figures import _pyplot

    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    _pyplot().close(fig)


def _plot_lines(ax, data: dict, ratios) -> None:
    from prunelib.report.figures import _ratio_axis

    for i, (label, points) in enumerate(sorted(data.items())):
        marker, ls = STYLES[i % len(STYLES)]
        xs = [p[0] for p in points]
        ax.errorbar(xs, [p[1] for p in points], yerr=[p[2] for p in points], label=label, marker=marker,
                    linestyle=ls, markersize=4, capsize=2, alpha=0.85)
    if ratios:
        _ratio_axis(ax, ratios)


def _coinciding(data: dict) -> list[str]:
    """Groups of labels whose points coincide (a note, so that no line hides another)."""
    seen: dict = {}
    for label, pts in data.items():
        seen.setdefault(tuple((round(x, 6), round(y, 3)) for x, y, _ in pts), []).append(label)
    return [", ".join(v) for v in seen.values() if len(v) > 1]


def plot_accuracy(ev: pd.DataFrame, out_png: Path) -> list[str]:
    """Top-1 (%) vs compression ratio, mean ± std over seeds, one line per method (the
    study's Figure 4.11 layout); returns the groups of coinciding lines."""
    from prunelib.report.figures import _pyplot

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    data = {}
    for method, g in ev[ev.method != "dense"].groupby("method"):
        pts = []
        for r, gr in g.groupby("ratio", sort=True):
            v = list(100 * gr.top1)
            m = sum(v) / len(v)
            sd = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0
            pts.append((float(r), m, sd))
        data[method] = pts
    dense = ev[ev.method == "dense"]
    if not dense.empty:
        ax.axhline(100 * dense.top1.mean(), color="k", lw=0.8, label=f"dense (n = {len(dense)})")
    _plot_lines(ax, data, sorted(ev[ev.method != "dense"].ratio.unique()))
    ax.set_xlabel("compression ratio r")
    ax.set_ylabel("test top-1 (%)")
    ax.set_title("Top-1 accuracy vs compression, lenet5 on MNIST (thesis preset; mean ± std over seeds)",
                 fontsize=9)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7)
    fig.tight_layout()
    _save_png(fig, out_png)
    return _coinciding(data)


def plot_compression(ce: pd.DataFrame, stated: dict, out_png: Path) -> list[str]:
    """Compression error (%) vs r: left our masks, right a ``>=`` threshold on the same
    scores, with the study's stated ranges for GraSP and OBD (the study's Figure 4.13)."""
    from prunelib.report.figures import _pyplot

    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    ratios = sorted(ce.ratio.unique())
    notes = []
    for ax, col, title in ((axes[0], "err", "ours (exactly round(n / r) kept)"),
                           (axes[1], "err_ge", "`score >= threshold` (every tied weight kept)")):
        data = {}
        for method, g in ce.groupby("method"):
            pts = []
            for r, gr in g.groupby("ratio", sort=True):
                v = list(gr[col])
                m = sum(v) / len(v)
                pts.append((float(r), m, (max(v) - min(v)) / 2))
            data[method] = pts
        _plot_lines(ax, data, ratios)
        for method, (a, b) in stated.items():
            ax.axhspan(-b, -a, alpha=0.08, color="tab:red")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("compression ratio r")
        notes += [f"{title}: {g}" for g in _coinciding(data)]
    axes[0].set_ylabel("compression error (r_e − r) / r (%)")
    axes[1].text(0.02, 0.02, "shaded: the study's stated under-pruning, "
                 + ", ".join(f"{m} −{a}…−{b} %" for m, (a, b) in stated.items()),
                 transform=axes[1].transAxes, fontsize=7)
    axes[1].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7)
    fig.suptitle("Compression error vs compression, lenet5 on MNIST (mean over seeds; bars: half the range)",
                 fontsize=10)
    fig.tight_layout()
    _save_png(fig, out_png)
    return notes


# --------------------------------------------------------------------------- section

def _md_table(cols, rows) -> list[str]:
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows]
    return lines


def section(root, fig_dir: str | Path, values_path=None) -> str:
    """The study section of docs/reproductions.md (Markdown), its figures written into
    ``fig_dir``/reproductions/."""
    from prunelib.report.papers import PAPER_VALUES, paper_values

    book = paper_values(values_path or PAPER_VALUES)["study"]
    s = settings()
    methods = list(s.grid.methods)
    ev, mk, counts = load(root, s)
    ratios = [float(r) for r in s.grid.ratios if float(r) != 1]
    trained = sorted(ev[ev.method != "dense"].ratio.unique())
    lines = ["## The 2022 foresight-pruning study, finding by finding", "",
             f"Regenerate: `prunelib reproductions write` (reads `results/`; `--root DIR` for another "
             f"folder), after `{command()}` (or `make reproductions-study`), which runs the `thesis` preset's "
             f"MNIST cells through Snakemake: lenet5, {len(methods)} methods, r = "
             f"{', '.join(format_ratio(r) for r in ratios)}, seeds {', '.join(map(str, s.grid.seeds))} (the study "
             f"ran seed 42 alone); {s.train.epochs} epochs of SGD with Nesterov momentum {s.train.momentum:g}, "
             f"lr {s.train.lr:g}, batch {s.train.batch_size}.  The study's CIFAR parts (VGG-16, ResNet-56) "
             f"are not testable here (hours per cell on our CPUs).", "",
             f"**Found** (in `results/` and the ledger): {counts['eval_found']} of {counts['eval_expected']} "
             "trained cells "
             + ("(every ratio), " if counts['eval_found'] == counts['eval_expected'] else
                f"(r = {', '.join(format_ratio(r) for r in trained) or 'none'} so far), ")
             + f"{counts['mask_found']} of {counts['mask_expected']} mask tables; "
             f"{counts['stale']} stale (other settings), {counts['failed']} failed.  "
             "Every number below gives its n; findings (i) and (iii) rest on the trained ratios only, "
             "(ii) and (iv) on the mask tables (no training needed).", ""]

    # accuracy table + figure
    fig_dir = Path(fig_dir) / "reproductions"
    fig_dir.mkdir(parents=True, exist_ok=True)
    if not ev.empty:
        coincide = plot_accuracy(ev, fig_dir / FIG_ACCURACY)
        lines += ["### Accuracy vs compression (the study's Figure 4.11)", "",
                  f"![top-1 vs r](reproductions/{FIG_ACCURACY})", ""]
        if coincide:
            lines += ["Lines that coincide (drawn over each other): " + "; ".join(coincide) + ".", ""]
        rows = []
        for method in ["dense", *methods]:
            row = {"method": method}
            for r in ([1.0] if method == "dense" else ratios):
                v = ev[(ev.method == method) & (ev.ratio == r)].top1
                row[f"r = {format_ratio(r)}"] = _cell(v)
            rows.append(row)
        cols = ["method"] + [f"r = {format_ratio(r)}" for r in [1.0, *ratios]]
        lines += ["Test top-1 %, mean ± std (n seeds):", "", *_md_table(cols, rows), ""]

    # (i)
    wt = worse_than_random(ev, book["magnitude_methods"], book["baseline"])
    v1, s1 = finding_i(wt)
    # provisional until every (magnitude method, r) has n >= 3 seeds paired with random
    full = wt[wt.n >= 3] if not wt.empty else wt
    tested = sorted({float(r) for r in full.ratio}) if not full.empty else []
    if not v1.startswith("not testable") and len(full) < len(book["magnitude_methods"]) * len(ratios):
        v1 += (f", provisional ({len(full)} of {len(book['magnitude_methods']) * len(ratios)} (method, r) cells "
               f"paired with n ≥ 3; r = {', '.join(format_ratio(r) for r in tested) or 'none'} of {len(ratios)} "
               "ratios)")
    lines += ["### (i) Magnitude-based methods worse than random", "",
              f"Study: “{book['finding_i']['quote']}”.  Counted: {', '.join(book['magnitude_methods'])}.", "",
              f"**Verdict: {v1}.** {s1}.  Rule: per (method, r), the paired difference d of test top-1 to "
              f"`{book['baseline']}` over shared seeds is *worse* when mean(d) + 2 SE < 0 (n ≥ 3; n < 3: "
              f"its sign only, "
              f"marked); the finding is reproduced when at least {WORSE_SHARE:.0%} of the cells are worse "
              f"beyond 2 SE.", ""]
    if not wt.empty:
        lines += _md_table(["method", "r", "n", "d (points) ± SE", "class"],
                           [{"method": x["method"], "r": format_ratio(x["ratio"]), "n": x["n"],
                             "d (points) ± SE": f"{x['diff']:+.2f}"
                             + ("" if math.isnan(x["se"]) else f" ± {x['se']:.2f}"),
                             "class": x["class"]} for _, x in wt.iterrows()]) + [""]

    # (ii)
    ce = compression_errors(mk)
    stated = {k: tuple(v) for k, v in book["finding_ii"]["under_prune_pct"].items()
              if k in book["hessian_methods"]}
    v2, s2 = finding_ii(ce, stated)
    v2 = provisional(v2, counts)
    lines += ["### (ii) Hessian-based methods under-prune", "",
              f"Study: “{book['finding_ii']['quote']}”  Its stated cause: "
              f"“{book['finding_ii']['cause_stated']}”.",
              "", f"**Verdict: {v2}.** {s2}.", "",
              "We keep exactly round(n / r) weights: `select_top` in `prunelib/methods/masking.py` keeps every "
              "weight above the k-th largest score and draws, with the run's seed, as many of the weights "
              "*tied* at it as are still needed.  Turning that off is counted from the same mask tables: a "
              "`score >= threshold` rule keeps every tied weight (kept + tied − tied_kept), a `score > "
              "threshold` rule drops them all (kept − tied_kept); "
              "`tests/test_study.py::test_a_ge_threshold_on_grasp_scores_at_init_under_prunes` does the same "
              "on freshly computed scores.  The study's Figure 4.13 itself is not in its text; its stated ranges "
              "are drawn as shaded bands beside our curves.", ""]
    if not ce.empty:
        notes = plot_compression(ce, stated, fig_dir / FIG_COMPRESSION)
        lines += [f"![compression error vs r](reproductions/{FIG_COMPRESSION})", ""]
        if notes:
            lines += ["Lines that coincide: " + "; ".join(notes) + ".", ""]
        rows = []
        for method in methods:
            row = {"method": method}
            for r in ratios:
                g = ce[(ce.method == method) & (ce.ratio == r)]
                row[f"r = {format_ratio(r)}"] = (
                    "—" if g.empty else f"{g.err.mean():+.2f} / {g.err_ge.mean():+.1f} / {g.err_gt.mean():+.1f} "
                                        f"(n = {len(g)})")
            rows.append(row)
        lines += ["Compression error %, mean over seeds: ours / ties kept (`>=`) / ties dropped (`>`):", "",
                  *_md_table(["method"] + [f"r = {format_ratio(r)}" for r in ratios], rows), ""]

    # (iii)
    rk, used = ranks(ev, methods)
    v3, s3 = finding_iii(rk, book["finding_iii"])
    if not v3.startswith("not testable") and len(used) < len(ratios):
        v3 += (f", provisional (every method trained at r = {', '.join(format_ratio(r) for r in used)} "
               f"of {len(ratios)} ratios)")
    lines += ["### (iii) Consistency: mean rank across ratios", "",
              f"Study: “{book['finding_iii']['quote']}”.", "",
              f"**Verdict: {v3}.** {s3}.  Ranked at r = {', '.join(format_ratio(r) for r in used) or '—'} "
              f"(only ratios where every method has a trained cell for the seed).", ""]
    if not rk.empty:
        rcols = [c for c in rk.columns if c.startswith("r") and c[1:].replace(".", "").isdigit()]
        lines += _md_table(["method", "mean rank ± std over seeds (n)", *[f"rank at {c}" for c in rcols]],
                           [{"method": x["method"],
                             "mean rank ± std over seeds (n)": f"{x['mean']:.2f}"
                             + ("" if math.isnan(x['std']) else f" ± {x['std']:.2f}") + f" ({x['n']})",
                             **{f"rank at {c}": f"{x[c]:.2f}" for c in rcols if not pd.isna(x[c])}}
                            for _, x in rk.iterrows()]) + [""]

    # (iv)
    col = collapses(mk)
    v4, s4 = finding_iv(col, mk, book["finding_iv"], methods)
    v4 = provisional(v4, counts)
    lines += ["### (iv) Layer collapse", "", f"Study: “{book['finding_iv']['quote']}”.", "",
              f"**Verdict: {v4}.** {s4}.  A layer collapses when its mask keeps none of its weights "
              f"(mask table column `collapsed`); the study may also have counted accuracy at chance.", ""]
    if not col.empty:
        rows = []
        for method, g in col.groupby("method"):
            first = g.ratio.min()
            rows.append({"method": method, "first r": format_ratio(first),
                         "collapsed layers (seeds collapsed / seeds)": "; ".join(
                             f"r = {format_ratio(r)}: " + ", ".join(f"{x.name} ({x.collapsed}/{x.seeds})"
                                                                    for x in gr.itertuples())
                             for r, gr in g.groupby("ratio", sort=True))})
        lines += _md_table(["method", "first r", "collapsed layers (seeds collapsed / seeds)"], rows)
        never = sorted(set(mk.method) - set(col.method))
        lines += ["", f"No layer collapses at any r ≤ {format_ratio(max(mk.ratio))} for: "
                      f"{', '.join(never) or 'none'}.", ""]
        if "global_lap" in set(col.method):
            lines += ["global_lap's collapse of fc1 is what a faithful global LAP does, not a bug: ranked "
                      "across layers, fc1's lookahead factor (the norms of fc2's 10-entry columns, ≈ 0.08 at "
                      "PyTorch's default init, against ≈ 1.8 for conv2) puts its best weight at rank 28,612 of "
                      "430,500 (seed 42), so fc1 keeps nothing once r > 15.05.  The authors' own global variant "
                      "normalises each layer first (`lap_global_normalize`); the study's does not.  See the "
                      "docstring of `prunelib/methods/scorers/lap.py` and "
                      "`tests/test_methods.py::test_global_lap_collapses_lenet5_fc1_from_r16_at_the_thesis_init`.",
                      ""]
    chance = at_chance(ev)
    if ev[ev.method != "dense"].empty:
        lines += ["Accuracy at chance (the study's other sign of collapse): no trained cells yet.", ""]
    else:
        lines += [f"Accuracy at chance (top-1 ≤ {100 * CHANCE_TOP1:.2f} %, the most frequent MNIST test class; "
                  f"trained r = {', '.join(format_ratio(r) for r in trained)}): "
                  + ("; ".join(f"{x.method} at r = {format_ratio(x.ratio)} ({x.at_chance}/{x.seeds} seeds)"
                               for x in chance.itertuples()) or "none") + ".", ""]
    return "\n".join(lines) + "\n"
