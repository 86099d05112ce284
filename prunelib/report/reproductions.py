"""The reproduction table, ``docs/reproductions.md``: made from results on disk, never typed.

Each ``Reproduction`` names a preset and the cells of it that were run (network,
method, ratios, seeds, variants).  ``prunelib reproductions run NAME`` runs exactly those
cells through Snakemake (the preset's settings, a grid of just those cells); ``prunelib
reproductions write`` reads their eval rows (verified against their checksums) and
writes one row per (cell, paper value): the paper's value from
``prunelib/report/paper_values.yaml`` (the one file where papers' numbers are typed,
each with its source), our final error (1 - top-1 of the final weights, mean ± sample
std over the seeds that finished), ours under the paper's metric (best of the kept
checkpoints, SNIP's ``test.py``) where the preset keeps checkpoints, the difference and a
verdict by the rule ``verdict`` states (and the page repeats).  A cell that was not run
(or failed, or was made with other settings) is shown as such, with the time one seed
takes from its Snakemake benchmarks; nothing is filled in by hand.  The study section
(the 2022 study's four findings) is ``prunelib/report/study.py``.
"""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from prunelib.foundations import paths
from prunelib.report.papers import PAPER_VALUES, paper_values  # noqa: F401 (re-exported)
from prunelib.config.settings import format_ratio

DOC = "docs/reproductions.md"
#: The papers' numbers, with their sources (the only place they are typed).


@dataclass(frozen=True)
class Reproduction:
    name: str
    preset: str
    arch: str
    method: str
    ratios: tuple
    seeds: tuple
    #: Seeds of the dense control (r = 1) run beside the method's cells.
    dense_seeds: tuple = ()
    dataset: str = "mnist"
    #: What the paper is, for the protocol line.
    paper: str = ""
    #: Settings over the preset's: init arms it does not declare, another table's training
    #: (SNIP's Table 3); tests shorten runs with them.
    overrides: tuple = ()
    #: Key of the paper in paper_values.yaml's ``sources``.
    paper_key: str = ""
    #: The method's cells' variants (the sanity checks of a mask; "none" = the mask itself).
    variants: tuple = ("none",)
    #: Which of the paper's tables our protocol corresponds to, for the protocol line.
    corresponds: str = ""
    #: The cost of one seed where no benchmark of it is on disk yet (an estimate, said so).
    cost_estimate: str = ""
    #: The paper values (their ``where`` in paper_values.yaml) compared with this run's
    #: cells, an init arm's with its method's; empty: every value of its paper, network,
    #: dataset and exact method, and the dense control's.
    tables: tuple = ()
    #: What a reader must know beyond the protocol (e.g. why a row failed), with the
    #: command that shows it; on the page after its protocol entry.
    note: str = ""
    #: The reproduction whose cells this one's are paired with by seed (an init arm of the
    #: same protocol): the page gives their paired difference (``paired_checks``).
    paired_with: str = ""

    def grid(self) -> dict:
        """The preset's grid narrowed to these cells (r = 1 is the dense control)."""
        return {"archs": [self.arch], "datasets": [self.dataset], "methods": [self.method],
                "ratios": sorted({1, *self.ratios}) if self.dense_seeds else list(self.ratios),
                "seeds": sorted({*self.seeds, *self.dense_seeds}), "variants": list(self.variants),
                "pairs": None}

    def cells(self) -> list[tuple[float, int, str]]:
        """(ratio, seed, eval.parquet path) of every cell: the dense control's, then the
        method's (variant "none" only; ``variant_cells`` gives all)."""
        return [(r, seed, path) for r, seed, variant, path in self.variant_cells() if variant == "none"]

    def variant_cells(self) -> list[tuple[float, int, str, str]]:
        """(ratio, seed, variant, eval.parquet path) of every cell."""
        out = []
        todo = [(1, "dense", self.dense_seeds, ("none",))]
        todo += [(r, self.method, self.seeds, self.variants) for r in self.ratios]
        for r, method, seeds, variants in todo:
            for variant in variants:
                for seed in seeds:
                    files = paths.cell_files(dataset=self.dataset, arch=self.arch, seed=seed, method=method,
                                             ratio=format_ratio(r), variant=variant)
                    out.append((float(r), int(seed), variant, files["eval"]))
        return out

    def ratios_shown(self) -> list:
        return ([1] if self.dense_seeds else []) + list(self.ratios)

    def command(self) -> str:
        return f"prunelib reproductions run {self.name}"


# What each reproduction corresponds to in its paper: words only; the papers' numbers
# (and each value's protocol where it differs) are in paper_values.yaml.
_SNIP_PAPER = dict(paper="SNIP (Lee et al., ICLR 2019)", paper_key="snip")
_SNIP = dict(**_SNIP_PAPER,
             corresponds="SNIP's Table 1, trained as its Sec. 5 experiment setup says (the preset's comments "
                         "give each value's source). Table 3 (another sparsity, optimiser and weight decay; one "
                         "row per initialisation) is another protocol: its VS-X row for LeNet-300-100 runs as "
                         "snip_lenet300_table3, the others are shown, not run. Left open by "
                         "paper and code, so candidates for any gap: the total training length for MNIST (ours "
                         "75,000 steps, three lr stages; the code's default is 10,000 at a constant lr), the "
                         "biases before pruning (zero as the code is now, so every bias is pruned; drawn like the "
                         "weights in its first release, so some survive: init scheme "
                         "`variance_scaling_with_biases`, prunelib/nets/init_schemes.py), and the number of runs "
                         "behind Table 1. Differs from their code: our scoring batch is drawn from the whole "
                         "training split (theirs: the 90% trained on)")
_SIGPROP = dict(paper="Signal propagation (Lee et al., ICLR 2020)", paper_key="sigprop",
                corresponds="the paper's MLP-7 experiments with the preset's quick settings (its comments give "
                            "the authors' values beside them), in three init arms of one grid (init.arms): "
                            "`snip` is orthogonal init + approximate isometry, `snip@orth` orthogonal init alone, "
                            "`snip@vs` variance scaling; one dense control (orthogonal) serves all three")

#: The init arm of the SNIP code's first release: biases drawn like the weights.
_BIAS_ARM = "vs_biases"

#: What one seed of the LeNet-5-Caffe rows costs: the study's lenet5 cells (the same layers) train
#: at about 2,500 img/s on one core of this project's machine (their logs).
_LENET5_CAFFE_SEED = ("about 50 min of one CPU core (75,000 steps × 100 images at the ≈ 2,500 img/s at which "
                      "the same layers, the study's lenet5 cells, train on one core here)")

#: Why the LeNet-5-Caffe dense control fails (benchmarks/snip_dense_lr.py shows it; a test
#: holds this text to that script's output, DENSE_LR_OUTPUT).
DENSE_LR_OUTPUT = "docs/reproductions/snip_dense_lr.txt"
_LENET5_CAFFE_DENSE = (
    "Its dense control (r = 1) does not train under this protocol: the loss is NaN within the first epoch in "
    "every seed, while the pruned networks of the rows above train at the same lr 0.1. `python "
    f"benchmarks/snip_dense_lr.py --archs lenet5_caffe --out {DENSE_LR_OUTPUT}` trains the dense network for "
    "one epoch at other settings (3 seeds; its output is that file): it diverges at lr 0.1 with momentum "
    "0.9 (the paper's optimiser) and without momentum (the code's default optimiser), and at 0.05; it trains at "
    "0.02 and 0.01 (a finite loss after that epoch). The code's LeNet-5-Caffe has no activation after its "
    "convolutions (max-pools only); we have not tested whether that is why. The paper's reference error "
    "(Table 1: 0.9; Figure 1's κ = 0, \"trained without pruning\") does not say at which lr its dense network "
    "was trained")

#: The runs behind docs/reproductions.md: 3 seeds or more for every row; a row whose
#: seeds have not all run says so, with the time one seed takes.
RUNS = (
    Reproduction("snip_lenet300", "snip", "lenet300", "snip", (20, 50), (0, 1, 2), dense_seeds=(0, 1, 2),
                 tables=("Table 1", "Table 3, VS-H"), **_SNIP),
    # The SNIP code's first release drew the biases like the weights (init scheme
    # variance_scaling_with_biases), so some survive pruning: a candidate cause of the rows'
    # gap, run as an init arm of the same preset (paired by seed with the rows above).
    Reproduction("snip_lenet300_bias_init", "snip", "lenet300", f"snip@{_BIAS_ARM}", (20, 50), (0, 1, 2),
                 overrides=(("init", {"arms": {_BIAS_ARM: {"scheme": "variance_scaling_with_biases"}}}),),
                 tables=("Table 1",), paired_with="snip_lenet300", **_SNIP_PAPER,
                 corresponds="SNIP's Table 1 as snip_lenet300, but for the biases before pruning: drawn like the "
                             "weights, as the code's first release drew them, so that some survive pruning (one "
                             "of the open choices snip_lenet300 names)",
                 note="Its cells are paired seed by seed with snip_lenet300's (the section *Init arms, paired "
                      "by seed* gives the difference)"),
    # SNIP's Table 3 (Sec. 5.5) on LeNet-300-100 at VS-X: its own protocol, at r = 10.
    # An init arm, so that its scores and masks have folders of their own beside Table 1's.
    Reproduction("snip_lenet300_table3", "snip", "lenet300", "snip@vs_x", (10,), tuple(range(10)),
                 overrides=(("init", {"arms": {"vs_x": {"scheme": "xavier_normal"}}}),
                            ("train", {"optimizer": "adam", "lr": 0.001, "momentum": 0.0, "weight_decay": 0.0})),
                 tables=("Table 3, VS-X",), **_SNIP_PAPER,
                 corresponds="SNIP's Table 3, row VS-X (Sec. 5.5: κ = 90 %, Adam lr 0.001 without weight decay, "
                             "VS-X init for scoring and for training, 20 runs varying the init seed); the rest is "
                             "Table 1's protocol (the snip preset). Left open by the paper, so candidates for any "
                             "gap: the training length and lr schedule (ours Table 1's: 75,000 steps, the lr ×0.1 after "
                             "25k and 50k, Sec. 5's decay \"unless stated otherwise\"), whether training starts "
                             "from a fresh VS-X draw (ours, as the code's weights_ap) or the scored weights, "
                             "VS-X's distribution (ours Glorot normal, untruncated, PyTorch's xavier_normal_; the "
                             "released code has no VS-X, only TF's fan-in variance_scaling_initializer()), and "
                             "the biases (zero, so all pruned, as in the code now)"),
    Reproduction("snip_lenet5_caffe", "snip", "lenet5_caffe", "snip", (50, 100), (0, 1, 2),
                 dense_seeds=(0, 1, 2), cost_estimate=_LENET5_CAFFE_SEED, note=_LENET5_CAFFE_DENSE,
                 **_SNIP),
    Reproduction("lth_mnist", "lth_mnist", "mlp400x3", "lth", (25,), (0, 1, 2, 3, 4), dense_seeds=(0, 1, 2, 3, 4),
                 paper="Lottery ticket (Frankle & Carbin, ICLR 2019)", paper_key="lth",
                 variants=("none", "shuffle_layer", "reinit", "shuffle_weights", "invert"),
                 corresponds="no table of the paper: the preset's network and training length are not the "
                             "paper's (workflow/presets/lth_mnist.yaml says how they differ)",
                 cost_estimate="under an hour for the whole preset (5 seeds) on a 2-core CPU (the preset's "
                               "comment; no benchmark on disk)"),
    *(Reproduction(f"sigprop_{dataset}_{arch}", "sigprop", arch, "snip", (10,), (0, 1, 2), dense_seeds=(0, 1, 2),
                   dataset=dataset, **_SIGPROP)
      for dataset in ("mnist", "fashion_mnist") for arch in ("mlp7_linear", "mlp7_tanh")),
    # The other two arms of the same grid (their dense control is the row above's).
    *(Reproduction(f"sigprop_{dataset}_{arch}_{arm}", "sigprop", arch, f"snip@{arm}", (10,), (0, 1, 2),
                   dataset=dataset, **_SIGPROP)
      for dataset in ("mnist", "fashion_mnist") for arch in ("mlp7_linear", "mlp7_tanh") for arm in ("orth", "vs")),
)


def get(name: str) -> Reproduction:
    for run in RUNS:
        if run.name == name:
            return run
    raise SystemExit(f"prunelib reproductions: unknown run {name!r}; allowed: {', '.join(r.name for r in RUNS)}")


def config_of(run: Reproduction) -> dict:
    from prunelib.config import deep_merge

    return {**deep_merge({"preset": run.preset}, dict(run.overrides)), "grid": run.grid()}


def settings_of(run: Reproduction):
    from prunelib import config

    return config.to_settings(config.resolve(config_of(run)))


def protocol(run: Reproduction) -> str:
    """The protocol choices as the resolved preset states them (so the page cannot drift
    from the preset)."""
    s = settings_of(run)
    t = s.train
    opt = (f"SGD momentum {t.momentum:g}{' Nesterov' if t.nesterov and t.momentum else ''}"
           if t.optimizer == "sgd" and t.momentum else "Adam" if t.optimizer == "adam" else "plain SGD")
    sched = f"lr {t.lr:g}"
    if t.lr_schedule == "step":
        sched += f" ×{t.gamma:g} after {', '.join(str(m) for m in t.milestones)} {t.milestone_unit}"
    elif t.lr_schedule != "constant":
        sched += f" {t.lr_schedule}"
    length = f"{t.steps:,} steps" if t.steps else f"{t.epochs} epochs"
    parts = [f"init {s.init.scheme_for(run.method)}"]
    after = s.init.after_pruning_for(run.method)
    if after != "keep":
        parts.append("fresh weights drawn after pruning" if after == "redraw" else f"after pruning: {after}")
    if s.prune.include_bias:
        parts.append("biases pruned (counted in r)")
    from prunelib import config

    if run.method in config.IMP_METHODS:
        parts.append(f"IMP {s.iterative.criterion}, ×{s.iterative.round_factor:g} per round")
    parts += [f"{opt}, {sched}", f"batch {t.batch_size}", length]
    if t.weight_decay:
        parts.append(f"weight decay {t.weight_decay:g}")
    if t.val_fraction:
        parts.append(f"{100 * t.val_fraction:g}% held out")
    if s.eval.every_steps:
        keep = f", last {s.eval.keep_last}" if s.eval.keep_last else ""
        parts.append(f"checkpoints every {s.eval.every_steps} steps{keep}")
    return "; ".join(parts)


def run(name: str, cores: int, extra: list[str], ledger: str | Path | None = None) -> int:
    """Run one reproduction's cells through Snakemake (a config file of just its grid
    under results/reproductions/, the cells' eval files as targets), leaving out those
    whose finished rows ``ledger`` keeps (None: run them all)."""
    import yaml

    from prunelib.config import contracts
    from prunelib.report.ledger import not_kept

    rep = get(name)
    s = settings_of(rep)
    targets = not_kept([(p, contracts.eval_contract(s, rep.arch, rep.dataset, "dense" if r == 1 else rep.method,
                                                     r, seed, v).cell_hash)
                        for r, seed, v, p in rep.variant_cells()], ledger, f"prunelib reproductions {name}")
    if not targets:
        return 0
    cfg = Path(paths.RESULTS) / "reproductions" / f"{rep.name}.yaml"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text(yaml.safe_dump(config_of(rep), sort_keys=False))
    cmd = [sys.executable, "-m", "snakemake", "--cores", str(cores), "--rerun-incomplete", "--configfile",
           str(cfg), *extra, "--", *targets]
    print("prunelib reproductions:", " ".join(cmd), flush=True)
    return subprocess.call(cmd)


def page_paths(runs=None, with_study: bool = True) -> list[str]:
    """Every artifact path (relative to a root) that docs/reproductions.md reads: the
    cells of ``runs`` (default: every reproduction) and, ``with_study``, the study's."""
    from prunelib.report import study

    out = []
    for rep in RUNS if runs is None else runs:
        for ratio, seed, variant, path in rep.variant_cells():
            out.append(str(path))
            method = "dense" if float(ratio) == 1 else rep.method
            out += [paths.benchmark(stage, ident) for stage, ident in seed_jobs(rep, method, ratio, seed, variant)]
    s = study.settings() if with_study else None
    for role in ("eval", "mask_table") if with_study else ():
        out += [str(p) for (method, _r, _seed), p in study._cell_paths(s, role)
                if not (role == "mask_table" and method == "dense")]
    return sorted(set(out))



# --------------------------------------------------------------------------- papers

def paper_text_of(pv: dict) -> str:
    """The paper column: the value as the paper prints it (its std to the same decimals),
    or why there is none."""
    value, std = pv.get("value"), pv.get("std")
    if value is None:
        return "— (" + pv.get("missing", "no value") + ")"
    digits = _decimals(value)
    return f"{value:.{digits}f}" + ("" if std is None else f" ± {std:.{digits}f}")


def papers_for(rep: Reproduction, values: list[dict]) -> list[dict]:
    """The paper values compared with ``rep``'s cells (same paper, network, dataset)."""
    from prunelib.catalogue.registry import base_method

    if rep.tables:  # named tables: an init arm is compared with its method's values
        methods = (base_method(rep.method), *(("dense",) if rep.dense_seeds else ()))
    else:
        methods = (rep.method, "dense")
    return [v for v in values if v["paper"] == rep.paper_key and v["network"] == rep.arch
            and v["dataset"] == rep.dataset and v["method"] in methods
            and (not rep.tables or v["where"] in rep.tables)]


# --------------------------------------------------------------------------- verdict

VERDICT_RULE = """\
**Verdict rule.** The paper's value is compared with ours under the paper's metric where
we record it (else with our final error), over our n seeds (mean m, sample std s):
* the paper gives **mean ± std over N runs**: *reproduced* when |m − paper| ≤ 2 SE, with
  SE = √(s²/n + s_p²/N) the standard error of the difference of the two means;
* the paper gives **one number**: *reproduced* when it lies inside our seeds' range
  [min, max], the paper's number read as the interval its rounding allows (1.6 → 1.55 to
  1.65);
* otherwise *not reproduced*, saying whether ours is higher or lower;
* **n < 3**: *no verdict* (too few seeds to judge a spread), Δ still shown; **n = 0**:
  *not run*; no paper value: *no paper value* (the reason is in the paper column)."""


def _decimals(value: float) -> int:
    text = repr(float(value))
    return len(text.split(".")[1].rstrip("0")) if "." in text else 0


def verdict(paper: float | None, ours: list[float], paper_std: float | None = None,
            paper_runs: int | None = None) -> str:
    """The verdict of one row by ``VERDICT_RULE`` (``ours``: the per-seed values, in
    the paper's unit)."""
    ours = [v for v in ours if v is not None and not math.isnan(v)]
    n = len(ours)
    if paper is None:
        return "no paper value"
    if n == 0:
        return "not run"
    if n < 3:
        return f"no verdict (n = {n} < 3)"
    m = sum(ours) / n
    s = math.sqrt(sum((v - m) ** 2 for v in ours) / (n - 1))
    side = "ours higher" if m > paper else "ours lower"
    if paper_std is not None:
        runs = paper_runs or 1
        se = math.sqrt(s * s / n + paper_std * paper_std / runs)
        ok = abs(m - paper) <= 2 * se
        return (f"reproduced (|Δ| ≤ 2 SE = {2 * se:.2f})" if ok
                else f"not reproduced ({side}; |Δ| > 2 SE = {2 * se:.2f})")
    half = 0.5 * 10 ** -_decimals(paper)
    lo, hi = min(ours), max(ours)
    if paper + half >= lo and paper - half <= hi:
        return f"reproduced (inside our range {lo:.2f}–{hi:.2f})"
    return f"not reproduced ({side}: our range {lo:.2f}–{hi:.2f})"


# --------------------------------------------------------------------------- rows

def _pct_errors(values) -> list[float]:
    return [100 * (1 - v) for v in values if v is not None and not math.isnan(v)]


def _error(values) -> str:
    """1 - accuracy in %: mean ± sample std (n), from report_stats (missing values skipped)."""
    from prunelib.report.stats import mean_std_n

    mean, std, n = mean_std_n([None if v is None or math.isnan(v) else 1 - v for v in values])
    if n == 0:
        return "—"
    return f"{mean:.2f} (n = 1)" if n == 1 else f"{mean:.2f} ± {std:.2f} (n = {n})"


def seed_jobs(rep: Reproduction, method: str, ratio, seed: int, variant: str = "none") -> list[tuple[str, str]]:
    """(stage, ident) of the jobs one seed of a row costs, as their Snakemake benchmarks
    name them: the method's scores (an IMP chain: its rounds 0..j, j the round whose mask
    has density 1/r) and the cell's mask, train and eval.  A variant row's cost is its own
    mask, train and eval: the chain it shares is the ``none`` row's."""
    from prunelib import config as plconfig
    from prunelib.config.grid import imp_round_of

    fields = dict(dataset=rep.dataset, arch=rep.arch, seed=seed, method=method)
    ident = paths.CELL_ID.format(**fields, ratio=format_ratio(ratio), variant=paths.variant_suffix(variant))
    jobs = []
    if variant == "none" and method in plconfig.IMP_METHODS:
        s = settings_of(rep)
        last = imp_round_of(s.grid.ratios, s.iterative.round_factor, float(ratio))
        jobs += [("imp", paths.imp_round_id(j).format(**fields)) for j in range(last + 1)]
    elif variant == "none":
        jobs.append(("score", paths.CHAIN_ID.format(**fields)))
    return jobs + [(stage, ident) for stage in ("mask", "train", "eval")]


def seconds_per_seed(root, rep: Reproduction, method: str, ratio, seeds, variant: str = "none") -> float | None:
    """Mean wall seconds of one seed's jobs (``seed_jobs``), from their Snakemake
    benchmarks under ``root`` (a folder or a ``ledger.Cells``; None when there are none)."""
    from prunelib.report.ledger import cells_of

    cells = cells_of(root)
    total = []
    for seed in seeds:
        evaluated = paths.cell_files(dataset=rep.dataset, arch=rep.arch, seed=seed, method=method,
                                     ratio=format_ratio(ratio), variant=variant)["eval"]
        source = cells.source.get(str(evaluated))  # the time of the run whose row is shown
        secs, found = 0.0, False
        for stage, name in seed_jobs(rep, method, ratio, seed, variant):
            text = cells.text(paths.benchmark(stage, name), source)
            if text is not None:
                lines = text.splitlines()
                if len(lines) > 1:
                    secs += float(lines[1].split("\t")[0])
                    found = found or stage in ("train", "imp")
        if found:
            total.append(secs)
    return sum(total) / len(total) if total else None


def _seeds_word(seeds) -> str:
    return f"seed {seeds[0]}" if len(seeds) == 1 else "seeds " + ", ".join(map(str, seeds))


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 5400 else f"{seconds / 60:.1f} min"


def _cells_of(root, rep: Reproduction, s, ratio: float, variant: str):
    """(found rows, missing seeds, failed rows, stale seeds) of one (ratio, variant)."""
    from prunelib.config import contracts
    from prunelib.report.ledger import cells_of

    cells = cells_of(root)
    found, missing, failed, stale = [], [], [], []
    for r, seed, v, path in rep.variant_cells():
        if r != float(ratio) or v != variant:
            continue
        method = "dense" if r == 1 else rep.method
        expected = contracts.eval_contract(s, rep.arch, rep.dataset, method, r, seed, variant).cell_hash
        got = cells.rows(path, lambda rows: rows[0]["settings_hash"] == expected)  # verified on read
        if got is None:
            missing.append(seed)
            continue
        row = got[0]
        if row["settings_hash"] != expected:  # made with other settings than the preset's now
            stale.append(seed)
            continue
        (found if row["status"] == "ok" else failed).append(row)
    return found, missing, failed, stale


COLUMNS = ("network", "method", "r (sparsity)", "paper: where · metric · runs", "paper",
           "ours: final error %", "ours, paper's metric", "Δ", "verdict", "seeds (time per seed)", "command")


def rows(root=".", runs=RUNS, values_path: str | Path = PAPER_VALUES) -> list[dict]:
    """One row per (reproduction, ratio, variant, paper value), from the eval rows under
    ``root`` (a folder, or a ``ledger.Cells``: the folder, then the ledger)."""
    from prunelib.catalogue.registry import base_method
    from prunelib.report.ledger import cells_of

    root = cells_of(root)
    book = paper_values(values_path)
    out = []
    for rep in runs:
        s = settings_of(rep)
        has_ckpt = bool(s.eval.every_steps)
        papers = papers_for(rep, book["values"])
        ratios = list(rep.ratios_shown())
        ratios += sorted({v["ratio"] for v in papers} - {float(r) for r in ratios} - set(ratios))
        for ratio in ratios:
            run_here = ratio in rep.ratios_shown()
            method = "dense" if float(ratio) == 1 else rep.method
            for variant in (("none",) if method == "dense" else rep.variants):
                found, missing, failed, stale = (_cells_of(root, rep, s, ratio, variant) if run_here
                                                 else ([], [], [], []))
                ours = [x["top1"] for x in found]
                ours_pm = [x.get("best_test_top1") for x in found] if has_ckpt else []
                compare = _pct_errors(ours_pm) if has_ckpt else _pct_errors(ours)
                matching = [v for v in papers if float(v["ratio"]) == float(ratio)
                            and v["method"] in (method, base_method(method))  # (papers_for chose an arm's)
                            and variant == "none"] or [None]
                seeds = sorted(x["seed"] for x in found)
                timed = seeds or sorted(x["seed"] for x in failed)  # a failed seed's time is its own
                secs = seconds_per_seed(root, rep, method, ratio, timed, variant) if timed else None
                seed_text = (f"{', '.join(map(str, seeds))} (n = {len(seeds)})" if seeds else "none")
                reasons: dict[str, list[int]] = {}  # one note per reason (a protocol fails alike)
                for x in failed:
                    reasons.setdefault(x["reason"], []).append(x["seed"])
                notes = ([f"{_seeds_word(missing)} not run"] if missing else [])
                notes += ([f"{_seeds_word(stale)} stale (other settings than the preset's)"] if stale else [])
                notes += (
                          [f"{_seeds_word(ks)} failed: {why}" for why, ks in reasons.items()])
                if notes:
                    seed_text += "; " + "; ".join(notes)
                if run_here and (notes or secs is not None):
                    until = "" if seeds else ", until it failed"
                    seed_text += (f"; one seed ≈ {_duration(secs)} (benchmarks{until})" if secs is not None
                                  else f"; one seed: {rep.cost_estimate}" if rep.cost_estimate else "")
                for pv in matching:
                    if pv is None:
                        paper_where, paper_text = "— (none in paper_values.yaml)", "—"
                        value = std = runs_ = None
                    else:
                        runs_ = pv.get("runs")
                        paper_where = (f"{pv['paper']} {pv['where']} · {pv['metric']} · "
                                       f"{'runs not stated' if runs_ is None else f'{runs_} runs'}")
                        value, std = pv.get("value"), pv.get("std")
                        paper_text = paper_text_of(pv)
                    if not run_here and pv is not None and pv.get("protocol"):
                        ours_follows = rep.corresponds.split(" (")[0].split(",")[0] if rep.corresponds else "the preset"
                        v_text = f"not run: {pv['protocol']}; ours follows {ours_follows}"
                    elif not run_here:
                        v_text = "not run (not among this reproduction's ratios)"
                    elif failed and not found:
                        v_text = f"no verdict: {_seeds_word(sorted(x['seed'] for x in failed))} failed"
                    else:
                        v_text = verdict(value, compare, std, runs_)
                    delta = "—"
                    if value is not None and compare:
                        delta = f"{sum(compare) / len(compare) - value:+.2f}"
                    out.append({
                        "network": rep.arch if rep.dataset == "mnist" else f"{rep.arch} ({rep.dataset})",
                        "method": method + ("" if variant == "none" else f" [{variant}]"),
                        "r (sparsity)": f"{format_ratio(ratio)} ({100 * (1 - 1 / float(ratio)):g}%)",
                        "paper: where · metric · runs": paper_where, "paper": paper_text,
                        "ours: final error %": _error(ours) if run_here else "—",
                        "ours, paper's metric": (_error(ours_pm) if has_ckpt else "— (no checkpoints kept)")
                        if run_here else "—",
                        "Δ": delta, "verdict": v_text, "seeds (time per seed)": seed_text if run_here else "—",
                        "command": f"`{rep.command()}`" if run_here else "—",
                        "_rep": rep.name,
                    })
    return out


#: What a variant of a mask is expected to do, where a paper says so (the other variants'
#: rows are measured and shown without a claim).
VARIANT_CLAIMS = {
    "reinit": ("Frankle & Carbin (ICLR 2019): a winning ticket randomly reinitialised learns slower and "
               "reaches lower test accuracy", "higher error"),
}


def variant_checks(root, runs=RUNS) -> list[str]:
    """The section on the sanity-check variants of a reproduction's mask: per variant the
    paired difference of final test error to the mask itself (variant "none") over the
    shared seeds, mean ± standard error, classed *higher error* / *lower error* when the
    mean clears 2 SE with n ≥ 3, else *tie* (the study's rule for finding (i))."""
    from prunelib.report.ledger import cells_of
    from prunelib.report.study import _mean_se, beyond_2se

    root = cells_of(root)
    lines = []
    for rep in runs:
        if len(rep.variants) < 2:
            continue
        s = settings_of(rep)
        for ratio in rep.ratios:
            base = {x["seed"]: x["top1"] for x in _cells_of(root, rep, s, ratio, "none")[0]}
            table = []
            for variant in rep.variants[1:]:
                d = [100 * (base[x["seed"]] - x["top1"]) for x in _cells_of(root, rep, s, ratio, variant)[0]
                     if x["seed"] in base]
                m, se, n = _mean_se(d)
                if n == 0:
                    table.append({"variant": variant, "n": 0, "d": "—", "class": "not run", "claim": "—"})
                    continue
                cls = ({1: "higher error", -1: "lower error", 0: "tie"}[beyond_2se(m, se)] if n >= 3
                       else f"n = {n} < 3: no class")
                claim, expected = VARIANT_CLAIMS.get(variant, (None, None))
                said = "—" if claim is None else (f"{claim}: " + ("agrees" if cls == expected else "disagrees")
                                                   if n >= 3 else f"{claim}: too few seeds")
                table.append({"variant": variant, "n": n, "d": f"{m:+.2f} ± {se:.2f}", "class": cls,
                              "claim": said})
            lines += [f"**{rep.name}, {rep.method} at r = {format_ratio(ratio)}** (error of the variant − error "
                      "of the mask itself, points, paired by seed):", "",
                      *_table(("variant", "n", "d", "class", "claim"), table), ""]
    if not lines:
        return []
    return ["## The sanity-check variants of a mask, paired by seed", "",
            "Each variant keeps the run's seed and protocol and changes one thing of the final mask or its "
            "weights (docs/methods.md, Sanity-check variants).  *higher error* when the mean difference "
            "exceeds 2 standard errors with n ≥ 3, *lower error* likewise, else *tie*.", "", *lines]


def paired_checks(root, runs=RUNS) -> list[str]:
    """The section on init arms: per ratio, the paired difference of error of a
    reproduction to the one it is ``paired_with`` (same protocol but the init, same
    seeds), final and under the paper's metric, mean ± standard error, classed as
    ``variant_checks`` classes."""
    from prunelib.report.ledger import cells_of
    from prunelib.report.study import _mean_se, beyond_2se

    root = cells_of(root)
    lines = []
    for rep in runs:
        if not rep.paired_with:
            continue
        other = next((r for r in runs if r.name == rep.paired_with), None) or get(rep.paired_with)
        s, so = settings_of(rep), settings_of(other)
        if dataclasses.replace(s, init=so.init, grid=so.grid) != so:
            raise ValueError(f"reproduction {rep.name}: paired_with {other.name!r} must differ from it in "
                             f"init only; allowed: a reproduction of the same protocol")
        table = []
        for ratio in rep.ratios:
            mine = {x["seed"]: x for x in _cells_of(root, rep, s, ratio, "none")[0]}
            theirs = {x["seed"]: x for x in _cells_of(root, other, so, ratio, "none")[0]}
            for label, key in (("final", "top1"), ("paper's metric", "best_test_top1")):
                d = [100 * (theirs[k][key] - mine[k][key]) for k in sorted(set(mine) & set(theirs))
                     if mine[k].get(key) is not None and theirs[k].get(key) is not None]
                m, se, n = _mean_se(d)
                cls = ("not run" if n == 0 else f"n = {n} < 3: no class" if n < 3
                       else {1: "higher error", -1: "lower error", 0: "tie"}[beyond_2se(m, se)])
                table.append({"r": format_ratio(ratio), "error": label, "n": n,
                              "d": "—" if n == 0 else f"{m:+.2f}" if n == 1 else f"{m:+.2f} ± {se:.2f}",
                              "class": cls})
        lines += [f"**{rep.name}** ({rep.method}) − **{other.name}** ({other.method}), error in points, "
                  "paired by seed:", "", *_table(("r", "error", "n", "d", "class"), table), ""]
    if not lines:
        return []
    return ["## Init arms, paired by seed", "",
            "An arm keeps a reproduction's protocol and seeds and changes its initialisation only.  *higher "
            "error* when the mean difference exceeds 2 standard errors with n ≥ 3, *lower error* likewise, "
            "else *tie*.", "", *lines]


HEADER = """# Reproductions

Generated by `prunelib reproductions write` (add `--root DIR` to read `DIR/results/`) from
the eval rows under `results/`, the kept rows of cells finished earlier (the ledger
`docs/reproductions/ledger.parquet`, for the cells `results/` lacks) and the papers'
numbers in `prunelib/report/paper_values.yaml` (each quoted with its source); do not edit
by hand.  After a run, `prunelib reproductions keep` adds its finished cells to the ledger
(commit it): seeds add up across machines and sessions instead of being run again.
Each row is one cell of ours (network, method, compression ratio r, sparsity 1 − 1/r)
beside one value of a paper.  `prunelib reproductions run <name>` runs exactly the cells
of one reproduction through Snakemake (finished seeds are kept; missing ones are run):
it is also the command to add the seeds a row lacks.

* **ours: final error** is our headline: 1 − test top-1 of the final weights, mean ±
  sample std over the n seeds listed.
* **ours, paper's metric** is ours measured as the paper's code reports (SNIP's
  `snip/test.py`: 1 − the best test accuracy over the last checkpoints kept).  It is
  selected on the test set, so it is optimistic; shown beside ours, never instead.
  "—" where the preset keeps no checkpoints (then the verdict uses the final error).
* **Δ** = ours (paper's metric, else final) − paper, in points of error.
* **seeds (time per seed)**: the seeds behind the row, those missing, and the wall time
  one seed's jobs took (their Snakemake benchmarks): score (or an IMP chain's rounds) +
  mask + train + eval; a variant row counts its own mask, train and eval only.

"""


def _table(cols, table) -> list[str]:
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in table:
        lines.append("| " + " | ".join(str(row[c]).replace("|", "\\|") for c in cols) + " |")
    return lines


def protocol_groups(runs=RUNS) -> dict[tuple, list[Reproduction]]:
    """The runs grouped by what a reader must know to judge them (paper, preset, resolved
    protocol, what it corresponds to), in the runs' order: runs that differ only in network
    or dataset share one entry instead of repeating it word for word."""
    groups: dict[tuple, list[Reproduction]] = {}
    for rep in runs:
        groups.setdefault((rep.paper, rep.preset, protocol(rep), rep.corresponds), []).append(rep)
    return groups


def render(table: list[dict], runs=RUNS, study_text: str = "", provenance: str = "",
           checks: list[str] = ()) -> str:
    read = f"**Read:** {provenance}.\n\n" if provenance else ""
    lines = [HEADER + read + VERDICT_RULE, "", *_table(COLUMNS, table), "", "## Protocols", ""]
    for (paper, preset, proto, corresponds), reps in protocol_groups(runs).items():
        lines.append(f"* {', '.join(f'**{rep.name}**' for rep in reps)} — {paper}, preset `{preset}`: {proto}."
                     + (f" Corresponds to {corresponds}." if corresponds else "")
                     + " Run: " + ", ".join(f"`{rep.command()}`" for rep in reps) + "."
                     + "".join(f" **{rep.name}**: {rep.note}." for rep in reps if rep.note))
    lines += ["", *checks] if checks else []
    text = "\n".join(lines) + "\n"
    return text + ("\n" + study_text if study_text else "")


def write(root: str | Path = ".", out: str | Path = DOC, runs=RUNS, study: bool = True,
          ledger: str | Path | None = None) -> str:
    """Write the page: the reproduction table, then (``study``) the study section with
    its figures beside ``out``.  Rows are read from ``root``/results and, where a cell is
    not there, from ``ledger`` (the kept rows, ``prunelib reproductions keep``; None: the
    disk only)."""
    from prunelib.foundations.artifacts import write_text
    from prunelib.report.ledger import Cells

    cells = Cells(root, ledger)
    table = rows(cells, runs)
    study_text = ""
    if study:
        from prunelib.report import study as study_mod

        study_text = study_mod.section(cells, Path(out).parent)
    text = render(table, runs, study_text, cells.provenance(),
                  variant_checks(cells, runs) + paired_checks(cells, runs))
    write_text(text, Path(out))
    return text
