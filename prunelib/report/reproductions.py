"""The reproduction table, ``docs/reproductions.md``: made from results on disk, never typed.

Each ``Reproduction`` names a preset and the cells of it that were run (network,
method, ratios, seeds).  ``prunelib reproductions run NAME`` runs exactly those cells
through Snakemake (the preset's settings, a grid of just those cells); ``prunelib
reproductions write`` reads their eval rows (verified against their checksums) and
writes the table: our headline error (1 - top-1 of the final weights, mean ± sample
std over the seeds that finished), the best-of-checkpoints error the paper's code
reports where the preset keeps checkpoints (optimistic: selected on the test set), the
protocol as the resolved preset states it, and the command.  A cell that was not run
(or failed) is shown as such; nothing is filled in by hand.
"""

from __future__ import annotations

import math
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from prunelib.foundations import paths
from prunelib.config.settings import format_ratio

DOC = "docs/reproductions.md"


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
    #: What the paper is, for the protocol column.
    paper: str = ""
    #: Settings over the preset's (none for the runs in the table; tests shorten runs).
    overrides: tuple = ()

    def grid(self) -> dict:
        """The preset's grid narrowed to these cells (r = 1 is the dense control)."""
        return {"archs": [self.arch], "datasets": [self.dataset], "methods": [self.method],
                "ratios": sorted({1, *self.ratios}) if self.dense_seeds else list(self.ratios),
                "seeds": sorted({*self.seeds, *self.dense_seeds}), "variants": ["none"], "pairs": None}

    def cells(self) -> list[tuple[float, int, str]]:
        """(ratio, seed, eval.parquet path) of every cell: the dense control's, then the method's."""
        out = []
        for r, method, seeds in [(1, "dense", self.dense_seeds)] + [(r, self.method, self.seeds) for r in self.ratios]:
            for seed in seeds:
                files = paths.cell_files(dataset=self.dataset, arch=self.arch, seed=seed, method=method,
                                         ratio=format_ratio(r))
                out.append((float(r), int(seed), files["eval"]))
        return out

    def ratios_shown(self) -> list:
        return ([1] if self.dense_seeds else []) + list(self.ratios)

    def command(self) -> str:
        return f"prunelib reproductions run {self.name}"


#: The runs behind docs/reproductions.md.  Seeds: as many as the machine allowed (the
#: LeNet-5-Caffe runs take about an hour each on one CPU core).
RUNS = (
    Reproduction("snip_lenet300", "snip", "lenet300", "snip", (20, 50), (0, 1, 2), dense_seeds=(0,),
                 paper="SNIP (Lee et al., ICLR 2019)"),
    Reproduction("snip_lenet5_caffe", "snip", "lenet5_caffe", "snip", (50, 100), (0,),
                 paper="SNIP (Lee et al., ICLR 2019)"),
    Reproduction("lth_mnist", "lth_mnist", "mlp400x3", "lth", (25,), (0,), dense_seeds=(0,),
                 paper="Lottery ticket (Frankle & Carbin, ICLR 2019)"),
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
    """The protocol choices as the resolved preset states them (so the table cannot drift
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


def run(name: str, cores: int, extra: list[str]) -> int:
    """Run one reproduction's cells through Snakemake (a config file of just its grid
    under results/reproductions/, the cells' eval files as targets)."""
    import yaml

    rep = get(name)
    cfg = Path(paths.RESULTS) / "reproductions" / f"{rep.name}.yaml"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text(yaml.safe_dump(config_of(rep), sort_keys=False))
    targets = [p for _, _, p in rep.cells()]
    cmd = [sys.executable, "-m", "snakemake", "--cores", str(cores), "--rerun-incomplete", "--configfile",
           str(cfg), *extra, "--", *targets]
    print("prunelib reproductions:", " ".join(cmd), flush=True)
    return subprocess.call(cmd)


def _error(values) -> str:
    """1 - accuracy in %: mean ± sample std (n), from report_stats (missing values skipped)."""
    from prunelib.report.stats import mean_std_n

    mean, std, n = mean_std_n([None if v is None or math.isnan(v) else 1 - v for v in values])
    if n == 0:
        return "—"
    return f"{mean:.2f} (n = 1)" if n == 1 else f"{mean:.2f} ± {std:.2f} (n = {n})"


def rows(root: str | Path = ".", runs=RUNS) -> list[dict]:
    """One table row per (reproduction, ratio), from the cells' eval rows on disk."""
    from prunelib.foundations.artifacts import read_parquet_rows
    from prunelib.config import contracts

    out = []
    for rep in runs:
        proto = protocol(rep)
        s = settings_of(rep)
        for ratio in rep.ratios_shown():
            found, missing, failed, stale = [], [], [], []
            for r, seed, path in rep.cells():
                if r != float(ratio):
                    continue
                full = Path(root) / path
                if not full.exists():
                    missing.append(seed)
                    continue
                row = read_parquet_rows(full)[0]  # verified against its checksum
                method = "dense" if r == 1 else rep.method
                expected = contracts.eval_contract(s, rep.arch, rep.dataset, method, r, seed).cell_hash
                if row["settings_hash"] != expected:  # made with other settings than the preset's now
                    stale.append(seed)
                    continue
                (found if row["status"] == "ok" else failed).append(row)
            kept = sorted({(int(x["n_kept"]), int(x["n_prunable"])) for x in found})
            out.append({
                "preset": rep.preset, "network": rep.arch,
                "method": "dense" if float(ratio) == 1 else rep.method,
                "r": format_ratio(ratio), "sparsity": f"{100 * (1 - 1 / float(ratio)):g}%",
                "seeds": ", ".join(str(x["seed"]) for x in sorted(found, key=lambda x: x["seed"])) or "—",
                "final error % (ours)": _error([x["top1"] for x in found]),
                "best-of-checkpoints error % (paper's metric)": _error([x.get("best_test_top1") for x in found]),
                "kept / prunable": ", ".join(f"{k:,} / {n:,}" for k, n in kept) or "—",
                "not run / failed": ", ".join([f"seed {k} not run" for k in missing]
                                              + [f"seed {k} stale (other settings than the preset's)" for k in stale]
                                              + [f"seed {x['seed']} failed: {x['reason']}" for x in failed]) or "",
                "protocol": f"{rep.paper}: {proto}", "command": f"`{rep.command()}`",
            })
    return out


HEADER = """# Reproductions

Generated by `prunelib reproductions write` from the eval rows under `results/`; do not
edit by hand.  Each row is one preset at one compression ratio r (sparsity 1 - 1/r),
run with `prunelib reproductions run <name>` (the command column), which runs exactly
those cells of the preset through Snakemake.

* **final error** is our headline: 1 - test top-1 of the final weights, mean ± sample
  std over the seeds listed (n).
* **best-of-checkpoints error** is the metric the paper's code reports (SNIP's
  `snip/test.py`: 1 - the maximum test accuracy over the last checkpoints kept).  It is
  selected on the test set, so it is optimistic; shown beside ours, never instead.
  "—" where the preset keeps no checkpoints.
* **protocol** is read from the resolved preset (`workflow/presets/<preset>.yaml`, whose
  comments say which choices follow the authors' code, which the paper, and which we
  made).
"""


def render(table: list[dict]) -> str:
    cols = list(table[0]) if table else []
    lines = [HEADER, "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in table:
        lines.append("| " + " | ".join(str(row[c]).replace("|", "\\|") for c in cols) + " |")
    return "\n".join(lines) + "\n"


def write(root: str | Path = ".", out: str | Path = DOC, runs=RUNS) -> str:
    from prunelib.foundations.artifacts import write_text

    text = render(rows(root, runs))
    write_text(text, Path(out))
    return text
