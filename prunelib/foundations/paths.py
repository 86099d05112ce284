"""Every file the workflow writes, named once (as OpenLTH's ``foundations/paths.py``).

The templates use Snakemake's wildcard syntax (``{dataset}``, ``{arch}``, ...), so the
rules use them as they are and Python fills them with ``str.format``.  ``audit`` and
``aggregate`` find files through the same names.  No torch import.
"""

from __future__ import annotations

from pathlib import Path

RESULTS = "results"
REPORTS = "reports"

#: A dataset prepared once as a tensor file (``data`` rule).
DATA = "results/data/{dataset}.pt"
#: One (dataset, network, seed): its init artifacts and every method under it.
SEED_DIR = "results/{dataset}/{arch}/seed{seed}"
INIT = SEED_DIR + "/init_{scheme}.pt"
INIT_TABLE = SEED_DIR + "/init_{scheme}.parquet"
#: A foresight method's scores (independent of the ratio).
SCORES = SEED_DIR + "/{method}/scores.pt"
#: A cell's folder: r16 for the method itself, r16-<variant> for a sanity-check variant
#: (``{variant}`` is the folder suffix: empty or ``-<name>``).
CELL = SEED_DIR + "/{method}/r{ratio}{variant}"
CELL_FILES = {"mask": "mask.pt", "mask_table": "mask.parquet", "final": "final.pt",
              "train_log": "train_log.parquet", "eval": "eval.parquet"}
MASK, MASK_TABLE, FINAL, TRAIN_LOG, EVAL = (f"{CELL}/{name}" for name in CELL_FILES.values())
#: The weights a method that updates the weights it keeps (``Pruning.updates_weights``:
#: OBS, WoodFisher, L-OBS) left after pruning: written by the mask stage beside mask.pt,
#: the weights the cell's training starts from.  Only cells of such methods have it, so
#: it is not one of ``CELL_FILES``.
UPDATED_FILE = "updated.pt"
UPDATED = f"{CELL}/{UPDATED_FILE}"
#: One round of an iterative-magnitude-pruning chain (round 0 = the dense training);
#: ``rewind`` (the weights at the rewind step) is written by round 0 only.
IMP_ROUND = SEED_DIR + "/{method}/imp/round{round}"
IMP_FILES = {"weights": "weights.pt", "mask": "mask.pt", "mask_table": "mask.parquet",
             "train_log": "train_log.parquet", "rewind": "rewind.pt"}
IMP_WEIGHTS, IMP_MASK, IMP_MASK_TABLE, IMP_TRAIN_LOG, IMP_REWIND = (f"{IMP_ROUND}/{name}"
                                                                    for name in IMP_FILES.values())
#: The roles that only round 0 writes.
IMP_ROUND0_ONLY = ("rewind",)
IMP_ROUNDS_TABLE = SEED_DIR + "/{method}/imp/rounds.parquet"
#: Every eval row of the grid in one table (``aggregate`` rule), and its log.
ALL_ROWS = "results/all.parquet"
#: The resolved config of a run, beside its report (the HTML report's configuration page).
REPORT_CONFIG = "reports/config.yaml"
AGGREGATE_LOG = "results/logs/aggregate.log"
#: Every cell's measured speed-ups (``measure`` rule: timed alone, after the grid), merged
#: into ``ALL_ROWS`` by ``aggregate``; its log and benchmark.
SPEEDUPS = "results/speedups.parquet"
MEASURE_LOG = "results/logs/measure.log"
MEASURE_BENCHMARK = "results/benchmarks/measure.tsv"
#: The rows of finished reproduction cells, tracked in git so that seeds add up across
#: sessions (prunelib/report/ledger.py; ``prunelib reproductions keep``).
REPRODUCTION_LEDGER = "docs/reproductions/ledger.parquet"
#: The pre-imported worker's log (prunelib/cli/worker.py).
WORKER_LOG = "results/logs/worker.log"

#: A cell as it appears in log and benchmark paths and progress labels.
CELL_ID = "{dataset}/{arch}/seed{seed}/{method}/r{ratio}{variant}"
#: An init artifact, and a method under one seed (its scores; its IMP chain), likewise.
INIT_ID = "{dataset}/{arch}/seed{seed}/init_{scheme}"
CHAIN_ID = "{dataset}/{arch}/seed{seed}/{method}"
SCORES_ID = CHAIN_ID
IMP_ROUNDS_ID = CHAIN_ID + "/rounds"


def report(name: str) -> str:
    """A file under reports/ (``name``: relative, as prunelib/report/layout.py names them)."""
    return f"{REPORTS}/{name}"


def imp_round_id(round_="{round}") -> str:
    """An IMP round in log and benchmark paths (``round_``: a number or the wildcard)."""
    return f"{CHAIN_ID}/round{round_}"


def log(stage: str, ident: str) -> str:
    """A job's log: ``results/logs/<stage>/<ident>.log``."""
    return f"results/logs/{stage}/{ident}.log"


def benchmark(stage: str, ident: str) -> str:
    """A job's Snakemake benchmark: ``results/benchmarks/<stage>/<ident>.tsv``."""
    return f"results/benchmarks/{stage}/{ident}.tsv"


def variant_suffix(variant: str) -> str:
    """How a variant appears in a cell's folder name: ``r16`` (none), ``r16-invert``."""
    return "" if variant == "none" else f"-{variant}"


def variant_from_suffix(suffix: str) -> str:
    """The inverse of ``variant_suffix``: ``""`` -> ``none``, ``-invert`` -> ``invert``."""
    return suffix[1:] if suffix else "none"


#: The rule that writes each file of a cell (``CELL_FILES`` roles).
CELL_RULES = {"mask": "mask", "mask_table": "mask", "final": "train", "train_log": "train", "eval": "eval"}


def producing_rule(path) -> str:
    """The Snakemake rule that writes ``path`` (workflow/rules), from its name and folder
    ('' for a file the workflow does not write)."""
    p = Path(path)
    name, parent = p.name, (p.parts[-2] if len(p.parts) >= 2 else "")
    if parent.startswith("round") and len(p.parts) >= 3 and p.parts[-3] == "imp":
        return "imp_dense" if parent == "round0" else "imp_round"
    if parent == Path(DATA).parent.name and name.endswith(".pt"):
        return "data"
    if name.startswith("init_"):
        return "init"
    by_name = {CELL_FILES[role]: rule for role, rule in CELL_RULES.items()}
    by_name[UPDATED_FILE] = "mask_updated"
    by_name.update({Path(SCORES).name: "score", Path(IMP_ROUNDS_TABLE).name: "imp_rounds",
                    Path(ALL_ROWS).name: "aggregate", Path(SPEEDUPS).name: "measure"})
    return by_name.get(name, "")


def parse_cell(path) -> dict | None:
    """The wildcards of a cell folder ``.../<dataset>/<arch>/seed<s>/<method>/r<ratio>[-<variant>]``
    (its last five parts), or None if ``path`` is not shaped like one."""
    parts = Path(path).parts
    if len(parts) < 5:
        return None
    dataset, arch, seed, method, cell = parts[-5:]
    if not (seed.startswith("seed") and seed[4:].isdigit() and cell.startswith("r")):
        return None
    ratio, _, variant = cell[1:].partition("-")
    return {"dataset": dataset, "arch": arch, "seed": int(seed[4:]), "method": method, "ratio": ratio,
            "variant": variant or "none"}


def cell_files(**wildcards) -> dict[str, str]:
    """A cell's files by role, for a cell given by its wildcards (``variant`` as a name)."""
    folder = CELL.format(**{**wildcards, "variant": variant_suffix(wildcards.get("variant", "none"))})
    return {role: f"{folder}/{name}" for role, name in CELL_FILES.items()}


def imp_round_files(round_dir) -> dict[str, Path]:
    """The files of one IMP round folder, by role."""
    return {role: Path(round_dir) / name for role, name in IMP_FILES.items()}


def imp_roles(round_: int) -> tuple[str, ...]:
    """The roles (``IMP_FILES``) that round ``round_`` of a chain writes."""
    return tuple(r for r in IMP_FILES if round_ == 0 or r not in IMP_ROUND0_ONLY)
