# Shared helpers: the resolved settings, paths of every artifact, and the stage command.
import json
import os
from pathlib import Path
import shlex
import sys

sys.path.insert(0, workflow.basedir)  # prunelib is importable without installation
from prunelib import config as plconfig
from prunelib.config import contracts as plcontracts
from prunelib.foundations import paths as plpaths
from prunelib.catalogue import registry as plregistry
from prunelib.cli import console as plconsole
from prunelib.cli import worker as plworker
from prunelib.cli import slurm_check as plslurm
from prunelib.foundations.errors import PrunelibError
from snakemake.exceptions import WorkflowError

try:
    RESOLVED = plconfig.resolve(config)  # (imports the plugins it names)
    SETTINGS = plconfig.to_settings(RESOLVED)
    if (
        workflow.is_main_process
    ):  # (ratios a network can take: built on the meta device, once)
        from prunelib.methods import bounds as plbounds

        plbounds.check_ratios(SETTINGS)
except PrunelibError as exc:
    sys.exit(str(exc))

CELLS = plconfig.cells(SETTINGS)


def _uses_conda():
    methods = getattr(workflow.deployment_settings, "deployment_method", ())
    return any(getattr(m, "name", str(m)).upper() == "CONDA" for m in methods)


# Every job runs `python -m prunelib ...`: under --use-conda the env's python; otherwise
# the interpreter that runs Snakemake (e.g. .venv/bin/python), even when its folder is
# not on PATH. prunelib is found from the workflow folder, installed or not.
# (Snakemake formats the prefix like a shell command, hence the doubled braces.)
_venv_path = (
    ""
    if _uses_conda()
    else f"export PATH={shlex.quote(str(Path(sys.executable).parent))}:$PATH; "
)
# Outside conda, jobs hand their stage to a pre-imported worker (prunelib/cli/worker.py),
# saving ~2 s of `import torch` per job; without a worker they run the stage themselves.
USE_WORKER = SETTINGS.worker and not _uses_conda()
WORKER_SOCKET = str(Path(".snakemake") / f"prunelib-worker-{os.getpid()}.sock")
_worker_env = (
    f"export PRUNELIB_WORKER={shlex.quote(str(Path(WORKER_SOCKET).resolve()))}; "
    if USE_WORKER
    else ""
)
# Train and IMP-round jobs checkpoint every train.checkpoint_minutes (prunelib/train/resume.py);
# passed in the environment, not as a param, so that changing it reruns no job.
_checkpoint_env = (
    f"export PRUNELIB_CHECKPOINT_MINUTES={SETTINGS.train.checkpoint_minutes:g}; "
)
# The log of a job that checkpoints on SIGTERM (train, IMP rounds): `tee` copies the
# stage's output to the log and to Snakemake's (or SLURM's) output, and must outlive the
# stage, which it would not by default: SLURM's --signal and time limit, scancel and
# Snakemake's cancel signal every process of the job, and a dead tee loses the stage's
# last line ("stopped by SIGTERM before step N; checkpoint written").
# Locally (one process group, Snakemake signals the stage itself) the plain `tee` of
# earlier versions stays: the same command, so no finished job reruns on upgrade.
TEE_LOG = (
    "(trap '' TERM USR1; exec tee {log:q})"
    if not workflow.local_exec or workflow.remote_exec
    else "tee {log:q}"
)
shell.prefix(
    f"set -euo pipefail; export PYTHONPATH={shlex.quote(workflow.basedir)}"
    f"${{{{PYTHONPATH:+:$PYTHONPATH}}}}; {_venv_path}{_worker_env}{_checkpoint_env}"
)
ENV = "../../envs/prunelib.yaml"
# Every path comes from prunelib/foundations/paths.py (the one owner of file names).
CELL = plpaths.CELL
CELL_LOG = plpaths.CELL_ID
IMP_ROUND = plpaths.IMP_ROUND


def _alternatives(names):
    return "|".join(
        sorted(names, key=len, reverse=True)
    )  # longest first: no prefix wins early


wildcard_constraints:
    dataset=_alternatives(plregistry.DATASETS),
    arch=_alternatives(plregistry.ARCHS),
    method=_alternatives([*plregistry.METHODS, *SETTINGS.grid.methods]),
    scheme=_alternatives(plregistry.INITS),
    seed=r"\d+",
    ratio=r"[0-9]+(\.[0-9]+)?",
    variant="|".join(plpaths.variant_suffix(v) for v in plregistry.VARIANTS),
    round=r"[0-9]+",


# Resources scale with the network's relative cost (its registry entry): memory in MB
# and runtime in minutes per job, for cluster schedulers. Locally nothing is limited
# unless you pass --resources. A profile's set-resources overrides them.
def _cost(w):
    return plregistry.arch(w.arch).cost


def mem_mb(w):
    return int(2000 * _cost(w))


def train_runtime(w):
    epochs = SETTINGS.train.for_dataset(w.dataset).epochs
    return int(15 * _cost(w) * epochs)


def stage_runtime(w):
    return int(10 * _cost(w))


def as_json(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def init_path(w):
    return plpaths.INIT.format(
        **dict(w.items()), scheme=SETTINGS.init.scheme_for(w.method)
    )


def variant_of(w):
    """The cell's variant name (``none`` for the method itself)."""
    return plpaths.variant_from_suffix(w.variant)


def pruning_of(w):
    """How the cell's method makes its mask (prunelib/catalogue/pruning.py): the one
    thing the rules ask about a method's kind."""
    return plregistry.method(w.method).pruning


def is_imp(w):
    return pruning_of(w).chain


def rewinds_weights(w):
    """Whether the IMP method resets survivors to a stored step (else keeps trained weights)."""
    return plconfig.imp_spec(SETTINGS, w.method).rewind_weights_to is not None


def imp_round_of(w):
    return plconfig.imp_round_of(
        SETTINGS.grid.ratios, SETTINGS.iterative.round_factor, float(w.ratio)
    )


def imp_round_dir(w, round_):
    return IMP_ROUND.format(**{**dict(w.items()), "round": round_})


def imp_round_file(w, round_, role):
    """One file of an IMP round (``paths.IMP_FILES`` names the roles)."""
    return f"{imp_round_dir(w, round_)}/{plpaths.IMP_FILES[role]}"


def scores_path(w):
    """The mask stage's ranking input: the method's scores, or for an IMP method the
    mask.pt of the chain round that lands on the cell's ratio."""
    if is_imp(w):
        return imp_round_file(w, imp_round_of(w), "mask")
    return plpaths.SCORES.format(**dict(w.items()))


def scores_arg(w):
    """The mask command's --scores option; the dense control has no scores file."""
    return f"--scores {shlex.quote(scores_path(w))}" if pruning_of(w).pruned else ""


def data_path(w):
    return plpaths.DATA.format(dataset=w.dataset)


def cell_label(w):
    return plpaths.CELL_ID.format(**dict(w.items()))


def mask_inputs(w):
    if not pruning_of(w).pruned:
        return {"init": init_path(w)}
    return {"init": init_path(w), "scores": scores_path(w)}


# Methods that update the weights they keep (Pruning.updates_weights: OBS, WoodFisher,
# L-OBS): their mask job (rule mask_updated) also reads the data and writes the updated
# weights (paths.UPDATED), which their cells train from. Other methods' rules and cells
# are unchanged.
UPDATING_METHODS = [
    m for m, e in plregistry.METHODS.items() if e.pruning.updates_weights
]


def updated_path(w):
    return plpaths.UPDATED.format(**dict(w.items()))


def mask_updated_inputs(w):
    return {**mask_inputs(w), "data": data_path(w)}


def train_inputs(w):
    """Where a cell's training starts: the init; for an IMP cell, its chain round's
    result (nothing to train) or, for a variant, the weights that round started from;
    for a method that updates the weights it keeps, its updated weights (a sanity-check
    variant, which asks about the mask alone, starts from the init)."""
    base = {"mask": plpaths.MASK.format(**dict(w.items())), "data": data_path(w)}
    if pruning_of(w).trains_from == "pruned":
        return {
            **base,
            "init": updated_path(w) if variant_of(w) == "none" else init_path(w),
        }
    if pruning_of(w).trains_from in ("init", "mask"):
        return {**base, "init": init_path(w)}
    j = imp_round_of(w)
    if variant_of(w) == "none":
        return {
            **base,
            "init": imp_round_file(w, j, "weights"),
            "reuse_log": imp_round_file(w, j, "train_log"),
        }
    if rewinds_weights(w):
        return {**base, "init": imp_round_file(w, 0, "rewind")}
    # No rewinding: the round started from round j-1's trained weights, which are zero
    # wherever an earlier round pruned; a mask-level variant starts from the dense trained
    # weights (round 0) instead, so every position it keeps has a real value.
    if variant_of(w) in plregistry.mask_variants():
        return {**base, "init": imp_round_file(w, 0, "weights")}
    return {**base, "init": imp_round_file(w, j - 1, "weights")}


def reuse_arg(w):
    if is_imp(w) and variant_of(w) == "none":
        return f"--reuse-log {shlex.quote(train_inputs(w)['reuse_log'])}"
    return ""


def eval_paths():
    return [plpaths.EVAL.format(**c.wildcards()) for c in CELLS]


# IMP chain rounds (workflow/rules/imp.smk)
def imp_round_label(w):
    return plpaths.CHAIN_ID.format(**dict(w.items()))


def imp_round_inputs(w):
    prev = int(w.round) - 1
    out = {
        "prev_weights": imp_round_file(w, prev, "weights"),
        "prev_mask": imp_round_file(w, prev, "mask"),
        "data": data_path(w),
    }
    if rewinds_weights(w):
        out["rewind"] = imp_round_file(w, 0, "rewind")
    return out


def rewind_arg(w, input):
    return f"--rewind {shlex.quote(input.rewind)}" if "rewind" in input.keys() else ""


def imp_chain_weights(w):
    """Every round's weights.pt of one chain, round 0 first."""
    n = len(
        plconfig.imp_densities(SETTINGS.grid.ratios, SETTINGS.iterative.round_factor)
    )
    return [imp_round_file(w, j, "weights") for j in range(n + 1)]


def imp_rounds_paths():
    return [
        plpaths.IMP_ROUNDS_TABLE.format(dataset=d, arch=a, seed=s, method=m)
        for d, a, s, m, _ in plconfig.imp_chains(SETTINGS)
    ]


# The measure job's threads: all of --cores, so nothing is scheduled beside it; 1 where
# no --cores is set (`--report`, `--lint`, which schedule nothing).
def all_cores():
    try:
        return workflow.cores or 1
    except WorkflowError:
        return 1


# Inputs of the measure job (workflow/rules/measure.smk). Every cell's eval row, final
# weights and mask, the datasets, and every other input of aggregate.
def measure_inputs():
    evals = eval_paths()
    return {
        "evals": evals,
        "finals": [str(Path(p).parent / plpaths.CELL_FILES["final"]) for p in evals],
        "masks": [str(Path(p).parent / plpaths.CELL_FILES["mask"]) for p in evals],
        "data": sorted({plpaths.DATA.format(dataset=c.dataset) for c in CELLS}),
        # not read: the IMP chains' round tables are aggregate's only other input that no
        # eval row needs; waiting for them leaves no job of the grid to run beside this one
        "imp_rounds": imp_rounds_paths(),
    }
